"""ASGI entry point: `uvicorn serving.main:app` (settings from MEMBERWISE_* variables
and HOME/memberwise.toml, see features/settings.py)."""

from serving.app import create_app
from serving.logs import configure

configure()  # JSON lines with request ids (uvicorn's own access log is off: it shows raw paths)
app = create_app()
