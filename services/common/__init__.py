"""The kit every scalecube FastAPI service is assembled from (see ``services.common.app``)."""
