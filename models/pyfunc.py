"""MLflow ``PythonModel`` wrappers for the models without a native flavour.

``ProductsPyfunc``, ``CouponPyfunc`` and ``SendTimePyfunc`` are constructed empty; the
trainer hands the saved model file to ``mlflow.pyfunc.log_model(python_model=Wrapper(),
artifacts={"model": path}, ...)``. ``load_context`` loads that artifact once — the class
(baseline or shipped model) is chosen by the ``kind`` stored in the artifact — and keeps
it as ``.model``, which serving takes with
``mlflow.pyfunc.load_model(uri).unwrap_python_model().model``. ``predict`` answers a
pandas DataFrame for batch use:

=========  ==============================================  =================================
wrapper    input columns                                   output columns
=========  ==============================================  =================================
products   member_id (params: ``n``, default 10)            member_id, product_ids, scores,
                                                           reasons (lists, best first)
coupon     member_id + the policy's ``feature_names``      member_id, coupon_id (None for
           (missing values: NaN)                           none), expected_incremental_margin,
                                                           reason
send time  member_id; optional channel, segment, timezone  member_id, channel, hour_of_week,
                                                           confidence, timezone, source
=========  ==============================================  =================================

``input_example(model)`` builds an input example for each (pass it to ``log_model`` or to
``infer_signature(example, wrapper.predict(None, example), params=PRODUCTS_PARAMS)``, so
that ``n`` is part of the products signature).

mlflow is heavy to import, so the wrapper classes are created on first access of the
module attribute (PEP 562) and pickled by reference as ``models.pyfunc.<Name>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.coupon import CouponPolicy, NoCouponPolicy, load_coupon_policy
from models.products import Recommender, load_recommender
from models.send_time import GlobalSendTimeModel, SendTimeModel, load_send_time

if TYPE_CHECKING:
    from mlflow.pyfunc import PythonModel

    ProductsPyfunc: type[PythonModel]
    CouponPyfunc: type[PythonModel]
    SendTimePyfunc: type[PythonModel]

WRAPPERS = ("ProductsPyfunc", "CouponPyfunc", "SendTimePyfunc")
ARTIFACT = "model"  # the key of the saved model in ``artifacts``
DEFAULT_N = 10
PRODUCTS_PARAMS: dict[str, Any] = {"n": DEFAULT_N}  # the products wrapper's params schema
SEND_TIME_OPTIONAL = ("channel", "segment", "timezone")


def artifact_kind(path: str | Path) -> str:
    """The ``kind`` stored in a saved model (``.npz`` written by any model's ``save``)."""
    with np.load(Path(path), allow_pickle=False) as z:
        if "kind" not in z.files:
            raise ValueError(f"{path} has no 'kind': not a memberwise model artifact")
        return str(z["kind"])


# ---------------------------------------------------------------- batch predictions
def _text_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _member_ids(model_input: pd.DataFrame) -> list[str]:
    if "member_id" not in model_input:
        raise KeyError(f"model input needs a member_id column, got {list(model_input.columns)}")
    return model_input["member_id"].astype(str).tolist()


def products_frame(
    model: Recommender, model_input: pd.DataFrame, params: dict[str, Any] | None = None
) -> pd.DataFrame:
    """member_id, product_ids, scores, reasons (lists, best first) for each input row."""
    members = _member_ids(model_input)
    n = int((params or {}).get("n", DEFAULT_N))
    recs = model.recommend_many(members, n=n)
    return pd.DataFrame(
        {
            "member_id": members,
            "product_ids": [[p for p, _, _ in r] for r in recs],
            "scores": [[float(s) for _, s, _ in r] for r in recs],
            "reasons": [[why for _, _, why in r] for r in recs],
        }
    )


def coupon_frame(model: CouponPolicy | NoCouponPolicy, model_input: pd.DataFrame) -> pd.DataFrame:
    """member_id, coupon_id (None for none), expected_incremental_margin, reason."""
    members = _member_ids(model_input)
    names = model.feature_names if isinstance(model, CouponPolicy) and model.fitted else []
    missing = [c for c in names if c not in model_input]
    if missing:
        raise KeyError(f"coupon input lacks feature columns {missing}; expected {names}")
    X = model_input[names].to_numpy(dtype=np.float64) if names else np.zeros((len(members), 0))
    decisions = model.decide_many(X)
    return pd.DataFrame(
        {
            "member_id": members,
            "coupon_id": [c for c, _, _ in decisions],
            "expected_incremental_margin": np.array([m for _, m, _ in decisions], dtype=np.float64),
            "reason": [r for _, _, r in decisions],
        }
    )


def send_time_frame(
    model: SendTimeModel | GlobalSendTimeModel, model_input: pd.DataFrame
) -> pd.DataFrame:
    """member_id, channel, hour_of_week, confidence, timezone, source for each input row."""
    members = _member_ids(model_input)
    opt: dict[str, list[str | None]] = {
        c: [_text_or_none(v) for v in model_input[c].tolist()]
        if c in model_input
        else [None] * len(members)
        for c in SEND_TIME_OPTIONAL
    }
    out = model.best_many(members, opt["channel"], opt["segment"], opt["timezone"])
    return pd.DataFrame(
        {
            "member_id": members,
            "channel": [s.channel for s in out],
            "hour_of_week": np.array([s.hour_of_week for s in out], dtype=np.int64),
            "confidence": np.array([s.confidence for s in out], dtype=np.float64),
            "timezone": [s.timezone for s in out],
            "source": [s.source for s in out],
        }
    )


# ---------------------------------------------------------------- input examples
def input_example(model: Any, member_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """An input example for ``model``'s wrapper: two rows (the given or two known member
    ids, else "member-1", "member-2"). Send time marks channel/segment/timezone optional
    (one None each); coupon has one all-NaN row, so feature columns infer as doubles."""
    if member_ids is None:
        known = getattr(model, "_member_ids", getattr(model, "_members", np.array([])))
        member_ids = [str(x) for x in np.asarray(known)[:2].tolist()]
    ids = list(member_ids)[:2]
    ids += [f"member-{k}" for k in range(len(ids) + 1, 3)]
    if isinstance(model, Recommender):
        return pd.DataFrame({"member_id": ids})
    if isinstance(model, CouponPolicy | NoCouponPolicy):
        names = model.feature_names
        feats = {c: [0.0, np.nan] for c in names}
        return pd.DataFrame({"member_id": ids, **feats})
    if isinstance(model, SendTimeModel | GlobalSendTimeModel):
        return pd.DataFrame(
            {
                "member_id": ids,
                "channel": [None, model.config.default_channel],
                "segment": [None, "segment"],
                "timezone": [None, "UTC"],
            }
        )
    raise TypeError(f"no pyfunc wrapper for {type(model).__name__}")


# ---------------------------------------------------------------- the wrappers
_CLASSES: dict[str, type] = {}


def _build() -> dict[str, type]:
    """Create the wrapper classes (imports mlflow)."""
    from mlflow.pyfunc import PythonModel

    class _Wrapper(PythonModel):
        """Loads ``artifacts["model"]`` once into ``.model``."""

        family = ""
        loaders: dict[str, Any] = {}

        def __init__(self) -> None:
            self.model: Any = None

        def load_context(self, context: Any) -> None:
            path = (context.artifacts or {}).get(ARTIFACT)
            if path is None:
                raise KeyError(f"log the {self.family} model with artifacts={{'{ARTIFACT}': path}}")
            kind = artifact_kind(path)
            if kind not in self.loaders:
                raise ValueError(
                    f"{path} holds a {kind!r} model, not a {self.family} model "
                    f"({sorted(self.loaders)})"
                )
            self.model = self.loaders[kind](Path(path))

        def _ready(self, context: Any) -> Any:
            if self.model is None:
                if context is None:
                    raise RuntimeError(
                        f"{type(self).__name__} has no model: load it through mlflow or set .model"
                    )
                self.load_context(context)
            return self.model

    class ProductsPyfunc(_Wrapper):
        """Products: member_id -> product_ids, scores, reasons (params: n)."""

        family = "products"
        loaders = {"popularity": load_recommender, "hybrid": load_recommender}

        def predict(
            self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
        ) -> pd.DataFrame:
            return products_frame(self._ready(context), model_input, params)

    class CouponPyfunc(_Wrapper):
        """Coupon: member_id + features -> coupon_id, expected_incremental_margin, reason."""

        family = "coupon"
        loaders = {"coupon_policy": load_coupon_policy, "no_coupon": load_coupon_policy}

        def predict(
            self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
        ) -> pd.DataFrame:
            return coupon_frame(self._ready(context), model_input)

    class SendTimePyfunc(_Wrapper):
        """Send time: member_id (+ channel, segment, timezone) -> channel, hour_of_week, ..."""

        family = "send_time"
        loaders = {"send_time": load_send_time, "global_send_time": load_send_time}

        def predict(
            self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
        ) -> pd.DataFrame:
            return send_time_frame(self._ready(context), model_input)

    classes: dict[str, type] = {}
    for cls in (_Wrapper, ProductsPyfunc, CouponPyfunc, SendTimePyfunc):
        # importable as models.pyfunc.<Name>, so cloudpickle stores a reference, not code
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
        classes[cls.__name__] = cls
    return classes


def __getattr__(name: str) -> Any:
    if name in (*WRAPPERS, "_Wrapper"):
        if not _CLASSES:
            _CLASSES.update(_build())
        return _CLASSES[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *WRAPPERS])
