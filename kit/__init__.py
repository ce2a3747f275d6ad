"""The ground every other package stands on: small, plain-Python pieces with no scalecube imports of their own.

``errors`` (``DependencyUnavailable``), ``signing`` (HMAC-signed tokens) and ``secrets`` (reading,
checking and making the stack's secrets) are used by the balancer, the Redis layer, the services,
the local stack and the CLI alike. They lived in ``scalecube/`` (the CLI, the top of the tree) and
``services/common/``, so the balancer and the Redis layer imported upward to reach them; here they sit
below everything, and the import contracts in ``pyproject.toml`` keep them there.
"""
