"""loreg registry: the metadata API service (FastAPI + SQLModel)."""

__version__ = "0.1.0"
