"""Behavioural clusters of members: k-means on standardized behaviour features, k by
silhouette, each cluster named from its centroid.

:func:`assign_clusters` takes the tag frame (``features.tags``, one row per member) and
returns a ``cluster`` name per member. Members with a purchase are clustered; members
without one are the cluster "no purchase yet" (their behaviour features are mostly
undefined). Skewed counts and money are log-transformed (``log1p``) before
standardization, missing values take the feature's median. k runs over
``[k_min, k_max]`` and the k with the best silhouette (on at most ``silhouette_sample``
members) wins;
a shop with too few distinct members for two clusters gets one, and the result says why.

A cluster's name comes from its standardized centroid: the features deviating most from
the average member (at least ``name_min_z`` standard deviations), strongest first, each
turned into a word by its direction (``FEATURE_WORDS``), e.g. "frequent high-spending
members" or "lapsed bargain-hunting members"; "typical members" when nothing deviates.
Names are unique within a fit. Everything is deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

NO_PURCHASE = "no purchase yet"
ALL_MEMBERS = "all members"

# feature -> (word when above the average member, word when below); log1p marks skew
FEATURE_WORDS: dict[str, tuple[str, str]] = {
    "recency_days": ("lapsed", "recent"),
    "frequency": ("frequent", "infrequent"),
    "monetary": ("high-spending", "low-spending"),
    "avg_order_value": ("big-basket", "small-basket"),
    "discount_share": ("bargain-hunting", "full-price"),
    "events_recent": ("browsing", "quiet"),
    "open_rate": ("message-engaged", "message-ignoring"),
    "tenure_days": ("long-standing", "newer"),
    "coupon_redemption_rate": ("coupon-redeeming", "coupon-ignoring"),
    "top_category_share": ("single-category", "multi-category"),
}
LOG_FEATURES = frozenset({"recency_days", "frequency", "monetary", "avg_order_value",
                          "events_recent", "tenure_days"})  # fmt: skip
DEFAULT_FEATURES: tuple[str, ...] = (
    "recency_days", "frequency", "monetary", "avg_order_value", "discount_share",
    "events_recent", "open_rate", "tenure_days",
)  # fmt: skip


@dataclass(frozen=True)
class ClusterConfig:
    """``k_min`` / ``k_max``: the range of k tried; ``sample``: at most this many members
    are used for fitting (all members are then assigned); ``silhouette_sample``: at most
    this many of those score each k (the silhouette costs the square of its rows);
    ``features``: tag columns clustered on (known to :data:`FEATURE_WORDS`);
    ``name_min_z``: a centroid feature names the cluster from this many standard
    deviations; ``name_words``: at most this many words in a name; ``seed``: k-means and
    sampling seed."""

    k_min: int = 2
    k_max: int = 8
    sample: int = 20_000
    silhouette_sample: int = 5_000
    features: tuple[str, ...] = DEFAULT_FEATURES
    name_min_z: float = 0.5
    name_words: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.k_min <= self.k_max:
            raise ValueError(f"need 2 <= k_min <= k_max, got {self.k_min}, {self.k_max}")
        unknown = [f for f in self.features if f not in FEATURE_WORDS]
        if unknown:
            raise ValueError(f"no cluster words for the features {unknown}")


@dataclass(frozen=True)
class Clusters:
    """The result: ``frame`` (member_id, cluster, in the input's order); ``k`` (clusters of
    buyers); ``silhouettes`` (k -> silhouette tried); ``centroids`` (one row per cluster
    name, standardized feature means; empty with one cluster); ``sizes`` (name -> members,
    "no purchase yet" included); ``features`` (the columns used); ``note`` (why a single
    cluster, or None)."""

    frame: pd.DataFrame
    k: int
    silhouettes: dict[int, float]
    centroids: pd.DataFrame
    sizes: dict[str, int]
    features: tuple[str, ...]
    note: str | None = field(default=None)


def behaviour_matrix(tags: pd.DataFrame, features: tuple[str, ...]) -> np.ndarray:
    """(n, len(features)) float64: log1p of the skewed columns, medians for missing values
    (0 when a column is missing throughout), then standardized (a constant column is 0)."""
    cols = []
    for f in features:
        v = pd.to_numeric(tags[f], errors="coerce").to_numpy(np.float64)
        if f in LOG_FEATURES:
            v = np.log1p(np.clip(v, 0, None))
        fill = float(np.median(v[np.isfinite(v)])) if np.isfinite(v).any() else 0.0
        cols.append(np.where(np.isfinite(v), v, fill))
    X = np.column_stack(cols) if cols else np.zeros((len(tags), 0))
    if len(X) == 0:
        return X
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def name_centroid(z: np.ndarray, features: tuple[str, ...], cfg: ClusterConfig) -> list[str]:
    """Words for a standardized centroid (len(features),), strongest deviation first (ties:
    feature order); only deviations of at least ``cfg.name_min_z``; every such word."""
    order = sorted(range(len(features)), key=lambda i: (-abs(z[i]), i))
    return [FEATURE_WORDS[features[i]][0 if z[i] > 0 else 1]
            for i in order if abs(z[i]) >= cfg.name_min_z]  # fmt: skip


def _names(centroids: np.ndarray, features: tuple[str, ...], cfg: ClusterConfig) -> list[str]:
    words = [name_centroid(c, features, cfg) for c in centroids]
    names: list[str] = []
    for w in words:
        take = cfg.name_words
        name = " ".join(w[:take]) + " members" if w else "typical members"
        while name in names and take < len(w):
            take += 1
            name = " ".join(w[:take]) + " members"
        base, i = name, 2
        while name in names:
            name, i = f"{base} ({i})", i + 1
        names.append(name)
    return names


def assign_clusters(tags: pd.DataFrame, config: ClusterConfig | None = None) -> Clusters:
    """Cluster the members of ``tags`` (one row per member: ``member_id``, ``frequency`` and
    ``config.features``) and name the clusters; see the module docstring."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from threadpoolctl import threadpool_limits

    cfg = config or ClusterConfig()
    missing = [c for c in ("member_id", "frequency", *cfg.features) if c not in tags]
    if missing:
        raise ValueError(f"assign_clusters needs the tag columns {missing}")
    n = len(tags)
    labels = np.full(n, NO_PURCHASE, dtype=object)
    buyers = (pd.to_numeric(tags["frequency"], errors="coerce").fillna(0) > 0).to_numpy()
    X = behaviour_matrix(tags[buyers], cfg.features)
    rng = np.random.default_rng(cfg.seed)
    fit_rows = rng.choice(len(X), cfg.sample, replace=False) if len(X) > cfg.sample else None
    Xf = X if fit_rows is None else X[np.sort(fit_rows)]
    distinct = len(np.unique(Xf.round(9), axis=0)) if len(Xf) else 0

    silhouettes: dict[int, float] = {}
    note = None
    k_hi = min(cfg.k_max, distinct - 1)
    if k_hi < cfg.k_min:
        note = (
            f"one cluster: {int(buyers.sum())} members with a purchase ({distinct} distinct "
            f"behaviours) are too few for {cfg.k_min} clusters with a silhouette (it needs at "
            f"least {cfg.k_min + 1} distinct members)"
        )
        labels[buyers] = ALL_MEMBERS
        centroids = pd.DataFrame(columns=list(cfg.features), dtype=np.float64)
        k = 1 if buyers.any() else 0
    else:
        fits = {}
        # one thread (OpenMP and BLAS): on these sizes threads only add synchronisation, and
        # on a busy machine their spin-waits cost seconds per fit
        with threadpool_limits(limits=1):
            for k in range(cfg.k_min, k_hi + 1):
                km = KMeans(n_clusters=k, n_init=10, random_state=cfg.seed).fit(Xf)
                fits[k] = km
                size = cfg.silhouette_sample if len(Xf) > cfg.silhouette_sample else None
                silhouettes[k] = float(
                    silhouette_score(Xf, km.labels_, sample_size=size, random_state=cfg.seed)
                )
        k = max(silhouettes, key=lambda j: (silhouettes[j], -j))  # ties: fewer clusters
        km = fits[k]
        with threadpool_limits(limits=1):
            assigned = km.predict(X)
        names = _names(km.cluster_centers_, cfg.features, cfg)
        labels[buyers] = np.asarray(names, dtype=object)[assigned]
        centroids = pd.DataFrame(km.cluster_centers_, columns=list(cfg.features), index=names)
    frame = pd.DataFrame({"member_id": tags["member_id"].to_numpy(), "cluster": labels})
    sizes = {str(c): int(v) for c, v in frame["cluster"].value_counts().items()}
    return Clusters(frame, k, silhouettes, centroids, sizes, tuple(cfg.features), note)
