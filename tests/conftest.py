"""Shared fixtures: tiny worlds and real-service guards."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEMBERWISE_SHARED_DATA", REPO.parent / "shared" / "data"))


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, under CI=true, fail) when a real service is not listening."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as exc:
        msg = f"{name} is not reachable on {host}:{port} ({exc})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{msg}; CI=true requires it")
        pytest.skip(f"{msg}; start it to run this test")


def require_shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data folder not found at {path}")
    return path
