"""Version 1 of the API: the resource routers under one ``/v1`` prefix, with the error
responses every route documents (404, 422, 503, each with a typed body)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from serving.errors import known_query_only
from serving.routes import (
    admin,
    campaigns,
    events,
    keys,
    members,
    products,
    profile,
    reload,
    segments,
)
from serving.schemas import ERRORS
from serving.security import ADMIN, MARKETING, STOREFRONT

router = APIRouter(prefix="/v1", responses=ERRORS, dependencies=[Depends(known_query_only)])
router.include_router(members.router, dependencies=STOREFRONT)
router.include_router(products.router, dependencies=STOREFRONT)
router.include_router(segments.router, dependencies=MARKETING)
router.include_router(profile.router, dependencies=MARKETING)
router.include_router(campaigns.router, dependencies=MARKETING)
router.include_router(reload.router, dependencies=ADMIN)
router.include_router(keys.router, dependencies=ADMIN)
router.include_router(events.router, dependencies=STOREFRONT)
router.include_router(admin.router, dependencies=ADMIN)
