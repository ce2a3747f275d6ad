"""The bounded load generator the tests use; it lives in product code (``loadtests.client_load``)
since ``scalecube docker chaos`` reports what clients saw with it."""

from loadtests.client_load import LoadGenerator, LoadResult

__all__ = ["LoadGenerator", "LoadResult"]
