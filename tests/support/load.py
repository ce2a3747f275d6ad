"""The bounded load generator the tests use; it lives in product code (``infra.client_load``)
since ``scalecube docker chaos`` reports what clients saw with it."""

from infra.client_load import LoadGenerator, LoadTally

__all__ = ["LoadGenerator", "LoadTally"]
