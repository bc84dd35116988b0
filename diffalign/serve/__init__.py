"""Rewards as a service: ``diffalign serve-reward NAME`` (FastAPI + uvicorn), see :mod:`diffalign.serve.app`."""
from diffalign.serve.app import DynamicBatcher, create_app

__all__ = ["DynamicBatcher", "create_app"]
