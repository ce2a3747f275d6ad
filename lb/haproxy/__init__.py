"""HAProxy as scalecube's balancer: ``haproxy.cfg`` (shared by compose and the local stack) and how to run it."""
