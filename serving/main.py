"""ASGI entry point: `uvicorn serving.main:app` (settings from MEMBERWISE_* variables
and HOME/memberwise.toml, see features/settings.py)."""

from serving.app import create_app

app = create_app()
