"""Structured logs: one JSON object per line, each carrying the request id of the request it
belongs to; member ids appear only as pseudonyms (a keyed hash); an audit trail of exports,
erasures and key changes, kept as JSON lines in ``STATE_DIR/audit.jsonl`` and logged too."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from features.settings import MemberwiseSettings

REQUEST_ID: ContextVar[str] = ContextVar("memberwise_request_id", default="-")
AUDIT_FILE = "audit.jsonl"
PSEUDONYM_KEY_FILE = "log_pseudonym.key"
audit_log = logging.getLogger("memberwise.audit")
_lock = threading.Lock()
_keys: dict[Path, bytes] = {}


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (the current request's, or "-") to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def configure(level: int = logging.INFO) -> None:
    """JSON lines on stderr for the whole process (fields: time, level, logger, message,
    request_id and whatever ``extra=`` a call adds)."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}{request_id}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # uvicorn's access log prints the raw path, member ids included: serving logs its own
    logging.getLogger("uvicorn.access").disabled = True


def _pseudonym_key(settings: MemberwiseSettings) -> bytes:
    """The deployment's secret for pseudonyms, made once in the state directory."""
    path = settings.state_dir / PSEUDONYM_KEY_FILE
    with _lock:
        if path not in _keys:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_hex(32))
            _keys[path] = bytes.fromhex(path.read_text().strip())
        return _keys[path]


def pseudonym(member_id: str, settings: MemberwiseSettings) -> str:
    """What logs show for a member: 16 hex digits of HMAC-SHA256(member_id) under the
    deployment's secret; the same member gets the same pseudonym, the id cannot be read back."""
    digest = hmac.new(_pseudonym_key(settings), member_id.encode(), hashlib.sha256)
    return "m_" + digest.hexdigest()[:16]


def audit(event: str, key_id: str | None, settings: MemberwiseSettings, **fields: Any) -> dict:
    """Record ``event`` (e.g. "export", "erasure", "key.create", "key.revoke") done with the
    key ``key_id`` (None: from the command line): appended to ``STATE_DIR/audit.jsonl`` and
    logged on ``memberwise.audit``. ``fields`` must not hold member ids in the clear (pass
    :func:`pseudonym` values or counts). Returns the entry written."""
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": event,
        "key_id": key_id,
        "request_id": REQUEST_ID.get(),
        **fields,
    }
    path = settings.state_dir / AUDIT_FILE
    line = json.dumps(entry, default=str, sort_keys=False) + "\n"
    with _lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(line)
    audit_log.info("audit %s", event, extra={"audit": entry})
    return entry


def audit_entries(settings: MemberwiseSettings) -> list[dict]:
    """Every audit entry so far, oldest first."""
    path = settings.state_dir / AUDIT_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
