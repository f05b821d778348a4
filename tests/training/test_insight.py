"""The member-insight columns composed in one call on a synthetic shop: one row per member
in the tag frame's order, every column the member table needs, settings honoured, and the
cluster of the most frequent buyers holds the most planted heavy buyers."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from features.behaviour import BEHAVIOUR_COLUMNS
from features.settings import MemberwiseSettings
from features.tags import compute_tags
from pipelines.ingest import load_shop
from pipelines.synthetic import generate
from training.insight import INSIGHT_COLUMNS, member_insight

AS_OF = date(2025, 12, 31)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    folder = tmp_path_factory.mktemp("insight-shop")
    generate(folder, members=300, seed=8)
    shop = load_shop(folder, AS_OF)
    return shop, compute_tags(shop.tables, AS_OF), pd.read_parquet(folder / "truth/members.parquet")


@pytest.mark.slow
def test_one_row_per_member_with_every_insight_column(shop):
    data, tags, truth = shop
    ins = member_insight(tags, data.tables, AS_OF, MemberwiseSettings(home="/nonexistent"))
    f = ins.frame
    assert list(f.columns) == ["member_id", *INSIGHT_COLUMNS, *BEHAVIOUR_COLUMNS]
    assert f["member_id"].tolist() == tags["member_id"].astype(str).tolist()
    buyers = tags["frequency"].gt(0).to_numpy()
    assert f.loc[buyers, "clv_12m"].notna().all() and f.loc[~buyers, "clv_12m"].isna().all()
    assert f["abuse_risk"].between(0, 1).all() and f["coupon_abuse_risk"].dtype == bool
    assert f["cluster"].notna().all() and ins.clusters.k >= 2
    at_risk = f["churn_driver"].notna()
    assert at_risk.any() and f.loc[at_risk, "recall_action"].notna().all()
    assert any("no churn_risk column" in n for n in ins.notes)
    assert any("proxy" in n for n in ins.notes)  # the synthetic coupons have no minimum spend
    summary = ins.summary()
    assert summary["at_risk_members"] == int(at_risk.sum())
    assert set(summary["cluster_sizes"]) == set(f["cluster"])
    # the cluster of the most frequent buyers holds the most planted heavy buyers
    heavy = f[buyers].merge(truth[["member_id", "heavy_buyer"]], on="member_id")
    share = heavy.groupby("cluster")["heavy_buyer"].mean()
    frequent = ins.clusters.centroids["frequency"].idxmax()
    assert share[frequent] > share.drop(frequent).max()


@pytest.mark.slow
def test_a_given_churn_risk_and_the_settings_are_used(shop):
    data, tags, _ = shop
    risk = np.where(tags["member_id"].eq(tags["member_id"].iloc[5]), 0.95, 0.1)
    s = MemberwiseSettings(home="/nonexistent", insight={"cluster_k_max": 2})
    ins = member_insight(tags.assign(churn_risk=risk), data.tables, AS_OF, s)
    assert not any("churn_risk" in n for n in ins.notes)
    assert ins.frame["churn_driver"].notna().sum() == 1
    assert list(ins.clusters.silhouettes) == [2]


def test_an_empty_k_range_is_refused_by_the_settings():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="cluster_k_min \\(5\\) must not exceed"):
        MemberwiseSettings(home="/nonexistent", insight={"cluster_k_min": 5, "cluster_k_max": 3})
