"""Decision ids for the answers the API gives, so feedback can name them.

Every member decision the API returns carries a ``decision_id`` that says, by itself, which
member it was for, when, which coupon it offered and which model versions made it, signed
with a key of the deployment's own (``STATE_DIR/decision_key``, made on first use; replicas
share it through the state folder). ``POST /v1/feedback`` accepts such an id without any
per-request write on the storefront's path: the signature proves the API made it. Campaign
send lists have ids of their own (features.campaign_store); both are accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from datetime import datetime
from typing import Any

from features.settings import MemberwiseSettings

PREFIX = "api1"
KEY_FILE = "decision_key"
_KEYS: dict[str, bytes] = {}


def _key(settings: MemberwiseSettings) -> bytes:
    path = settings.state_dir / KEY_FILE
    cached = _KEYS.get(str(path))
    if cached is not None:
        return cached
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # created once, readable by this user only; a concurrent creator wins the race
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        except FileExistsError:
            pass
    key = bytes.fromhex(path.read_text().strip())
    _KEYS[str(path)] = key
    return key


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(
    settings: MemberwiseSettings,
    member_id: str,
    at: datetime,
    coupon_id: str | None,
    versions: dict[str, str],
) -> str:
    """The id of one decision: ``api1.<payload>.<signature>``."""
    payload = {"m": member_id, "t": at.isoformat(timespec="milliseconds"), "c": coupon_id,
               "v": versions}  # fmt: skip
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    sig = hmac.new(_key(settings), body.encode(), hashlib.sha256).digest()[:16]
    return f"{PREFIX}.{body}.{_b64(sig)}"


def verify(settings: MemberwiseSettings, decision_id: str) -> dict[str, Any] | None:
    """The decision an id names (member_id, at, coupon_id, versions), or None when the id is
    not one this deployment signed."""
    parts = decision_id.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    body, sig = parts[1], parts[2]
    want = hmac.new(_key(settings), body.encode(), hashlib.sha256).digest()[:16]
    try:
        if not hmac.compare_digest(want, _unb64(sig)):
            return None
        payload = json.loads(_unb64(body))
    except ValueError:
        return None
    return {"member_id": payload["m"], "at": payload["t"], "coupon_id": payload["c"],
            "versions": payload["v"]}  # fmt: skip
