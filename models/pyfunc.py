"""The MLflow ``PythonModel`` for the models without a native flavour, logged from code.

Every products, coupon and send-time model (shipped or baseline) is registered as a pyfunc
*model from code* (see ``models.artifact`` for the whole convention): the trainer calls

    mlflow.pyfunc.log_model(python_model=CODE, artifacts={"model": <model.save() file>},
                            model_config={"family": "products"}, code_paths=[<models/>], ...)

``CODE`` is ``models/mlflow_model.py``, which hands MLflow one :class:`MemberwisePyfunc`.
Its ``load_context`` loads the artifact once with the family's loader (which refuses an
artifact of another family) and keeps it as ``.model`` — the fast object serving takes
with ``mlflow.pyfunc.load_model(uri).unwrap_python_model().model``. ``predict`` answers a
pandas DataFrame for batch use:

=========  ==============================================  =================================
family     input columns                                   output columns
=========  ==============================================  =================================
products   member_id (params: ``n``, default 10)            member_id, product_ids, scores,
                                                           reasons (lists, best first)
coupon     member_id + the policy's ``feature_names``      member_id, coupon_id (None for
           (missing values: NaN)                           none), expected_incremental_margin,
                                                           reason
send_time  member_id; optional channel, segment, timezone  member_id, channel, hour_of_week,
                                                           confidence, timezone, source
=========  ==============================================  =================================

``input_example(model)`` builds an input example for each and ``predict_frame(model,
example, params)`` its output, for ``infer_signature(example, out, params=params_of(model))``
(so that ``n`` is part of the products signature).

mlflow is heavy to import, so ``MemberwisePyfunc`` is created on first access of the module
attribute (PEP 562).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.coupon import CouponPolicy, FixedCouponPolicy, NoCouponPolicy, load_coupon_policy
from models.products import Recommender
from models.recommenders import load_recommender
from models.send_time import GlobalSendTimeModel, SendTimeModel, load_send_time
from models.similar import SimilarProducts

if TYPE_CHECKING:
    from mlflow.pyfunc import PythonModel

    MemberwisePyfunc: type[PythonModel]

CODE = Path(__file__).with_name("mlflow_model.py")  # the ``python_model`` file MLflow logs
ARTIFACT = "model"  # the key of the saved model in ``artifacts``
DEFAULT_N = 10
PRODUCTS_PARAMS: dict[str, Any] = {"n": DEFAULT_N}  # the products wrapper's params schema
SEND_TIME_OPTIONAL = ("channel", "segment", "timezone")


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


def coupon_frame(
    model: CouponPolicy | NoCouponPolicy | FixedCouponPolicy, model_input: pd.DataFrame
) -> pd.DataFrame:
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


def similar_frame(
    model: SimilarProducts, model_input: pd.DataFrame, params: dict[str, Any] | None = None
) -> pd.DataFrame:
    """product_id, bought_together, similar (product id lists, best first) per input row."""
    if "product_id" not in model_input:
        raise KeyError(f"model input needs a product_id column, got {list(model_input.columns)}")
    ids = model_input["product_id"].astype(str).tolist()
    n = int((params or {}).get("n", DEFAULT_N))
    return pd.DataFrame({
        "product_id": ids,
        "bought_together": [model.bought_together.neighbour_ids(p, n) for p in ids],
        "similar": [model.similar.neighbour_ids(p, n) for p in ids],
    })  # fmt: skip


# ---------------------------------------------------------------- families
@dataclass(frozen=True)
class Family:
    """What the wrapper needs to serve one family: its model classes, the loader of their
    saved artifact, the batch frame and the params schema."""

    classes: tuple[type, ...]
    load: Callable[[Path], Any]
    frame: Callable[[Any, pd.DataFrame, dict[str, Any] | None], pd.DataFrame]
    params: dict[str, Any] | None = None


FAMILIES: dict[str, Family] = {
    "products": Family((Recommender,), load_recommender, products_frame, PRODUCTS_PARAMS),
    "coupon": Family(
        (CouponPolicy, NoCouponPolicy, FixedCouponPolicy),
        load_coupon_policy,
        lambda m, x, p: coupon_frame(m, x),
    ),
    "send_time": Family(
        (SendTimeModel, GlobalSendTimeModel), load_send_time, lambda m, x, p: send_time_frame(m, x)
    ),
    "similar": Family((SimilarProducts,), SimilarProducts.load, similar_frame, PRODUCTS_PARAMS),
}


def family_of(model: Any) -> str:
    """``"products"``, ``"coupon"``, ``"send_time"`` or ``"similar"``: ``model``'s family."""
    for name, fam in FAMILIES.items():
        if isinstance(model, fam.classes):
            return name
    raise TypeError(f"no pyfunc family for {type(model).__name__}")


def params_of(model: Any) -> dict[str, Any] | None:
    """The params schema of ``model``'s family (``{"n": 10}`` for products, else None)."""
    return FAMILIES[family_of(model)].params


def predict_frame(
    model: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
) -> pd.DataFrame:
    """What the logged model's ``predict`` answers for ``model_input``."""
    return FAMILIES[family_of(model)].frame(model, model_input, params)


# ---------------------------------------------------------------- input examples
def known_members(model: Any, n: int) -> list[str]:
    """Up to ``n`` member ids ``model`` was fitted on (none for a model without members)."""
    known = getattr(model, "_member_ids", getattr(model, "_members", np.array([])))
    return [str(x) for x in np.asarray(known)[:n].tolist()]


def input_example(model: Any, member_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """An input example for ``model``'s wrapper: two rows (the given or two known member
    ids, else "member-1", "member-2"). Send time marks channel/segment/timezone optional
    (one None each); coupon has one all-NaN row, so feature columns infer as doubles."""
    ids = list(member_ids if member_ids is not None else known_members(model, 2))[:2]
    ids += [f"member-{k}" for k in range(len(ids) + 1, 3)]
    family = family_of(model)
    if family == "similar":
        known = model.bought_together._products[:2].tolist() or ["product-1"]
        return pd.DataFrame({"product_id": [str(p) for p in known]})
    if family == "products":
        return pd.DataFrame({"member_id": ids})
    if family == "coupon":
        feats = {c: [0.0, np.nan] for c in model.feature_names}
        return pd.DataFrame({"member_id": ids, **feats})
    return pd.DataFrame(
        {
            "member_id": ids,
            "channel": [None, model.config.default_channel],
            "segment": [None, "segment"],
            "timezone": [None, "UTC"],
        }
    )


# ---------------------------------------------------------------- the wrapper
@functools.cache
def _wrapper_class() -> type:
    """Create the wrapper class (imports mlflow)."""
    from mlflow.pyfunc import PythonModel

    class MemberwisePyfunc(PythonModel):  # type: ignore[misc]
        """Loads ``artifacts["model"]`` of ``model_config["family"]`` once into ``.model``."""

        def __init__(self) -> None:
            self.model: Any = None
            self.family = ""

        def load_context(self, context: Any) -> None:
            family = (getattr(context, "model_config", None) or {}).get("family")
            if family not in FAMILIES:
                raise KeyError(
                    f"log the model with model_config={{'family': ...}}, one of {list(FAMILIES)}"
                    f" (got {family!r})"
                )
            path = (context.artifacts or {}).get(ARTIFACT)
            if path is None:
                raise KeyError(f"log the {family} model with artifacts={{'{ARTIFACT}': path}}")
            self.model = FAMILIES[family].load(Path(path))
            self.family = family

        def predict(
            self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
        ) -> pd.DataFrame:
            if self.model is None:
                if context is None:
                    raise RuntimeError("MemberwisePyfunc has no model: load it through mlflow")
                self.load_context(context)
            return FAMILIES[self.family].frame(self.model, model_input, params)

    MemberwisePyfunc.__module__ = __name__
    return MemberwisePyfunc


def set_model() -> None:
    """Hand MLflow a fresh wrapper: what ``models/mlflow_model.py`` runs."""
    from mlflow.models import set_model as mlflow_set_model

    mlflow_set_model(_wrapper_class()())


def __getattr__(name: str) -> Any:
    if name == "MemberwisePyfunc":
        return _wrapper_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
