"""The one configuration tree: every number a user might tune, by concern.

``MemberwiseSettings`` is the root; each concern is a nested section::

    home                 where all state lives
    stores.*             online store, Redis, MLflow tracking URI, Feast project
    tags.*               tag thresholds (features/tags.py)
    training.*           horizon, cutoffs, windows, seed, k, held-out share
    products.popularity  what every recommender shares (just-bought filter, popularity)
    products.hybrid      the shipped recommender (ALS + item-item + buy-again)
    products.{buy_again,item_cosine,als,bpr}   the peers the backtest compares with
    churn.*              the calibrated gradient-boosted churn model
    coupon.*             the coupon policy (uplift learner)
    send_time.*          the send-time model, the message channels
    serving.*            the API: bind address, product list lengths, start-up work
    insight.*            member value, churn drivers, clusters, coupon-abuse risk
    levels.*             growth value and member levels

Values come from, highest first: keyword arguments; environment variables
``MEMBERWISE_<SECTION>__<NAME>`` (e.g. ``MEMBERWISE_TRAINING__HORIZON_DAYS=60``); the file
``HOME/memberwise.toml`` (one table per section, e.g. ``[training]`` ``horizon_days = 60``);
the defaults below, which are the programme's numbers. ``home`` itself comes from keyword
arguments, ``MEMBERWISE_HOME`` or the default, since the file lives in it. ``memberwise
config`` prints every effective value and where it came from (:func:`explain`).

The model configuration classes in models/ stay plain dataclasses (models import nothing
from here); training/config.py builds them from these sections, so the sections are the
source of their values. Fields named as in the model classes mean the same thing.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "MEMBERWISE_"
FILE_NAME = "memberwise.toml"
DEFAULT_HOME = Path("~/.memberwise")


class Section(BaseModel):
    """A section of the tree: unknown names are an error, so a typo never goes unnoticed."""

    model_config = ConfigDict(extra="forbid")


class StoresSettings(Section):
    online_store: Literal["sqlite", "redis"] = Field(
        "sqlite", description="Feast online store: SQLite file in the home, or Redis"
    )
    redis_url: str = Field("127.0.0.1:6379", description="Redis host:port (online_store=redis)")
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking + registry URI; unset: HOME/mlflow/mlflow.db (SQLite)"
    )
    feast_project: str = Field("memberwise", description="Feast project name")
    state_dir: Path | None = Field(
        None,
        description="where the serving side keeps its own state (API keys, the DuckDB member "
        "store, rate-limit counters when Redis is off); unset: HOME/var. Serving never writes "
        "anywhere else in the home",
    )
    member_store_url: str | None = Field(
        None,
        description="member store the segment queries read (postgresql://...); unset: DuckDB "
        "file STATE_DIR/members.duckdb. Point every API replica at the same PostgreSQL",
    )
    tag_engine: Literal["duckdb", "spark"] = Field(
        "duckdb",
        description="where the tag SQL runs: DuckDB in the process, or Spark (the same queries, "
        "transpiled; needs the 'spark' extra and Java 17)",
    )
    spark_master: str = Field(
        "local[*]",
        description="Spark master of tag_engine=spark (local[*], spark://host:7077, ...)",
    )
    spark_shuffle_partitions: int = Field(
        8, ge=1, description="spark.sql.shuffle.partitions of tag_engine=spark (raise on a cluster)"
    )


class TagSettings(Section):
    """How the tag frame is built (days are calendar days). The tags themselves, with their
    thresholds, are rules in a YAML file (features/default_tags.yaml, docs/tag-rules.md)."""

    rules_file: Path | None = Field(
        None,
        description="tag rules file; unset: HOME/tags.yaml when present (written by `memberwise "
        "run --tags FILE`), else the programme's defaults (features/default_tags.yaml)",
    )
    high_frequency_window_days: int = Field(30, description="window of orders_30d (the high_frequency rule counts orders in it)")  # fmt: skip
    value_tier_shares: tuple[float, ...] = Field(
        (0.05, 0.15, 0.30, 0.30, 0.20), description="share of members per value tier, top first"
    )
    value_tier_names: tuple[str, ...] = Field(
        ("platinum", "gold", "silver", "bronze", "basic"), description="value tier names, top first"
    )
    activity_window_days: int = Field(90, description='length of the "recent" and "previous" activity windows')  # fmt: skip
    top_categories: int = Field(3, description="preferred categories kept per member")


TagConfig = TagSettings  # the name features/tags.py and its callers use


class TrainingSettings(Section):
    """How models are trained and compared (windows in days, money in the shop's currency)."""

    seed: int = Field(0, description="random seed of every stochastic step and model")
    horizon_days: int = Field(90, description="churn label: no purchase within this many days after the cutoff; also the backtest horizon")  # fmt: skip
    churn_cutoffs: int = Field(8, description="training cutoffs stacked for churn, the latest one horizon before as-of")  # fmt: skip
    churn_cutoff_step_days: int = Field(14, description="days between those cutoffs")
    validation_days: int = Field(30, description="last days before as-of held out to compare model and baseline")  # fmt: skip
    top_k: int = Field(10, description="list length of the ranking metrics (NDCG@k ...)")
    test_share: float = Field(0.25, description="share of members held out for churn and coupon evaluation")  # fmt: skip
    coupon_response_days: int = Field(14, description="an offer's outcome is the net margin in this window")  # fmt: skip
    default_margin_rate: float = Field(0.3, description="margin rate of products without one")
    max_coupon_snapshots: int = Field(24, description="at most this many offer dates get their own tag snapshot")  # fmt: skip
    openmp_threads: int = Field(1, ge=0, description="OpenMP threads of the model fits in `memberwise run` (gradient boosting, implicit); 0 = all cores. More help only on an idle machine: beside other work, OpenMP's spin-waiting threads make a fit many times slower than one thread")  # fmt: skip


class PopularitySettings(Section):
    """Shared by every recommender (models.products.PopularityConfig); days before as-of."""

    recent_days: int = Field(14, description='the "just bought" filter window')
    popular_days: int = Field(30, description="buyers within this window count extra towards popularity")  # fmt: skip
    popular_recent_weight: float = Field(1.0, description="popularity = buyers + weight * recent buyers")  # fmt: skip
    repeat_rate_threshold: float = Field(0.2, description="share of a product's buyers who bought it twice or more -> repeatable")  # fmt: skip
    repeat_min_buyers: int = Field(5, description="fewer buyers than this: the repeat rate is not trusted")  # fmt: skip


class HybridSettings(Section):
    """The shipped recommender (models.products.HybridConfig; random_state = training.seed)."""

    factors: int = Field(64, description="ALS latent factors")
    regularization: float = Field(0.05, description="ALS L2 regularization")
    iterations: int = Field(15, description="ALS iterations")
    alpha: float = Field(5.0, description="ALS confidence = alpha * weight")
    weighting: Literal["log", "count", "bm25"] = Field("log", description="interaction weight")
    bm25_k1: float = Field(100.0, description="BM25 k1 (weighting=bm25)")
    bm25_b: float = Field(0.8, description="BM25 b (weighting=bm25)")
    num_threads: int = Field(0, description="implicit's threads; 0 = all cores")
    buy_again_weight: float = Field(2.0, description="weight of the member's own repeat purchases")  # fmt: skip
    buy_again_half_life_days: float = Field(60.0, description="recency decay of the buy-again score")  # fmt: skip
    buy_again_saturation: float = Field(1.0, description="buy-again frequency term = count / (count + this)")  # fmt: skip
    item_weight: float = Field(0.5, description="weight of item-item similarity; 0 turns it off")
    item_neighbours: int = Field(20, description="most similar products kept per product")
    exclude_owned: bool = Field(True, description="hide past products that are not repeatable")


class BuyAgainSettings(Section):
    """Peer: the member's own products (models.peers.BuyAgainConfig)."""

    half_life_days: float = Field(60.0, description="recency decay of a past purchase")
    count_power: float = Field(1.0, description="score = count ** power * decay")


class ItemCosineSettings(Section):
    """Peer: implicit's item-item cosine (models.peers.ItemCosineConfig)."""

    K: int = Field(100, description="neighbours kept per product")  # noqa: N815 (implicit's name)
    weighting: Literal["log", "count", "bm25"] = Field("count", description="interaction weight")
    bm25_k1: float = Field(100.0, description="BM25 k1")
    bm25_b: float = Field(0.8, description="BM25 b")
    filter_already_bought: bool = Field(True, description="hide what the member bought")
    num_threads: int = Field(0, description="implicit's threads; 0 = all cores")


class ALSSettings(Section):
    """Peer: implicit's ALS alone (models.peers.ALSConfig; random_state = training.seed)."""

    factors: int = Field(64, description="latent factors")
    regularization: float = Field(0.05, description="L2 regularization")
    alpha: float = Field(10.0, description="confidence = alpha * weight")
    iterations: int = Field(15, description="iterations")
    weighting: Literal["log", "count", "bm25"] = Field("bm25", description="interaction weight")
    bm25_k1: float = Field(100.0, description="BM25 k1")
    bm25_b: float = Field(0.8, description="BM25 b")
    filter_already_bought: bool = Field(True, description="hide what the member bought")
    num_threads: int = Field(0, description="implicit's threads; 0 = all cores")


class BPRSettings(Section):
    """Peer: implicit's BPR (models.peers.BPRConfig; random_state = training.seed)."""

    factors: int = Field(64, description="latent factors")
    learning_rate: float = Field(0.05, description="SGD learning rate")
    regularization: float = Field(0.01, description="L2 regularization")
    iterations: int = Field(100, description="epochs")
    filter_already_bought: bool = Field(True, description="hide what the member bought")
    num_threads: int = Field(0, description="> 1 is Hogwild (not reproducible)")


class ProductsSettings(Section):
    similar_neighbours: int = Field(50, ge=1, description="products kept as bought together / similar per product")  # fmt: skip
    popularity: PopularitySettings = PopularitySettings()
    hybrid: HybridSettings = HybridSettings()
    buy_again: BuyAgainSettings = BuyAgainSettings()
    item_cosine: ItemCosineSettings = ItemCosineSettings()
    als: ALSSettings = ALSSettings()
    bpr: BPRSettings = BPRSettings()


class ChurnSettings(Section):
    """The churn model (models.churn.ChurnConfig; horizon_days = training.horizon_days,
    random_state = training.seed)."""

    method: Literal["isotonic", "sigmoid"] = Field("isotonic", description="calibration method")
    cv: int = Field(3, description="calibration folds")
    learning_rate: float = Field(0.03, description="gradient boosting learning rate")
    max_iter: int = Field(300, description="boosting iterations")
    max_leaf_nodes: int = Field(7, description="leaves per tree")
    min_samples_leaf: int = Field(50, description="members per leaf, at least")
    l2_regularization: float = Field(1.0, description="L2 penalty on leaf values")
    early_stopping: bool = Field(False, description="stop boosting on a validation split")
    bg_nbd_features: bool = Field(True, description="add the BG/NBD model's view as features")


class CouponSettings(Section):
    """The coupon policy (models.coupon.CouponConfig; seed = training.seed). Margins in the
    shop's currency per offer."""

    min_incremental_margin: float = Field(0.0, description="offer a coupon only above this expected uplift")  # fmt: skip
    min_rows_per_arm: int = Field(30, description="arms (and the control group) with fewer offers are dropped")  # fmt: skip
    ridge_alpha: float = Field(1.0, description="L2 penalty of the ridge parts")
    gain_alpha: float = Field(300.0, description="L2 penalty of the gain model")
    gain_outcome: Literal["purchase", "margin"] = Field("purchase", description="what the gain model learns")  # fmt: skip
    cross_fit_folds: int = Field(4, description="folds of the cross-fitted outcome models")
    z_clip: float = Field(5.0, description="standardised features clipped to +-this many sd")
    learner: Literal["boosted", "ridge"] = Field("boosted", description="learner of the decomposed estimator")  # fmt: skip
    boost_max_iter: int = Field(50, description="boosting iterations")
    boost_learning_rate: float = Field(0.1, description="boosting learning rate")
    boost_max_leaf_nodes: int = Field(7, description="leaves per tree")
    boost_min_samples_leaf: int = Field(40, description="offers per leaf (outcome, value, cost)")
    gain_min_samples_leaf: int = Field(400, description="offers per leaf of the gain model")
    boost_l2: float = Field(1.0, description="L2 penalty on leaf values")
    decision_cache_size: int = Field(100_000, description="decisions memoised per feature vector")  # fmt: skip
    shrink: bool = Field(True, description="shrink member-level effects towards each coupon's measured average by how much held-out offers confirm")  # fmt: skip
    shrink_folds: int = Field(2, ge=2, description="out-of-fold refits that measure the shrinkage")  # fmt: skip
    offer_confidence: float = Field(0.8, ge=0.5, lt=1.0, description="offer a coupon only where its expected margin clears min_incremental_margin with this one-sided confidence")  # fmt: skip


class SendTimeSettings(Section):
    """The send-time model (models.send_time.SendTimeConfig). Hours are local (0..23)."""

    message_channels: tuple[str, ...] = Field(
        ("email", "sms", "push"), description="channels a message can be sent on"
    )
    default_channel: str = Field("email", description="channel of a member with no history")
    prior_strength: float = Field(5.0, description="pseudo-engagements of the segment prior")
    smoothing_hours: int = Field(1, description="circular smoothing over neighbouring hours")
    quiet_start: int = Field(22, ge=0, le=23, description="local hour from which nothing is sent ...")  # fmt: skip
    quiet_end: int = Field(8, ge=0, le=23, description="... until this local hour")
    web_weight: float = Field(1.0, description="weight of an order or browsing engagement")
    one_per_hour: bool = Field(True, description="a member's engagements in one clock hour count once")  # fmt: skip
    recency_half_life_days: float = Field(0.0, description="> 0: older engagements count less")
    rate_prior_sends: float = Field(10.0, description="pseudo-sends at the channel's overall rate")  # fmt: skip
    fallback_confidence: float = Field(0.5, description="confidence factor of segment/global answers")  # fmt: skip


class GateSettings(Section):
    """The promotion gate (training.gate): a more complex policy replaces a simpler one only
    when its paired advantage's lower confidence bound is above zero."""

    z: float = Field(1.645, gt=0, description="the bound is advantage - z * se (1.645: one-sided 95%)")  # fmt: skip
    bootstrap: int = Field(200, ge=20, description="bootstrap resamples for metrics that are not a mean (ROC AUC)")  # fmt: skip
    tune_seconds: float = Field(60.0, ge=0, description="time budget of the shipped recommender's grid on this shop's data (0: defaults only)")  # fmt: skip
    peers: tuple[str, ...] = Field(("popularity", "buy_again", "item_cosine", "als"), description="simple product policies the shipped recommender must beat, simplest first")  # fmt: skip
    cross_fit_folds: int = Field(5, ge=2, le=10, description="folds of members the personalised coupon policy is cross-fitted over when the gate (and the backtest of a one-off campaign) values it")  # fmt: skip


class ServingSettings(Section):
    """The API (``memberwise serve``) and batch scoring."""

    host: str = Field("127.0.0.1", description="bind address of memberwise serve")
    port: int = Field(8000, description="port of memberwise serve")
    workers: int = Field(1, description="uvicorn worker processes")
    default_products: int = Field(10, ge=1, description="products per member when not asked (API ?n=, memberwise score --n)")  # fmt: skip
    max_products: int = Field(100, ge=1, description="largest ?n= the API accepts")
    coupon_precompute_max_members: int = Field(
        2_000_000, description="coupon decisions precomputed at start-up up to this many members"
    )
    online_budget_ms: float = Field(20.0, gt=0, description="longest wait for one member's online features; past it the answer is degraded (fallbacks)")  # fmt: skip
    breaker_failures: int = Field(3, ge=1, description="consecutive failed or late online reads that open the circuit breaker (then no read is tried)")  # fmt: skip
    breaker_reset_seconds: float = Field(2.0, gt=0, description="an open breaker lets one trial read through after this long; a success closes it")  # fmt: skip
    store_timeout_ms: int = Field(250, ge=1, description="Redis socket connect/read timeout of the serving reads (frees a thread blocked on a hung Redis)")  # fmt: skip
    store_retry_seconds: float = Field(2.0, gt=0, description="while the online store cannot be opened (down at start-up), try again this often")  # fmt: skip
    reload_interval_seconds: float = Field(30.0, ge=0, description="poll the registry's champion aliases this often and swap in moved models (0: only POST /v1/admin/reload)")  # fmt: skip
    fallback_max_members: int = Field(2_000_000, ge=0, description="members whose country, RFM segment and time zone are kept in memory from the tag snapshot for degraded answers")  # fmt: skip


class InsightSettings(Section):
    """Member insight (docs/member-insight.md): value and next order (models.clv), churn
    drivers and recall (features.drivers), behavioural clusters (models.clusters) and
    coupon-abuse risk (models.abuse). The seed is training.seed."""

    clv_horizon_days: int = Field(365, ge=1, description="clv_12m: expected value over this many days")  # fmt: skip
    clv_penalizer: float = Field(0.0, ge=0, description="L2 penalty of the BG/NBD and Gamma-Gamma fits")  # fmt: skip
    cycle_prior_gaps: float = Field(2.0, ge=0, description="the shop's purchase cycle counts as this many gaps when a member's own cycle is shrunk towards it")  # fmt: skip
    at_risk_threshold: float = Field(0.6, ge=0, le=1, description="churn_risk at or above this -> at risk: a churn driver and a recall action")  # fmt: skip
    driver_gap_ratio: float = Field(1.5, gt=0, description="forgotten: gap since the last order past this x the usual cycle (the programme's 150%)")  # fmt: skip
    driver_price_share: float = Field(0.3, ge=0, le=1, description="price: discounted share of spend or coupon redemption rate at least this")  # fmt: skip
    driver_min_offers: int = Field(2, ge=1, description="price: a coupon redemption rate counts from this many offers")  # fmt: skip
    driver_unhappy_share: float = Field(0.1, ge=0, le=1, description="unhappy: returned or cancelled share of orders at least this")  # fmt: skip
    driver_drift_overlap: float = Field(0.3, ge=0, le=1, description="need changed: recent categories' spend overlaps the earlier ones' by at most this")  # fmt: skip
    driver_low_open_rate: float = Field(0.05, ge=0, le=1, description="forgotten: open rate of messages at most this")  # fmt: skip
    high_value_tiers: tuple[str, ...] = Field(("platinum", "gold"), description="value tiers recalled by personal outreach and a bespoke offer")  # fmt: skip
    middle_value_tiers: tuple[str, ...] = Field(("silver",), description="value tiers recalled by a personalised coupon (the rest: a batch campaign)")  # fmt: skip
    cluster_k_min: int = Field(2, ge=2, description="fewest behavioural clusters tried")
    cluster_k_max: int = Field(8, ge=2, description="most behavioural clusters tried (k by silhouette)")  # fmt: skip
    cluster_sample: int = Field(20_000, ge=100, description="members k-means is fit on, at most (all are assigned)")  # fmt: skip
    cluster_silhouette_sample: int = Field(5_000, ge=100, description="members each k's silhouette is measured on, at most")  # fmt: skip
    abuse_threshold: float = Field(0.78, ge=0, le=1, description="abuse_risk at or above this -> coupon_abuse_risk: kept out of coupon offers")  # fmt: skip
    abuse_min_spend_margin: float = Field(0.1, ge=0, description="an order is just above a coupon's minimum spend within this share of it")  # fmt: skip
    abuse_trees: int = Field(200, ge=10, description="isolation forest trees")
    abuse_samples: int = Field(64, ge=8, description="members drawn per isolation tree")

    @model_validator(mode="after")
    def _k_range(self) -> InsightSettings:
        if self.cluster_k_min > self.cluster_k_max:
            raise ValueError(
                f"insight.cluster_k_min ({self.cluster_k_min}) must not exceed "
                f"insight.cluster_k_max ({self.cluster_k_max})"
            )
        return self


class SecuritySettings(Section):
    """Who may call the API and how much (serving/security.py): API keys by scope, rate
    limits per key, request sizes, CORS, the pseudonyms logs show instead of member ids."""

    rate_limit_storefront: str = Field("6000/minute", description="requests one storefront key may make (limits syntax: N/second|minute|hour, several joined by ;)")  # fmt: skip
    rate_limit_marketing: str = Field("300/minute", description="requests one marketing key may make")  # fmt: skip
    rate_limit_admin: str = Field("300/minute", description="requests one admin key may make")
    rate_limit_storage: str = Field("memory://", description="where rate-limit counters live: memory:// (one process) or redis://HOST:PORT so every replica shares them")  # fmt: skip
    max_request_bytes: int = Field(1_048_576, ge=1, description="largest request body accepted (bytes); larger -> 413")  # fmt: skip
    cors_origins: tuple[str, ...] = Field((), description="origins browsers may call the API from (empty: no CORS headers)")  # fmt: skip


class LevelSettings(Section):
    """Growth value and member levels (features/levels.py; the programme's two models)."""

    model: Literal["behaviour", "rfm"] = Field("behaviour", description="growth value model: points per action (behaviour) or periodic growth from R, F and M scores (rfm)")  # fmt: skip
    login_points: float = Field(1.0, description="behaviour: points for the first login of a day")  # fmt: skip
    purchase_multiplier: float = Field(1.0, ge=0, description="behaviour: points per unit of currency paid (returns take theirs back)")  # fmt: skip
    review_points: float = Field(20.0, description="behaviour: points per review")
    share_points: float = Field(10.0, description="behaviour: points per share")
    period_days: int = Field(90, ge=1, description="rfm: length of a growth period (quarterly)")
    rfm_periods: int = Field(8, ge=1, description="rfm: periods summed, up to the as-of date")
    rfm_weights: tuple[float, float, float] = Field((1.0, 1.0, 1.0), description="rfm: weights of the R, F and M scores")  # fmt: skip
    points_per_score: float = Field(100.0, ge=0, description="rfm: growth per weighted score point above 3 (below 3: a loss)")  # fmt: skip
    names: tuple[str, ...] = Field(("regular", "silver", "gold", "diamond"), description="level names, bottom first")  # fmt: skip
    assign_by: Literal["thresholds", "distribution"] = Field("thresholds", description="levels from fixed growth-value thresholds or from a target share per level")  # fmt: skip
    thresholds: tuple[float, ...] = Field((0.0, 1000.0, 5000.0, 10000.0), description="growth value from which each level holds, bottom first")  # fmt: skip
    target_shares: tuple[float, ...] = Field((0.5, 0.3, 0.15, 0.05), description="assign_by=distribution: share of members per level, bottom first")  # fmt: skip
    protection_days: int = Field(90, ge=0, description="a level once reached is kept at least this long before it may go down")  # fmt: skip

    @model_validator(mode="after")
    def _shapes(self) -> LevelSettings:
        n = len(self.names)
        if len(self.thresholds) != n or len(self.target_shares) != n:
            raise ValueError(
                f"levels: {n} names need {n} thresholds and {n} target_shares "
                f"(got {len(self.thresholds)} and {len(self.target_shares)})"
            )
        if list(self.thresholds) != sorted(self.thresholds):
            raise ValueError("levels.thresholds must rise from the bottom level to the top")
        if abs(sum(self.target_shares) - 1) > 1e-6:
            raise ValueError("levels.target_shares must sum to 1")
        return self


# pre-tree names of the store settings, still read from the environment
LEGACY_ENV = {
    f"{ENV_PREFIX}ONLINE_STORE": "online_store",
    f"{ENV_PREFIX}REDIS_URL": "redis_url",
    f"{ENV_PREFIX}MLFLOW_TRACKING_URI": "mlflow_tracking_uri",
    f"{ENV_PREFIX}FEAST_PROJECT": "feast_project",
}


class SegmentSettings(Section):
    """The member store behind segment queries, profiles, exports and the console
    (features/member_store.py): bounds on every query."""

    page_size: int = Field(100, ge=1, description="members per page when not asked")
    max_page_size: int = Field(1_000, ge=1, description="largest page of members one query returns")  # fmt: skip
    query_timeout_s: float = Field(5.0, gt=0, description="a member-store query is cancelled after this many seconds")  # fmt: skip
    export_max_rows: int = Field(2_000_000, ge=1, description="most members one export streams")  # fmt: skip
    export_batch_rows: int = Field(50_000, ge=1, description="members read per batch of a streamed export")  # fmt: skip
    lookalike_max: int = Field(10_000, ge=1, description="largest lookalike size")
    lookalike_features: list[str] = Field(
        ["recency_days", "frequency", "monetary", "avg_order_value", "tenure_days",
         "growth_value", "churn_risk", "clv_12m"],
        description="numeric member-table columns of the standardized space lookalikes are "
        "nearest in (those present are used)",
    )  # fmt: skip
    pool_size: int = Field(8, ge=1, description="PostgreSQL connections each API process keeps for member-store queries")  # fmt: skip
    max_predicate_nodes: int = Field(200, ge=1, description="most nodes a segment predicate may have")  # fmt: skip


class _LegacyStoreEnv(PydanticBaseSettingsSource):
    """``MEMBERWISE_ONLINE_STORE`` etc. -> ``stores.*`` (below ``MEMBERWISE_STORES__*``)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        got = {k: os.environ[v] for v, k in LEGACY_ENV.items() if v in os.environ}
        return {"stores": got} if got else {}


class _HomeFile(TomlConfigSettingsSource):
    """``HOME/memberwise.toml``: one table per section; ``home`` cannot be set there."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        self.path = path
        super().__init__(settings_cls, toml_file=path)
        if "home" in self.toml_data:
            raise ValueError(f"{path}: 'home' cannot be set in the file that lives in it")
        unknown = sorted(set(self.toml_data) - set(settings_cls.model_fields))
        if unknown:
            raise ValueError(
                f"{path}: unknown section(s) {unknown}; known: {sorted(settings_cls.model_fields)}"
            )


def _home_of(init_kwargs: dict[str, Any]) -> Path:
    home = init_kwargs.get("home") or os.environ.get(f"{ENV_PREFIX}HOME") or DEFAULT_HOME
    return Path(home).expanduser().resolve()


class IngestSettings(Section):
    """How ingest treats rows that are valid but suspicious."""

    duplicate_lines: Literal["drop", "keep"] = Field("drop", description='exact duplicate order lines: "drop" quarantines all but the first with the reason, "keep" keeps them; either way the ingest report counts them')  # fmt: skip


IngestConfig = IngestSettings  # the name pipelines/ingest.py uses


class RunSettings(Section):
    """How runs share a home: one at a time, each committed as a whole."""

    keep_generations: int = Field(
        2,
        ge=1,
        description="committed generations kept in HOME/generations (the current one "
        "and the ones before it); older ones are deleted by the next run",
    )
    lock_timeout_seconds: float = Field(
        3600.0,
        gt=0,
        description="`memberwise run --wait`: how long to wait for a run already "
        "writing into the home before giving up",
    )


class EventSettings(Section):
    """Real-time member events (POST /v1/events): the broker tag changes are published to."""

    broker: Literal["redis", "nats", "none"] = Field(
        "redis", description="where tag changes are published: Redis Streams, NATS, or nowhere"
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Redis the tag-change stream lives in"
    )
    stream: str = Field("memberwise:tag_changes", description="Redis stream of tag changes")
    stream_max_len: int = Field(
        100_000, ge=1, description="approximate cap on the stream's length (XADD MAXLEN ~)"
    )
    nats_url: str = Field("nats://127.0.0.1:4222", description="NATS server (broker=nats)")
    subject: str = Field("memberwise.tag_changes", description="NATS subject of tag changes")
    publish_timeout_seconds: float = Field(
        2.0,
        gt=0,
        description="longest wait for the broker before the event is answered anyway "
        "(the change is then reported as not published)",
    )


class CampaignSettings(Section):
    """Campaigns (docs/campaigns.md): the defaults a campaign file or request may override."""

    holdout_share: float = Field(0.10, ge=0, lt=1, description="share of a campaign's target members held out at random (sent nothing) to measure it")  # fmt: skip
    exploration_share: float = Field(0.0, ge=0, lt=1, description="share of target members given an offer drawn at random, so the next coupon model keeps learning")  # fmt: skip
    frequency_cap: int = Field(3, ge=1, description="at most this many campaign messages per member per 7 days, across campaigns")  # fmt: skip
    quiet_start_hour: int = Field(21, ge=0, le=23, description="quiet hours start (member's local hour): no message from here ...")  # fmt: skip
    quiet_end_hour: int = Field(8, ge=0, le=23, description="... until this hour")
    default_send_hour: int = Field(10, ge=0, le=23, description="local send hour of a member without a send-hour score")  # fmt: skip
    window_days: int = Field(14, ge=1, description="days after the send that count as the campaign's outcome window")  # fmt: skip
    confidence: float = Field(0.95, gt=0, lt=1, description="confidence level of the report's intervals")  # fmt: skip


class MemberwiseSettings(BaseSettings):
    """The root of the tree (see the module docstring for its sections and sources)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore"
    )

    home: Path = Field(DEFAULT_HOME, description="all state lives here (MEMBERWISE_HOME)")
    stores: StoresSettings = StoresSettings()
    tags: TagSettings = TagSettings()
    training: TrainingSettings = TrainingSettings()
    products: ProductsSettings = ProductsSettings()
    churn: ChurnSettings = ChurnSettings()
    coupon: CouponSettings = CouponSettings()
    send_time: SendTimeSettings = SendTimeSettings()
    serving: ServingSettings = ServingSettings()
    ingest: IngestSettings = IngestSettings()
    gate: GateSettings = GateSettings()
    insight: InsightSettings = InsightSettings()
    runs: RunSettings = RunSettings()
    events: EventSettings = EventSettings()
    # the generation folder a run builds into (pipelines.home); None: the committed one
    _generation: Path | None = PrivateAttr(None)
    security: SecuritySettings = SecuritySettings()
    shops: dict[str, Path] = Field(
        default_factory=dict,
        description="several shops in one deployment: shop name -> its home; a key made with "
        "--shop NAME reads only that shop's home (keys without a shop read this home)",
    )
    levels: LevelSettings = LevelSettings()
    segments: SegmentSettings = SegmentSettings()
    campaigns: CampaignSettings = CampaignSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        kwargs = getattr(init_settings, "init_kwargs", {})
        file = _HomeFile(settings_cls, _home_of(kwargs) / FILE_NAME)
        return init_settings, env_settings, _LegacyStoreEnv(settings_cls), file

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def config_file(self) -> Path:
        """``HOME/memberwise.toml`` (read when it exists)."""
        return self.home_dir / FILE_NAME

    @property
    def feast_dir(self) -> Path:
        return (self._generation or self.home_dir) / "feast"

    @property
    def offline_dir(self) -> Path:
        return self.feast_dir / "offline"

    @property
    def mlflow_dir(self) -> Path:
        return self.home_dir / "mlflow"

    @property
    def tracking_uri(self) -> str:
        if self.stores.mlflow_tracking_uri:
            return self.stores.mlflow_tracking_uri
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        return (self.mlflow_dir / "artifacts").as_uri()

    @property
    def quarantine_dir(self) -> Path:
        return self.home_dir / "quarantine"

    @property
    def reports_dir(self) -> Path:
        return self.home_dir / "reports"

    @property
    def state_dir(self) -> Path:
        """Runtime state of the serving side (``stores.state_dir``, default ``HOME/var``)."""
        if self.stores.state_dir is not None:
            return Path(self.stores.state_dir).expanduser().resolve()
        return self.home_dir / "var"

    @property
    def members_dir(self) -> Path:
        """The member table a run writes: ``HOME/members/members.parquet``."""
        return (self._generation or self.home_dir) / "members"

    def building(self, generation: Path) -> MemberwiseSettings:
        """A copy whose generation-bound folders (``feast_dir``, ``members_dir``) point into
        ``generation``, the folder a run builds before committing it (pipelines.home)."""
        copy = self.model_copy(deep=True)
        copy._generation = generation
        return copy

    @property
    def suppression_file(self) -> Path:
        """Salted hashes of erased members, one a line (``STATE_DIR/erasure/suppressed.txt``;
        the API records erasures too, and serving writes only under ``state_dir``)."""
        return self.state_dir / "erasure" / "suppressed.txt"

    @property
    def events_log_dir(self) -> Path:
        """Where the API appends members' events for the next run (``STATE_DIR/events``)."""
        return self.state_dir / "events"


@lru_cache
def get_settings() -> MemberwiseSettings:
    """The process-wide settings (the API's cached dependency; tests override it)."""
    return MemberwiseSettings()


# ---- where each effective value came from (`memberwise config`) ----

ARGUMENT, ENVIRONMENT, FILE, DEFAULT = "argument", "environment", "file", "default"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: value}


def _descriptions(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.update(_descriptions(ann, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = info.description or ""
    return out


def explain(**kwargs: Any) -> list[dict[str, Any]]:
    """Every setting of ``MemberwiseSettings(**kwargs)`` as ``{"name": "training.horizon_days",
    "value": 90, "source": "default" | "file" | "environment" | "argument", "description"}``,
    in the tree's order. ``source`` is the highest source that set the value."""
    settings = MemberwiseSettings(**kwargs)
    layers = [
        (label, {k.lower() for k in _flatten(values)})
        for label, values in (
            (ARGUMENT, kwargs),
            (ENVIRONMENT, EnvSettingsSource(MemberwiseSettings)()),  # names are lower-cased
            (ENVIRONMENT, _LegacyStoreEnv(MemberwiseSettings)()),
            (FILE, _HomeFile(MemberwiseSettings, settings.config_file).toml_data),
        )
    ]
    desc = _descriptions(MemberwiseSettings)
    rows = []
    for name, value in _flatten(settings).items():
        source = next((label for label, names in layers if name.lower() in names), DEFAULT)
        rows.append({"name": name, "value": value, "source": source,
                     "description": desc.get(name, "")})  # fmt: skip
    return rows
