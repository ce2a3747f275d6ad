"""The step shape alone (``-f ...locustfile.py,loadtests/locust/shapes/step.py``); parameters in ``loadtests.locust.shapes``."""

from loadtests.locust.shapes import StepShape

__all__ = ["StepShape"]
