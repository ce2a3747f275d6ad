"""``scalecube docker …``: the compose stack's operations through the Docker SDK.

One module per operation (``ps``, ``scale``, ``rolling``, ``chaos``, ``logs``); ``project`` finds a
project's containers by compose's labels, ``workers`` reads a container's cluster status, ``balancer``
asks HAProxy which replicas it sends traffic to. Compose itself creates containers (it owns their
configuration); everything else goes through the SDK.
"""
