"""Locust load profiles of scalecube: user classes per axis, shapes, thresholds, served-by tally.

``locustfile.py`` is what ``locust -f`` loads. Importing this package (or ``countries``)
never imports Locust itself: Locust monkey-patches the process with gevent, so only a Locust
process may import ``users``, ``options``, ``served_by``, ``thresholds`` or ``shapes``.
"""
