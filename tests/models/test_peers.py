"""The peers of the shipped recommender on tiny worlds whose right answer is known.

Each peer honours ``RecommenderContract`` (the same mixin the shipped models use) and gets
the one behaviour a data scientist would check first.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from models.peers import (
    ALSConfig,
    ALSRecommender,
    BPRConfig,
    BPRRecommender,
    BuyAgainConfig,
    BuyAgainRecommender,
    ItemCosineConfig,
    ItemCosineRecommender,
)
from models.products import Recommender
from models.recommenders import load_recommender
from tests.conftest import REPO
from tests.models.test_products import RecommenderContract, checkerboard, lines

pytestmark = pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")


def with_extra(world: dict, rows: list[tuple[str, str, int, float]]) -> dict:
    """``world`` plus (member, product, days before as_of, quantity) rows."""
    extra = lines(rows)
    out = dict(world)
    for k in ("member_ids", "product_ids", "ts", "quantity"):
        out[k] = np.concatenate([world[k], extra[k]])
    return out


def owned(world: dict, member: str) -> set[str]:
    return {
        str(p)
        for m, p in zip(world["member_ids"], world["product_ids"], strict=True)
        if m == member
    }


def precision_at_1(model: Recommender, unseen: dict[str, str]) -> float:
    return float(np.mean([model.recommend(m, n=1)[0][0] == p for m, p in unseen.items()]))


class TestBuyAgain(RecommenderContract):
    def make(self) -> Recommender:
        return BuyAgainRecommender(BuyAgainConfig(repeat_min_buyers=3))

    def test_repeatedly_bought_product_first(self):
        world, _ = checkerboard()
        world = with_extra(world, [("a0", "A1", d, 1.0) for d in (20, 40, 60)])
        recs = self.make().fit(**world).recommend("a0", n=5)
        assert recs[0][0] == "A1" and recs[0][2] == "buy_again"
        # then the rest of what a0 bought, never a product a0 did not buy before the fill
        assert {p for p, _, r in recs if r == "buy_again"} == owned(world, "a0")

    def test_recent_purchase_beats_old_one_at_equal_count(self):
        world = lines([("m", "old", 200, 1.0), ("m", "new", 30, 1.0)])
        recs = BuyAgainRecommender(BuyAgainConfig(half_life_days=30.0)).fit(**world).recommend("m")
        assert [p for p, _, _ in recs] == ["new", "old"]
        assert recs[1][1] == pytest.approx(0.5 ** (170 / 30), rel=1e-3)

    def test_long_half_life_favours_frequency(self):
        rows = [("m", "often", d, 1.0) for d in (300, 310, 320)] + [("m", "once", 5, 1.0)]
        short = BuyAgainRecommender(BuyAgainConfig(half_life_days=10.0, recent_days=0))
        long = BuyAgainRecommender(BuyAgainConfig(half_life_days=10_000.0, recent_days=0))
        assert short.fit(**lines(rows)).recommend("m", n=1)[0][0] == "once"
        assert long.fit(**lines(rows)).recommend("m", n=1)[0][0] == "often"


class TestItemCosine(RecommenderContract):
    def make(self) -> Recommender:
        cfg = ItemCosineConfig(
            K=10, filter_already_bought=False, repeat_min_buyers=3, num_threads=1
        )
        return ItemCosineRecommender(cfg)

    def test_recommends_the_co_bought_product(self):
        world, unseen = checkerboard()
        model = ItemCosineRecommender(ItemCosineConfig(K=10, num_threads=1)).fit(**world)
        assert precision_at_1(model, unseen) == 1.0
        (top, _, reason), *rest = model.recommend("a3", n=10)
        assert reason == "similar_products"
        assert not owned(world, "a3") & {p for p, _, _ in rest}  # the usual filter

    def test_unfiltered_keeps_own_products(self):
        world, _ = checkerboard()
        cfg = ItemCosineConfig(K=10, filter_already_bought=False, num_threads=1)
        recs = ItemCosineRecommender(cfg).fit(**world).recommend("a3", n=5)
        assert {p for p, _, _ in recs} == owned(world, "a3") | {"A3"}


class TestALS(RecommenderContract):
    def make(self) -> Recommender:
        return ALSRecommender(self.config(filter_already_bought=False))

    @staticmethod
    def config(**kw) -> ALSConfig:
        base = dict(factors=4, iterations=20, regularization=0.01, alpha=5.0, weighting="log")
        return ALSConfig(
            **{**base, "repeat_min_buyers": 3, "random_state": 7, "num_threads": 1, **kw}
        )

    def test_checkerboard_precision_at_1(self):
        world, unseen = checkerboard()
        model = ALSRecommender(self.config()).fit(**world)
        assert precision_at_1(model, unseen) == 1.0
        recs = model.recommend("a3", n=10)
        assert recs[0][2] == "similar_members"
        assert not owned(world, "a3") & {p for p, _, _ in recs}

    def test_unfiltered_may_recommend_own_products(self):
        world, _ = checkerboard()
        recs = ALSRecommender(self.config(filter_already_bought=False)).fit(**world)
        top5 = {p for p, _, _ in recs.recommend("a3", n=5)}
        assert top5 == owned(world, "a3") | {"A3"}  # its own group, owned or not

    def test_seeded_fit_is_reproducible(self):
        world, _ = checkerboard()
        a = ALSRecommender(self.config()).fit(**world).recommend_many(["a1", "b1"], n=5)
        b = ALSRecommender(self.config()).fit(**world).recommend_many(["a1", "b1"], n=5)
        assert a == b


class TestBPR(RecommenderContract):
    def make(self) -> Recommender:
        return BPRRecommender(self.config(filter_already_bought=False))

    @staticmethod
    def config(**kw) -> BPRConfig:
        base = dict(factors=4, iterations=300, learning_rate=0.05, random_state=7, num_threads=1)
        return BPRConfig(**{**base, "repeat_min_buyers": 3, **kw})

    def test_checkerboard_precision_at_1(self):
        world, unseen = checkerboard()
        model = BPRRecommender(self.config()).fit(**world)
        assert precision_at_1(model, unseen) == 1.0
        assert model.recommend("a3", n=1)[0][2] == "similar_members"


def test_a_fresh_process_loads_a_peer_through_load_recommender(tmp_path):
    """models.products and models.peers do not import each other in a circle; the loader in
    models.recommenders knows every kind in a fresh process."""
    world, _ = checkerboard()
    model = BuyAgainRecommender().fit(**world)
    model.save(tmp_path / "peer")
    code = (
        "import sys; from models.recommenders import load_recommender; "
        f"m = load_recommender({str(tmp_path / 'peer')!r}); "
        "print(type(m).__name__, m.recommend('a0', n=2)[0][0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["BuyAgainRecommender", model.recommend("a0", n=2)[0][0]]
    assert type(load_recommender(tmp_path / "peer")) is BuyAgainRecommender
