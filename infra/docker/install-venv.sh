#!/bin/sh
# /opt/venv from a lock file with hashes: from /wheels with no network when the air-gapped wheelhouse
# is there (`scalecube images --airgap`), else from PyPI.
set -eu
python3 -m venv /opt/venv
if ls /wheels/*.whl >/dev/null 2>&1; then index="--no-index --find-links /wheels"; else index=""; fi
# shellcheck disable=SC2086  # $index is two words or none
/opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes $index -r "$1"
