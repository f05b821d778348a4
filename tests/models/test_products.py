"""Recommenders on tiny worlds whose right answer is known.

``RecommenderContract`` holds what every recommender must honour; each model's test class
reuses it (like implicit's RecommenderBaseTestMixin).
"""

from __future__ import annotations

import numpy as np
import pytest

from models.products import (
    HybridConfig,
    HybridRecommender,
    PopularityConfig,
    PopularityRecommender,
    Recommender,
)
from models.recommenders import load_recommender

AS_OF = np.datetime64("2025-06-30T00:00:00", "us")

pytestmark = pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")


def day(d: int) -> np.datetime64:
    """``d`` days before AS_OF, at noon."""
    return AS_OF - np.timedelta64(d, "D") + np.timedelta64(12, "h")


def lines(rows: list[tuple[str, str, int, float]]) -> dict:
    """(member, product, days before as_of, quantity) rows -> fit arguments."""
    m, p, d, q = zip(*rows, strict=True)
    return {
        "member_ids": np.array(m),
        "product_ids": np.array(p),
        "ts": np.array([day(x) for x in d], dtype="datetime64[us]"),
        "quantity": np.array(q, dtype=float),
        "as_of": AS_OF,
    }


def checkerboard() -> tuple[dict, dict[str, str]]:
    """Two groups of 10 members buy two disjoint sets of 5 products, once each, long ago;
    member i of a group skips product i % 5 of its own group. Returns the lines and each
    member's one unseen product of its own group."""
    rows, unseen = [], {}
    for g in "ab":
        for i in range(10):
            member = f"{g}{i}"
            for j in range(5):
                if j == i % 5:
                    unseen[member] = f"{g.upper()}{j}"
                    continue
                rows.append((member, f"{g.upper()}{j}", 100 + i + j, 1.0))
    return lines(rows), unseen


def small_world() -> dict:
    """Popularity and the just-bought filter.

    - ``hit`` bought by 5 members long ago, ``mid`` by 3, ``rare`` by 1 (five times);
    - ``staple`` bought twice by each of 5 members (population repeat rate 1.0);
    - member ``x`` bought ``hit`` and ``staple`` yesterday (once each), ``mid`` twice (30 and
      3 days ago) and ``gadget`` 3 days ago, then returned ``gadget`` entirely.
    """
    rows = []
    for i in range(5):
        rows.append((f"h{i}", "hit", 60, 1.0))
        rows += [(f"s{i}", "staple", 90, 1.0), (f"s{i}", "staple", 50, 1.0)]
    rows += [(f"m{i}", "mid", 70, 1.0) for i in range(3)]
    rows += [("r0", "rare", 80 + k, 1.0) for k in range(5)]
    rows += [("x", "hit", 1, 1.0), ("x", "staple", 1, 1.0)]
    rows += [("x", "mid", 30, 1.0), ("x", "mid", 3, 1.0)]
    rows += [("x", "gadget", 3, 2.0), ("x", "gadget", 2, -2.0)]
    return lines(rows)


class RecommenderContract:
    """What every Recommender must do; subclasses provide ``make``."""

    def make(self) -> Recommender:
        raise NotImplementedError

    def fitted(self, world: dict | None = None) -> Recommender:
        return self.make().fit(**(world or small_world()))

    def test_respects_n_and_never_repeats(self):
        model = self.fitted(checkerboard()[0])
        for member in ["a0", "b3", "someone-new"]:
            for n in (0, 1, 3, 10, 50):
                recs = model.recommend(member, n=n)
                ids = [p for p, _, _ in recs]
                assert len(recs) <= n
                assert len(ids) == len(set(ids))
                scores = [s for _, s, _ in recs]
                assert scores == sorted(scores, reverse=True)
                assert all(isinstance(s, float) and s > 0 for s in scores)

    def test_unknown_member_gets_popular(self):
        model = self.fitted()
        recs = model.recommend("someone-new", n=3)
        assert [p for p, _, _ in recs] == ["hit", "staple", "mid"]
        assert {r for _, _, r in recs} == {"popular"}
        assert not model.known_member("someone-new") and model.known_member("x")

    def test_just_bought_filter(self):
        recs = [p for p, _, _ in self.fitted().recommend("x", n=10)]
        assert "hit" not in recs  # bought once yesterday, rarely bought twice
        assert "staple" in recs  # bought once yesterday, but re-bought by its buyers
        assert "mid" in recs  # bought 3 days ago, but the member's second purchase

    def test_fully_returned_line_is_no_interaction(self):
        model = self.fitted()
        assert "gadget" not in [p for p, _, _ in model.recommend("someone-new", n=10)]

    def test_out_of_stock_never_recommended(self):
        model = self.make().fit(**small_world(), in_stock={"hit": False, "staple": True})
        for member in ["x", "h0", "someone-new"]:
            assert "hit" not in [p for p, _, _ in model.recommend(member, n=10)]

    def test_lines_after_as_of_are_ignored(self):
        world = small_world()
        world["ts"] = np.append(world["ts"], AS_OF + np.timedelta64(1, "D"))
        world["member_ids"] = np.append(world["member_ids"], "late")
        world["product_ids"] = np.append(world["product_ids"], "future")
        world["quantity"] = np.append(world["quantity"], 100.0)
        model = self.make().fit(**world)
        assert not model.known_member("late")
        assert "future" not in [p for p, _, _ in model.recommend("someone-new", n=10)]

    def test_save_load_round_trip(self, tmp_path):
        world, _ = checkerboard()
        model = self.make().fit(**world)
        path = tmp_path / "model"  # no suffix: written exactly there
        model.save(path)
        assert path.exists()
        with np.load(path, allow_pickle=False) as z:
            assert str(z["kind"]) == model.kind
        for loaded in (type(model).load(path), load_recommender(path)):
            assert type(loaded) is type(model)
            assert loaded.config == model.config
            members = [f"{g}{i}" for g in "ab" for i in range(10)] + ["someone-new"]
            assert loaded.recommend_many(members, n=4) == model.recommend_many(members, n=4)

    def test_recommend_many_matches_recommend(self):
        model = self.fitted(checkerboard()[0])
        members = ["a1", "zz", "b2"]
        assert model.recommend_many(members, n=3) == [model.recommend(m, n=3) for m in members]


class TestPopularity(RecommenderContract):
    def make(self) -> Recommender:
        return PopularityRecommender(PopularityConfig(repeat_min_buyers=3))

    def test_ranks_by_distinct_buyers(self):
        recs = self.fitted().recommend("someone-new", n=10)
        ids = [p for p, _, _ in recs]
        # hit and staple: 6 buyers (one recent), mid: 4 (one recent), rare: 1 (five times)
        assert ids.index("hit") < ids.index("mid") < ids.index("rare")
        assert recs[0][1] == pytest.approx(1.0)

    def test_recent_buyers_weigh_more(self):
        rows = [(f"o{i}", "old", 200, 1.0) for i in range(3)]
        rows += [(f"n{i}", "new", 5, 1.0) for i in range(2)]
        model = PopularityRecommender(PopularityConfig(popular_recent_weight=1.0)).fit(
            **lines(rows)
        )
        assert [p for p, _, _ in model.recommend("someone-new")] == ["new", "old"]
        model = PopularityRecommender(PopularityConfig(popular_recent_weight=0.0)).fit(
            **lines(rows)
        )
        assert [p for p, _, _ in model.recommend("someone-new")] == ["old", "new"]

    def test_same_list_for_everyone_without_recent_purchases(self):
        model = self.fitted()
        assert model.recommend("h1", n=5) == model.recommend("someone-new", n=5)


class TestHybrid(RecommenderContract):
    def make(self) -> Recommender:
        return HybridRecommender(
            HybridConfig(
                factors=4,
                iterations=20,
                regularization=0.01,
                alpha=5.0,
                repeat_min_buyers=3,
                random_state=7,
                num_threads=1,
            )
        )

    def test_checkerboard_precision_at_1(self):
        world, unseen = checkerboard()
        model = self.make().fit(**world)
        hits = 0
        for member, product in unseen.items():
            (top, _, reason), *_ = model.recommend(member, n=1)
            hits += top == product
            assert reason == "similar_members"
        assert hits / len(unseen) == 1.0

    def test_checkerboard_hides_owned_products(self):
        world, unseen = checkerboard()
        model = self.make().fit(**world)
        recs = model.recommend("a3", n=10)
        assert recs[0][0] == unseen["a3"]
        owned = {
            p for m, p in zip(world["member_ids"], world["product_ids"], strict=True) if m == "a3"
        }
        assert not owned & {p for p, _, _ in recs}  # bought once, not repeatable
        # all of its own group is owned or first: the rest is the other group, scored lower
        assert {p[0] for p, _, _ in recs[1:]} == {"B"}
        assert all(s < recs[0][1] / 2 for _, s, _ in recs[1:])

    def test_bm25_weighting_also_solves_checkerboard(self):
        world, unseen = checkerboard()
        cfg = HybridConfig(
            factors=4,
            iterations=20,
            regularization=0.01,
            alpha=5.0,
            weighting="bm25",
            random_state=7,
            num_threads=1,
        )
        model = HybridRecommender(cfg).fit(**world)
        assert all(model.recommend(m, n=1)[0][0] == p for m, p in unseen.items())

    def test_buy_again_ranks_own_repeat_purchases_first(self):
        world, _ = checkerboard()
        # a0 buys A1 on three more days: a repeat purchase, the strongest signal
        extra = lines([("a0", "A1", d, 1.0) for d in (20, 40, 60)])
        for k in ("member_ids", "product_ids", "ts", "quantity"):
            world[k] = np.concatenate([world[k], extra[k]])
        recs = self.make().fit(**world).recommend("a0", n=3)
        assert recs[0][0] == "A1" and recs[0][2] == "buy_again"
        assert recs[1][0] == "A0" and recs[1][2] == "similar_members"

    def test_seeded_fit_is_reproducible(self):
        world, _ = checkerboard()
        a = self.make().fit(**world).recommend_many(["a1", "b1"], n=5)
        b = self.make().fit(**world).recommend_many(["a1", "b1"], n=5)
        assert a == b

    def test_rejects_unknown_weighting(self):
        with pytest.raises(ValueError, match="weighting"):
            HybridRecommender(HybridConfig(weighting="tfidf")).fit(**small_world())

    def test_loading_the_wrong_class_says_so(self, tmp_path):
        PopularityRecommender().fit(**small_world()).save(tmp_path / "pop")
        with pytest.raises(ValueError, match="not a HybridRecommender.*kind 'popularity'"):
            HybridRecommender.load(tmp_path / "pop")

    def test_item_item_term_alone_solves_checkerboard(self):
        world, unseen = checkerboard()
        # a one-factor ALS cannot tell the groups apart; the item-item term can
        base = dict(factors=1, iterations=2, random_state=7, num_threads=1)
        model = HybridRecommender(HybridConfig(**base, item_weight=100.0)).fit(**world)
        assert all(model.recommend(m, n=1)[0][0] == p for m, p in unseen.items())
        assert all(model.recommend(m, n=1)[0][2] == "similar_members" for m in unseen)

    def test_item_weight_zero_skips_the_item_term(self, tmp_path):
        world, _ = checkerboard()
        model = HybridRecommender(HybridConfig(item_weight=0.0, num_threads=1)).fit(**world)
        model.save(tmp_path / "m")
        loaded = HybridRecommender.load(tmp_path / "m")
        assert loaded.recommend_many(["a1", "b2"], n=5) == model.recommend_many(["a1", "b2"], n=5)

    def test_loads_an_artifact_saved_before_the_item_term(self, tmp_path):
        world, _ = checkerboard()
        model = self.make().fit(**world)
        model.save(tmp_path / "new")
        with np.load(tmp_path / "new", allow_pickle=False) as z:
            old = {
                k: z[k]
                for k in z.files
                if k not in {"weights", "sim_indptr", "sim_indices", "sim_data"}
            }
        with (tmp_path / "old").open("wb") as f:
            np.savez(f, **old)
        recs = HybridRecommender.load(tmp_path / "old").recommend("a3", n=3)
        assert len(recs) == 3 and recs[0][0] == "A3"


def test_cold_start_from_the_segment_and_request_filters(tmp_path):
    from models.products import POPULAR_IN_SEGMENT, PopularityRecommender
    from models.recommenders import load_recommender

    # segment "tea" buys tea products, segment "bike" bike parts; bike parts are popular overall
    lines = []
    for m in range(30):
        seg, prods = ("tea", ["t1", "t2"]) if m < 10 else ("bike", ["b1", "b2", "b3"])
        lines += [(f"m{m}", p) for p in prods]
    members = np.array([m for m, _ in lines])
    products = np.array([p for _, p in lines])
    segs = {f"m{m}": ("tea" if m < 10 else "bike") for m in range(30)}
    cats = {"t1": "tea", "t2": "tea", "b1": "bike", "b2": "bike", "b3": "bike"}
    model = PopularityRecommender().fit(
        members, products, np.full(len(lines), np.datetime64("2025-01-01T00:00", "us")),
        np.ones(len(lines)), as_of=np.datetime64("2025-02-01T00:00", "us"),
        segments=segs, categories=cats,
    )  # fmt: skip
    cold = model.recommend("newcomer", 2, segment="tea")
    assert [p for p, _, _ in cold] == ["t1", "t2"] and {r for _, _, r in cold} == {
        POPULAR_IN_SEGMENT
    }
    assert [p for p, _, _ in model.recommend("newcomer", 2)][0].startswith("b")  # global popular
    only_tea = model.recommend("m15", 5, category="tea")
    assert [p for p, _, _ in only_tea] == ["t1", "t2"]
    no_b1 = [p for p, _, _ in model.recommend("newcomer", 5, exclude=["b1"])]
    assert "b1" not in no_b1 and len(no_b1) == 4
    model.save(tmp_path / "p.npz")
    back = load_recommender(tmp_path / "p.npz")
    assert back.recommend("newcomer", 2, segment="tea") == cold
    assert back.recommend("m15", 5, category="tea") == only_tea
