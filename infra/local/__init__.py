"""Run real infrastructure (Redis, ...) on this machine, without root."""
