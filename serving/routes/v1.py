"""Version 1 of the API: the resource routers under one ``/v1`` prefix, with the error
responses every route documents (404, 422, 503, each with a typed body)."""

from __future__ import annotations

from fastapi import APIRouter

from serving.routes import members, products, segments
from serving.schemas import ERRORS
from serving.security import MARKETING, STOREFRONT

router = APIRouter(prefix="/v1", responses=ERRORS)
router.include_router(members.router, dependencies=STOREFRONT)
router.include_router(products.router, dependencies=STOREFRONT)
router.include_router(segments.router, dependencies=MARKETING)
