"""Version 1 of the API: the resource routers under one ``/v1`` prefix, with the error
responses every route documents (404, 422, 503, each with a typed body)."""

from __future__ import annotations

from fastapi import APIRouter

from serving.routes import campaigns, members, products, profile, reload, segments
from serving.schemas import ERRORS

router = APIRouter(prefix="/v1", responses=ERRORS)
router.include_router(members.router)
router.include_router(products.router)
router.include_router(segments.router)
router.include_router(profile.router)
router.include_router(campaigns.router)
router.include_router(reload.router)
