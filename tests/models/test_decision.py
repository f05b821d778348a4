"""The decision core: one member at a time and the vectorised batch give the same decision
for every member of a small synthetic shop, and each part says why."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest

from features import repo
from features.tags import BOOL_TAGS
from models.coupon import FixedCouponPolicy
from models.decision import (
    EVIDENCE_COLUMNS,
    PARTS,
    PROFILE_COLUMNS,
    TAG_EVIDENCE,
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
    assert "popularity baseline" in d.products.reason
    assert "baseline" in d.churn.reason


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
    assert {f"{p}_{a}" for p in PARTS for a in ("role", "version", "reason")} <= set(frame)


def test_the_columns_it_reads_are_served_by_the_feature_services():
    served = {*repo.CHURN_FEATURES, *repo.COUPON_FEATURES, *repo.SEND_TIME_FEATURES,
              *repo.PROFILE_FEATURES}  # fmt: skip
    assert set(PROFILE_COLUMNS) <= served
    assert set(EVIDENCE_COLUMNS) <= served
    assert set(TAG_EVIDENCE) == set(BOOL_TAGS)
