"""Behavioural clusters on hand-made members whose groups are known: k by silhouette finds
them, names come from the centroids, the fit repeats exactly, tiny shops get one cluster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.clusters import (
    ALL_MEMBERS,
    DEFAULT_FEATURES,
    NO_PURCHASE,
    ClusterConfig,
    assign_clusters,
    name_centroid,
)

# (group, recency_days, frequency, monetary, avg_order_value, discount_share, events_recent,
#  open_rate, tenure_days): the group's centre; members scatter a little around it
GROUPS = {
    "vip": (3, 40, 4000, 100, 0.02, 30, 0.5, 700),
    "lapsed": (300, 3, 120, 40, 0.6, 0, 0.02, 700),
    "steady": (30, 8, 400, 50, 0.1, 5, 0.2, 700),
}


def planted(per_group: int = 30, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for g, centre in GROUPS.items():
        for i in range(per_group):
            noise = rng.normal(1.0, 0.05, len(centre))
            rows.append({"member_id": f"{g}{i:02d}", "group": g,
                         **dict(zip(DEFAULT_FEATURES, np.array(centre) * noise, strict=True))})  # fmt: skip
    rows.append({"member_id": "new", "group": "new", **dict.fromkeys(DEFAULT_FEATURES, np.nan),
                 "frequency": 0.0, "tenure_days": 3.0})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_planted_groups_are_found_and_named_from_their_centroids():
    tags = planted()
    c = assign_clusters(tags, ClusterConfig(k_min=2, k_max=6, seed=0))
    assert c.k == 3 and c.note is None
    assert max(c.silhouettes, key=c.silhouettes.get) == 3
    got = tags.assign(cluster=c.frame["cluster"]).groupby("group")["cluster"].agg(set)
    assert all(len(s) == 1 for s in got), got  # each planted group is one cluster
    names = {g: next(iter(s)) for g, s in got.items()}
    assert names["new"] == NO_PURCHASE
    assert len(set(names.values())) == 4
    # the words come from the strongest deviations of each centroid
    assert "frequent" in names["vip"] or "high-spending" in names["vip"]
    assert "lapsed" in names["lapsed"] or "bargain-hunting" in names["lapsed"]
    assert c.sizes == {names["vip"]: 30, names["lapsed"]: 30, names["steady"]: 30, NO_PURCHASE: 1}
    assert set(c.centroids.index) == set(names.values()) - {NO_PURCHASE}


def test_the_fit_is_reproducible_with_a_seed():
    tags = planted(seed=4)
    a = assign_clusters(tags, ClusterConfig(seed=3))
    b = assign_clusters(tags, ClusterConfig(seed=3))
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert a.silhouettes == b.silhouettes


def test_a_tiny_shop_gets_one_cluster_and_says_why():
    tags = planted().iloc[[0, 31, 90]]  # two buyers and one member without a purchase
    c = assign_clusters(tags, ClusterConfig(k_min=2, k_max=5))
    assert c.k == 1 and c.silhouettes == {}
    assert c.frame["cluster"].tolist() == [ALL_MEMBERS, ALL_MEMBERS, NO_PURCHASE]
    assert "2 members with a purchase" in c.note and "at least 3 distinct" in c.note
    nobody = assign_clusters(planted().iloc[[90]])
    assert nobody.k == 0 and nobody.frame["cluster"].tolist() == [NO_PURCHASE]


def test_names_read_the_centroid():
    cfg = ClusterConfig()
    z = np.zeros(len(DEFAULT_FEATURES))
    z[DEFAULT_FEATURES.index("recency_days")] = 1.4
    z[DEFAULT_FEATURES.index("discount_share")] = 2.0
    z[DEFAULT_FEATURES.index("frequency")] = -0.3  # too small to name
    assert name_centroid(z, DEFAULT_FEATURES, cfg) == ["bargain-hunting", "lapsed"]
    assert name_centroid(np.zeros(len(DEFAULT_FEATURES)), DEFAULT_FEATURES, cfg) == []


def test_bad_config_and_input_say_what_is_wrong():
    with pytest.raises(ValueError, match="k_min <= k_max"):
        ClusterConfig(k_min=4, k_max=3)
    with pytest.raises(ValueError, match="no cluster words"):
        ClusterConfig(features=("shoe_size",))
    with pytest.raises(ValueError, match="open_rate"):
        assign_clusters(planted().drop(columns=["open_rate"]))
