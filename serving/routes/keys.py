"""API keys over the API (admin keys only): list, make and revoke, each change audited."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request

from serving.deps import SettingsDep
from serving.logs import audit
from serving.schemas import KeyCreate, KeyCreatedPublic, KeyPublic, KeysPublic, example_of
from serving.security import ApiKey, KeyDep

router = APIRouter(prefix="/admin/keys", tags=["keys"])

KeyId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^k[0-9a-f]+$",
                            description="the key's id", examples=["k3f9a0c21d7"])]  # fmt: skip


def _public(key: ApiKey) -> KeyPublic:
    return KeyPublic.model_validate(asdict(key))


@router.get("", response_model=KeysPublic, responses=example_of(KeysPublic))
def list_keys(request: Request) -> KeysPublic:
    """Every key, revoked ones included, oldest first (never a token)."""
    return KeysPublic(keys=[_public(k) for k in request.app.state.keys.list()])


@router.post(
    "", response_model=KeyCreatedPublic, status_code=201,
    responses={201: example_of(KeyCreatedPublic)[200]},
)  # fmt: skip
def create_key(
    body: KeyCreate, request: Request, key: KeyDep, settings: SettingsDep
) -> KeyCreatedPublic:
    """A new key; its token is in this answer only."""
    if body.shop is not None and body.shop not in request.app.state.shops:
        known = sorted(request.app.state.shops)
        raise HTTPException(422, [{"loc": ["body", "shop"], "type": "value_error",
                                   "msg": f"no shop {body.shop!r}; shops: {known}"}])  # fmt: skip
    made, token = request.app.state.keys.create(str(body.scope), body.shop, body.label)
    audit("key.create", key.key_id, settings, subject=made.key_id, scope=made.scope,
          shop=made.shop, label=made.label)  # fmt: skip
    return KeyCreatedPublic(**_public(made).model_dump(), token=token)


@router.delete("/{key_id}", response_model=KeyPublic, responses=example_of(KeyPublic))
def revoke_key(key_id: KeyId, request: Request, key: KeyDep, settings: SettingsDep) -> KeyPublic:
    """Revoke a key: refused from the next request on (404 for no such key)."""
    try:
        revoked = request.app.state.keys.revoke(key_id)
    except KeyError:
        raise HTTPException(404, f"no key {key_id!r}") from None
    audit("key.revoke", key.key_id, settings, subject=revoked.key_id, scope=revoked.scope,
          shop=revoked.shop)  # fmt: skip
    return _public(revoked)
