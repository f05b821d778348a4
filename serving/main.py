"""ASGI entry point: `uvicorn serving.main:app` (settings from MEMBERWISE_* variables)."""

from serving.app import create_app

app = create_app()
