"""The master hook of the test apps (tests.cluster.apps:app): found as their package's ``master`` module."""


def on_master(cluster):
    """Echo worker messages back as broadcasts, to test both directions."""
    cluster.on("message", lambda worker, message: cluster.broadcast({"echo": message, "via": worker.id}))
