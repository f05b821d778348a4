"""Products to show with a product on the storefront: bought together and similar, with
the policy serving them (composed by models.decision)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from models.decision import SimilarProducts
from serving.deps import ReadyStateDep, SettingsDep
from serving.routes.members import invalid
from serving.schemas import (
    ID_MAX_LENGTH,
    ID_PATTERN,
    NeighbourPublic,
    SimilarProductsPublic,
    example_of,
)
from serving.vocabulary import Role

router = APIRouter(prefix="/products", tags=["products"])

ProductId = Annotated[
    str,
    Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN,
         description="the shop's product id", examples=["P0021"]),
]  # fmt: skip


@router.get(
    "/{product_id}/similar",
    response_model=SimilarProductsPublic,
    responses=example_of(SimilarProductsPublic),
)
def similar(
    product_id: ProductId,
    state: ReadyStateDep,
    settings: SettingsDep,
    n: Annotated[
        int | None,
        Query(
            ge=1,
            description="products per list (default serving.default_products, at most "
            "serving.max_products)",
        ),
    ] = None,
) -> SimilarProductsPublic:
    """Up to ``n`` products bought in the same orders as this one (``bought_together``) and
    up to ``n`` bought by the same members (``similar``), best first, each with how many
    orders or members hold both; with the policy serving them, its version and why the
    promotion gate chose it.

    A product no order holds before the snapshot (a new product, or an id the shop does
    not have) is not an error: the answer is 200 with ``known_product`` false, both lists
    empty and the reason, so a product page can always render and fall back to other
    content. (The models know only products that were bought, so they cannot tell a new
    product from a mistyped one; a 404 would wrongly say the product does not exist.)
    """
    n = n if n is not None else settings.serving.default_products
    if n > settings.serving.max_products:
        raise invalid("n", n, f"n={n} is above the maximum of {settings.serving.max_products}")
    assert state.decider is not None
    if state.decider.champions.similar is None:
        raise HTTPException(503, "no similar-products model loaded: run `memberwise run`")
    return public(state.decider.similar_products(product_id, n), state.as_of)


def public(s: SimilarProducts, as_of: str | None) -> SimilarProductsPublic:
    """The API's view of a product's neighbours."""

    def listed(items: tuple) -> list[NeighbourPublic]:
        return [
            NeighbourPublic(product_id=x.product_id, score=x.score, together=x.together,
                            reason=x.reason)
            for x in items
        ]  # fmt: skip

    return SimilarProductsPublic(
        product_id=s.product_id,
        known_product=s.known_product,
        as_of=as_of,
        bought_together=listed(s.bought_together),
        similar=listed(s.similar),
        reason=s.reason,
        role=Role(s.role),
        version=s.version,
        policy=s.policy,
        gate_reason=s.gate_reason,
    )
