"""The decision core: one member at a time and the vectorised batch give the same decision
for every member of a small synthetic shop, and each part says why."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest

from features import repo
from features.rules import load_rules, tag_names
from models.coupon import FixedCouponPolicy
from models.decision import (
    EVIDENCE_COLUMNS,
    PARTS,
    PROFILE_COLUMNS,
    TAG_EVIDENCE,
    TAG_RULES,
    Decider,
    MemberDecision,
    decisions_frame,
)
from tests.serving.world import AS_OF, online_row, shop_world

pytestmark = pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")

NOW = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return shop_world(tmp_path_factory.mktemp("shop"))


def _without_floats(d: MemberDecision) -> MemberDecision:
    return dataclasses.replace(
        d,
        churn=dataclasses.replace(d.churn, risk=None),
        coupon=dataclasses.replace(d.coupon, expected_incremental_margin=0.0),
    )


def assert_same(one: MemberDecision, many: MemberDecision) -> None:
    """Identical decisions; the churn risk and the coupon's expected margin within 1e-9 (a
    single-row and a many-row matrix product may round differently in the last bit)."""
    assert one.churn.risk == pytest.approx(many.churn.risk, abs=1e-9), one.member_id
    margins = one.coupon.expected_incremental_margin, many.coupon.expected_incremental_margin
    assert margins[0] == pytest.approx(margins[1], abs=1e-9), one.member_id
    assert _without_floats(one) == _without_floats(many), one.member_id


@pytest.mark.parametrize("baseline", [False, True], ids=["models", "baselines"])
def test_one_member_at_a_time_agrees_with_the_batch_on_every_member(world, baseline):
    batch = world.decider(baseline).decide_many(world.tags, NOW, n_products=5)
    single = world.decider(baseline)  # a fresh decider: nothing precomputed or memoised
    assert [d.member_id for d in batch] == world.tags["member_id"].tolist()
    for many in batch:
        one = single.decide(many.member_id, online_row(world.tags, many.member_id), NOW, 5)
        assert_same(one, many)


def test_precomputed_answers_are_the_batch_answers(world):
    decider = world.decider()
    assert decider.precompute(world.tags) == len(world.tags)
    batch = decider.decide_many(world.tags, NOW)
    for many in batch:
        one = decider.decide(many.member_id, online_row(world.tags, many.member_id), NOW)
        assert one == many


def test_the_shop_exercises_every_kind_of_answer(world):
    """The agreement above means something only if the shop has coupons and no coupons,
    tags and no tags, several stages and send-time sources."""
    batch = world.decider().decide_many(world.tags, NOW)
    assert {d.coupon.coupon_id is None for d in batch} == {True, False}
    assert {bool(d.tags.tags) for d in batch} == {True, False}
    assert len({d.lifecycle_stage.value for d in batch}) >= 4
    assert len({d.churn.risk for d in batch}) > 10
    assert {d.send_time.source for d in batch} >= {"member"}


def test_every_part_has_role_version_and_reason(world):
    d = world.decider().decide_many(world.tags.head(3), NOW)[0]
    parts = d.parts()
    assert tuple(parts) == PARTS
    for name in ("products", "coupon", "send_time", "churn"):
        assert (parts[name].role, parts[name].version) == ("model", "1")
    for name in ("tags", "lifecycle_stage", "value_tier", "rfm_segment"):
        assert (parts[name].role, parts[name].version) == ("rules", AS_OF.isoformat())
    assert all(p.reason for p in parts.values())
    assert d.send_time.at_utc > NOW
    assert d.churn.risk is not None and 0 <= d.churn.risk <= 1
    assert "within 90 days" in d.churn.reason


def test_coupon_reason_says_when_the_baseline_serves(world):
    d = world.decider(baseline=True).decide_many(world.tags.head(1), NOW)[0]
    assert d.coupon.coupon_id is None and d.coupon.role == "baseline"
    assert "not been promoted" in d.coupon.reason
    assert "simple policy popularity" in d.products.reason
    assert "not been promoted" in d.products.reason
    assert "bg_nbd baseline" in d.churn.reason


def test_tag_reasons_quote_the_evidence(world):
    tags = world.tags
    member = tags.loc[tags["dormant"] & tags["recency_days"].notna(), "member_id"].iloc[0]
    d = world.decider().decide(member, online_row(tags, member), NOW)
    assert "dormant" in d.tags.tags
    days = tags.loc[tags["member_id"] == member, "recency_days"].iloc[0]
    assert f"dormant: last purchase {days:.0f} days ago" in d.tags.reason


def test_an_unknown_member_gets_a_cold_start_decision(world):
    d = world.decider().decide("never-seen", None, NOW, n_products=4)
    assert not d.known_member
    assert [p.reason for p in d.products.items] == ["popular"] * 4
    assert d.coupon.coupon_id is None and "unknown member" in d.coupon.reason
    assert d.churn.risk is None and d.tags.tags == ()
    assert d.lifecycle_stage.value is None and d.rfm_segment.segment is None
    assert d.send_time.source in {"segment", "global"}


def test_a_forced_channel_is_kept(world):
    member = world.tags["member_id"].iloc[0]
    d = world.decider().decide(member, online_row(world.tags, member), NOW, channel="sms")
    assert d.send_time.channel == "sms" and "set by the request" in d.send_time.reason


def test_any_coupon_policy_decides_through_the_same_calls(world):
    """A champion that gives one coupon to everyone (kind fixed_coupon) decides one member
    at a time, in the batch and precomputed alike, with its own reason."""
    fixed = FixedCouponPolicy("PCT10", 0.42).fit(
        np.zeros((0, len(repo.COUPON_FEATURES))), np.array([]), np.array([]),
        list(repo.COUPON_FEATURES),
    )  # fmt: skip
    champions = dataclasses.replace(world.model, coupon=fixed)
    decider = Decider(champions, repo.CHURN_FEATURES, repo.COUPON_FEATURES, AS_OF.isoformat())
    assert decider.precompute(world.tags) == len(world.tags)
    batch = decider.decide_many(world.tags, NOW, n_products=3)
    for many in batch[:10]:
        one = decider.decide(many.member_id, online_row(world.tags, many.member_id), NOW, 3)
        assert_same(one, many)
    assert {(d.coupon.coupon_id, d.coupon.expected_incremental_margin) for d in batch} == {
        ("PCT10", 0.42)
    }
    assert batch[0].coupon.reason == fixed.reason and "PCT10 for every member" in fixed.reason
    cold = decider.decide("someone-new", None, NOW)
    assert cold.coupon.coupon_id is None and cold.coupon.reason.startswith("unknown member")


def test_bad_inputs_say_what_is_wrong(world):
    with pytest.raises(ValueError, match="lacks the columns"):
        world.decider().decide_many(world.tags.drop(columns=["monetary"]), NOW)
    with pytest.raises(ValueError, match="coupon model was trained on"):
        Decider(world.model, repo.CHURN_FEATURES, repo.COUPON_FEATURES[::-1])
    with pytest.raises(ValueError, match="churn model was trained on 25 features"):
        Decider(world.model, repo.CHURN_FEATURES[:-1], repo.COUPON_FEATURES)


def test_decisions_frame_has_one_row_per_member(world):
    batch = world.decider().decide_many(world.tags, NOW, n_products=3)
    frame = decisions_frame(batch)
    assert frame["member_id"].tolist() == world.tags["member_id"].tolist()
    assert frame["products"].map(len).eq(3).all()
    assert np.allclose(frame["churn_risk"], [d.churn.risk for d in batch])
    attrs = ("role", "version", "reason", "policy", "gate_reason")
    assert {f"{p}_{a}" for p in PARTS for a in attrs} <= set(frame)
    assert frame["products_policy"].eq("hybrid").all()
    assert frame["send_time_gate_reason"].eq(world.model.reasons["send_time"]).all()
    assert frame["tags_policy"].eq(TAG_RULES).all() and frame["tags_gate_reason"].isna().all()


@pytest.mark.parametrize("baseline", [False, True], ids=["models", "baselines"])
def test_every_part_names_the_policy_serving_it_and_the_gates_reason(world, baseline):
    champions = world.baseline if baseline else world.model
    member = world.tags["member_id"].iloc[3]
    one = world.decider(baseline).decide(member, online_row(world.tags, member), NOW)
    for name, part in one.parts().items():
        if part.role == "rules":
            assert (part.policy, part.gate_reason) == (TAG_RULES, None), name
        else:
            assert part.policy == champions.policies[name], name
            assert part.gate_reason == champions.reasons[name], name


def test_without_policies_in_the_registry_the_role_stands_in(world):
    bare = dataclasses.replace(world.model, policies={}, reasons={})
    decider = Decider(bare, repo.CHURN_FEATURES, repo.COUPON_FEATURES, AS_OF.isoformat())
    d = decider.decide("never-seen", None, NOW)
    assert (d.products.policy, d.products.gate_reason) == ("model", None)


def test_a_member_without_purchases_gets_what_their_country_buys(world):
    """Cold start from the segment: the store knows the member (and their country), the
    products model has no history for them; one at a time and in the batch alike."""
    tags = world.tags
    new = tags[tags["frequency"].eq(0) & tags["country"].notna()]
    assert len(new) >= 3
    batch = world.decider().decide_many(new, NOW, n_products=4)
    for d, country in zip(batch, new["country"], strict=True):
        assert d.known_member and not world.model.products.known_member(d.member_id)
        assert {p.reason for p in d.products.items} == {"popular_in_segment"}
        expected = world.model.products.recommend(d.member_id, 4, segment=country)
        assert [p.product_id for p in d.products.items] == [p for p, _, _ in expected]
        assert f"what members in {country} buy most" in d.products.reason
        one = world.decider().decide(d.member_id, online_row(tags, d.member_id), NOW, 4)
        assert_same(one, d)
    countries = new.groupby("country")["member_id"].first()
    lists = {c: [p.product_id for p in world.decider().decide(
        m, online_row(tags, m), NOW, 5).products.items] for c, m in countries.items()}  # fmt: skip
    assert len({tuple(v) for v in lists.values()}) > 1, "every country buys the same"


def test_category_and_exclude_filter_the_products(world):
    decider, recommender = world.decider(), world.model.products
    member = world.tags["member_id"].iloc[7]
    f = online_row(world.tags, member)
    d = decider.decide(member, f, NOW, 5, category="books")
    categories = dict(zip(recommender._product_ids, recommender._categories, strict=True))
    assert len(d.products.items) == 5
    assert {categories[p.product_id] for p in d.products.items} == {"books"}
    assert "category 'books'" in d.products.reason
    top = [p.product_id for p in decider.decide(member, f, NOW, 5).products.items]
    d = decider.decide(member, f, NOW, 5, exclude=top[:2])
    assert [p.product_id for p in d.products.items][:3] == top[2:5]
    assert not {p.product_id for p in d.products.items} & set(top[:2])
    assert "2 product ids excluded" in d.products.reason
    assert decider.decide(member, f, NOW, 5, category="no-such-category").products.items == ()


def test_similar_products_of_a_known_and_an_unknown_product(world):
    decider = world.decider()
    product = world.model.similar.bought_together.neighbours("P0001", 1)[0].product_id
    s = decider.similar_products(product, 4)
    assert s.known_product and s.product_id == product
    assert 1 <= len(s.bought_together) <= 4 and 1 <= len(s.similar) <= 4
    assert product not in {x.product_id for x in s.bought_together + s.similar}
    first = s.bought_together[0]
    assert first.together == world.model.similar.bought_together.neighbours(product, 1)[0].together
    assert first.reason == f"in {first.together} orders with it"
    assert [x.score for x in s.similar] == sorted((x.score for x in s.similar), reverse=True)
    assert (s.role, s.version, s.policy) == ("model", "1", "discounted_counts(power=0.5)")
    assert s.gate_reason == world.model.reasons["similar"]
    unknown = decider.similar_products("P-new", 4)
    assert not unknown.known_product and unknown.bought_together == unknown.similar == ()
    assert "no order up to 2025-12-31 holds P-new" in unknown.reason
    baseline = world.decider(baseline=True).similar_products(product, 4)
    assert (baseline.role, baseline.policy) == ("baseline", "co_occurrence_counts")
    assert "raw counts" in baseline.reason and "discounting" in s.reason
    with pytest.raises(ValueError, match="no similar-products model"):
        Decider(dataclasses.replace(world.model, similar=None), repo.CHURN_FEATURES,
                repo.COUPON_FEATURES).similar_products(product)  # fmt: skip


def test_the_columns_it_reads_are_served_by_the_feature_services():
    served = {*repo.CHURN_FEATURES, *repo.COUPON_FEATURES, *repo.SEND_TIME_FEATURES,
              *repo.PROFILE_FEATURES}  # fmt: skip
    assert set(PROFILE_COLUMNS) <= served
    assert set(EVIDENCE_COLUMNS) <= served
    assert set(TAG_EVIDENCE) == set(tag_names(load_rules()))


def test_members_at_or_above_the_abuse_threshold_are_kept_out_of_coupon_offers(world):
    """A policy giving PCT10 to everyone; the member whose abuse_risk is at or above the
    threshold gets none, one at a time and in the batch alike, and the reason quotes both
    numbers; the others keep the coupon; with no threshold nobody is kept out."""
    fixed = FixedCouponPolicy("PCT10", 0.42).fit(
        np.zeros((0, len(repo.COUPON_FEATURES))), np.array([]), np.array([]),
        list(repo.COUPON_FEATURES),
    )  # fmt: skip
    champions = dataclasses.replace(world.model, coupon=fixed)
    tags = world.tags.head(6).copy()
    tags["abuse_risk"] = [0.93, 0.80, 0.79, 0.1, None, 0.0]
    decider = Decider(champions, repo.CHURN_FEATURES, repo.COUPON_FEATURES, AS_OF.isoformat(),
                      abuse_threshold=0.8)  # fmt: skip
    batch = decider.decide_many(tags, NOW, n_products=2)
    assert [d.coupon.coupon_id for d in batch] == [None, None, "PCT10", "PCT10", "PCT10", "PCT10"]
    assert batch[0].coupon.reason == (
        "kept out of coupon offers: coupon-abuse risk 0.93 at or above 0.80"
    )
    assert batch[1].coupon.reason.endswith("risk 0.80 at or above 0.80")
    assert batch[2].coupon.reason == fixed.reason
    for many in batch:
        one = decider.decide(many.member_id, online_row(tags, many.member_id), NOW, 2)
        assert_same(one, many)
    lenient = Decider(champions, repo.CHURN_FEATURES, repo.COUPON_FEATURES, AS_OF.isoformat(),
                      abuse_threshold=None)  # fmt: skip
    assert {d.coupon.coupon_id for d in lenient.decide_many(tags, NOW, 2)} == {"PCT10"}
    # without the column (a store that does not serve it) nobody is kept out
    plain = decider.decide_many(world.tags.head(3), NOW, 2)
    assert {d.coupon.coupon_id for d in plain} == {"PCT10"}
