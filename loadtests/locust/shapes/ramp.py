"""The ramp shape alone (``-f ...locustfile.py,loadtests/locust/shapes/ramp.py``); parameters in ``loadtests.locust.shapes``."""

from loadtests.locust.shapes import RampShape

__all__ = ["RampShape"]
