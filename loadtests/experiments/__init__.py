"""The experiments behind ``scalecube demo NAME``: the guides' claims, reproduced and judged.

One module one job: ``locust_runner`` drives Locust as a subprocess and parses what it
writes, ``claims`` judges, ``report``/``charts`` show (table, CSV, self-contained HTML),
``rigs`` starts the local processes a demo needs, ``demos/`` holds one module per demo.
Nothing here imports locust: it monkey-patches the process with gevent.
"""
