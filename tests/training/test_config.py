"""The settings tree is the source of every model configuration: each dataclass in models/
is built from it, every field of it is a setting, and the defaults agree."""

from dataclasses import fields

import pytest

from features.settings import (
    ChurnSettings,
    CouponSettings,
    ProductsSettings,
    SendTimeSettings,
    TrainingSettings,
)
from models.churn import ChurnConfig
from models.coupon import CouponConfig
from models.send_time import SendTimeConfig
from training.config import (
    RECOMMENDERS,
    churn_config,
    coupon_config,
    recommender_config,
    send_time_config,
)


@pytest.mark.parametrize("name", sorted(RECOMMENDERS))
def test_every_recommender_config_comes_from_the_products_section(name):
    cls, section, seeded = RECOMMENDERS[name]
    products = ProductsSettings()
    assert recommender_config(name, products, seed=0) == cls()  # the same defaults
    settable = set(type(products.popularity).model_fields)
    if section is not None:
        settable |= set(type(getattr(products, section)).model_fields)
    assert settable | ({"random_state"} if seeded else set()) == {f.name for f in fields(cls)}


def test_a_section_value_and_the_seed_reach_the_recommender():
    products = ProductsSettings(popularity={"recent_days": 3}, als={"factors": 8})
    cfg = recommender_config("als", products, seed=7, iterations=2)
    assert (cfg.recent_days, cfg.factors, cfg.random_state, cfg.iterations) == (3, 8, 7, 2)
    with pytest.raises(ValueError, match="unknown recommender"):
        recommender_config("svd", products, seed=0)


def test_churn_coupon_and_send_time_configs_come_from_their_sections():
    training = TrainingSettings()
    assert churn_config(ChurnSettings(), training) == ChurnConfig()
    assert coupon_config(CouponSettings(), training) == CouponConfig()
    assert send_time_config(SendTimeSettings()) == SendTimeConfig()
    derived = {"horizon_days", "random_state"}  # from training
    assert set(ChurnSettings.model_fields) | derived == {f.name for f in fields(ChurnConfig)}
    assert set(CouponSettings.model_fields) | {"seed"} == {f.name for f in fields(CouponConfig)}
    # level is chosen by the gate (member-level model or the segment-hour rule), not a setting
    assert set(SendTimeSettings.model_fields) | {"level"} == {
        f.name for f in fields(SendTimeConfig)
    }
    custom = TrainingSettings(horizon_days=60, seed=4)
    c = churn_config(ChurnSettings(cv=2), custom)
    assert (c.horizon_days, c.random_state, c.cv) == (60, 4, 2)
    assert coupon_config(CouponSettings(), custom).seed == 4
