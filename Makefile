# scalecube — `make test` works on a fresh machine with Python >= 3.11, no root, no Redis.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test test-local test-docker up down status bench lock clean k8s-secrets vendor-console

venv: $(STAMP)

# Reinstall whenever the lock or the project metadata changes.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The whole suite in TEST_WORKERS pytest-xdist processes (TEST_WORKERS=0: one process). One worker runs the Docker
# group (tests/infra/docker) in file order, as one unit, while the others take the local tests a module at a time,
# the slow ones first, each `load` test alone (the others wait); the worker done first takes what is left
# (tests/support/parallel.py says how, and why). Each worker picks its servers' ports from its own slice of the range (SCALECUBE_PORTS).
# Three on 2 cores: most tests wait on processes and sockets more than they compute (README, "Tests").
TEST_WORKERS ?= 3
test: venv
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The two groups apart: everything but Docker (no engine needed), and the Docker group alone. The local group runs
# in LOCAL_WORKERS processes, handed out as in `make test`: a module at a time, each `load` test alone.
LOCAL_WORKERS ?= 3
test-local: venv
	$(BIN)/python -m pytest -m "not docker" -n $(LOCAL_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-docker: venv
	$(BIN)/python -m pytest -m docker $(PYTEST_ARGS)

# The local stack in the foreground (Ctrl-C stops it): Redis + the api on :8080; more with ARGS="--api 3 --lb haproxy".
up: venv
	$(BIN)/scalecube up $(ARGS)

down: venv
	$(BIN)/scalecube down

status: venv
	$(BIN)/scalecube status

bench: venv
	$(BIN)/scalecube bench foundation $(ARGS)

# Regenerate the lock files (needs network to PyPI): pinned versions with hashes; the images' own locks
# (runtime dependencies only, any Python >= 3.11) live in infra/docker/.
lock:
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --all-extras --python-version 3.11 --generate-hashes -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes -o infra/docker/service.lock
	$(BIN)/uv pip compile pyproject.toml --extra load --universal --python-version 3.11 --generate-hashes -o infra/docker/locust.lock

# The console's chart library from npm (needs network): the version services/console/package-lock.json pins, its
# integrity checked by npm ci; the dist files and their sums are committed, so no build fetches anything.
CONSOLE := services/console
vendor-console:
	cd $(CONSOLE) && npm ci --ignore-scripts --no-audit --no-fund
	cp $(CONSOLE)/node_modules/uplot/dist/uPlot.iife.min.js $(CONSOLE)/node_modules/uplot/dist/uPlot.min.css $(CONSOLE)/static/vendor/
	cd $(CONSOLE)/static/vendor && { echo "# uplot $$(node -p "require('../../package-lock.json').packages['node_modules/uplot'].version") $$(node -p "require('../../package-lock.json').packages['node_modules/uplot'].integrity")"; sha256sum uPlot.iife.min.js uPlot.min.css; } > SHA256SUMS
	rm -rf $(CONSOLE)/node_modules

# infra/k8s/secrets.env (gitignored): random secrets for `kubectl apply -k infra/k8s`; keeps the ones already there.
k8s-secrets: venv
	$(BIN)/scalecube secrets k8s

clean:
	rm -rf $(VENV) .pytest_cache
