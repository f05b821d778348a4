"""What the app loads once at start-up and shares with every request."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from features import repo
from features.settings import MemberwiseSettings
from models.registry import Champions, load_champions

log = logging.getLogger(__name__)


@dataclass
class AppState:
    settings: MemberwiseSettings
    store: Any = None
    champions: Champions | None = None
    feature_refs: list[str] = field(default_factory=list)
    as_of: str | None = None
    error: str | None = None
    coupons_precomputed: int = 0

    @property
    def ready(self) -> bool:
        return self.store is not None and self.champions is not None

    def load(self) -> None:
        """Open the feature store and load every champion; records the error if any."""
        try:
            self.champions = load_champions(self.settings.tracking_uri)
            store = repo.feature_store(self.settings)
            refs: list[str] = []
            for name in (repo.COUPON_SERVICE, repo.SEND_TIME_SERVICE):
                svc = store.get_feature_service(name)
                for proj in svc.feature_view_projections:
                    refs += [f"{proj.name_to_use()}:{f.name}" for f in proj.features]
            self.feature_refs = list(dict.fromkeys(refs))
            # one warm read so the first storefront request pays no set-up cost
            store.get_online_features(features=self.feature_refs, entity_rows=[{"member_id": "_"}])
            self.store = store
            latest = self.settings.home_dir / "latest_run.json"
            if latest.exists():
                self.as_of = json.loads(latest.read_text())["as_of"]
            try:
                self.coupons_precomputed = self._precompute_coupons()
            except Exception:  # an optimisation only: requests then decide themselves
                log.exception("coupon decisions not precomputed")
            self.error = None
        except Exception as exc:  # reported by /readyz; the app still answers /healthz
            self.error = f"{type(exc).__name__}: {exc}"

    def _precompute_coupons(self) -> int:
        """Coupon decisions change only when a run materializes new features: decide them
        for every member of the latest snapshot now, in one vectorised pass, so a request
        whose online features match the snapshot does no tree traversal. Skipped above
        ``serving.coupon_precompute_max_members`` (requests then compute and memoise)."""
        assert self.champions is not None
        if self.as_of is None:
            return 0
        path = repo.snapshot_path(self.settings, self.as_of)
        if not path.exists():
            return 0
        meta = pq.read_metadata(path)
        if meta.num_rows > self.settings.serving.coupon_precompute_max_members:
            return 0
        X = pq.read_table(path, columns=repo.COUPON_FEATURES).to_pandas().to_numpy(float)
        return int(self.champions.coupon.precompute(X))

    def member_features(self, member_id: str) -> dict[str, Any] | None:
        """Online features of one member by name, or None for a member the store lacks."""
        resp = self.store.get_online_features(
            features=self.feature_refs, entity_rows=[{"member_id": member_id}]
        ).to_dict()
        values = {k: v[0] for k, v in resp.items() if k != "member_id"}
        if all(v is None for v in values.values()):
            return None
        return values


def as_float(v: Any) -> float:
    return float("nan") if v is None else float(v)


def finite(v: float) -> bool:
    return not (math.isnan(v) or math.isinf(v))
