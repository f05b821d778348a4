"""Product recommenders with one interface: popularity (the baseline) and the hybrid of
implicit ALS, item-item similarity, the member's own repeat purchases and popularity (the
shipped model). The peers it is compared with in the backtest live in ``models.peers``.

Both models learn from order lines (member, product, timestamp, quantity) as of a date:

- an *interaction* of member x product is the number of distinct purchase days (or orders,
  when ``order_ids`` are given) with a positive net quantity, minus the number of days/orders
  with a net return; it is dropped when the member's net quantity of the product is <= 0
  (everything bought was returned);
- a product is *repeatable* when at least ``repeat_min_buyers`` members bought it and at
  least ``repeat_rate_threshold`` of its buyers bought it on two or more days/orders;
- the *just-bought filter* hides a product the member bought within ``recent_days`` of
  ``as_of``, unless the product is repeatable or the member bought it two or more times;
  the hybrid also hides older non-repeatable purchases (``HybridConfig.exclude_owned``).

Everything ``recommend`` needs is precomputed at fit time (member index, the member's own
history as CSR arrays, the popular list, the product x product neighbours), so one call is a
dict lookup, one dot product ``item_factors @ user_factors[u]``, a sparse gather of the
neighbours of the member's products and a partial sort (~0.1 ms on Online Retail, ~0.5 ms
for its heaviest member). ``save`` writes a single ``.npz`` (ids as unicode arrays, the
config as a JSON string) that loads with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from models.artifact import class_for, read_npz, write_npz

Recommendation = tuple[str, float, str]  # (product_id, score, reason), best first

POPULAR = "popular"
POPULAR_IN_SEGMENT = "popular_in_segment"
SEGMENT_LIST = 200  # products kept per segment's popular list
BUY_AGAIN = "buy_again"
SIMILAR_MEMBERS = "similar_members"

# per-entry flags of a member's history (CSR data alongside the product indices)
_OWNED = 0  # bought before, not repeatable for this member, not recent (exclude_owned)
_REPEAT = 1  # repeatable for this member: a buy-again candidate, never filtered
_JUST_BOUGHT = 2  # bought within recent_days and not repeatable: filtered everywhere

_DAY_US = 86_400_000_000  # microseconds in a day


@dataclass
class PopularityConfig:
    """Tunable numbers shared by every recommender (days are calendar days before as_of)."""

    recent_days: int = 14  # the "just bought" filter window
    popular_days: int = 30  # buyers within this window count extra towards popularity
    popular_recent_weight: float = 1.0  # popularity = buyers + weight * recent buyers
    repeat_rate_threshold: float = 0.2  # share of a product's buyers who bought it >= 2 times
    repeat_min_buyers: int = 5  # fewer buyers than this: the repeat rate is not trusted


@dataclass
class HybridConfig(PopularityConfig):
    """ALS + item-item similarity + buy-again + popularity.

    ALS confidence = ``alpha`` * weight, where weight is ``log1p(purchase count)`` ("log"),
    the count itself ("count") or BM25 of the counts ("bm25"). Defaults: chosen on the
    validation windows (the 90 days before the backtest's as-of date) of UCI Online Retail
    and the synthetic shop, never on a test window.
    """

    factors: int = 64
    regularization: float = 0.05
    iterations: int = 15
    alpha: float = 5.0
    weighting: str = "log"  # "log", "count" or "bm25"
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    random_state: int | None = 0
    num_threads: int = 0  # implicit's threads; 0 = all cores
    # score = ALS / the member's best ALS score + item_weight * item-item / its best
    #         + buy_again_weight * buy_again (see HybridRecommender)
    buy_again_weight: float = 2.0
    buy_again_half_life_days: float = 60.0  # recency decay of the buy-again score
    buy_again_saturation: float = 1.0  # buy-again frequency term = count / (count + this)
    item_weight: float = 0.5  # 0 turns the item-item term off (and skips its fit)
    item_neighbours: int = 20  # most similar products kept per product (cosine)
    # hide the member's past products that are not repeatable at any age (not only the
    # just-bought ones): ALS would otherwise recommend what the member already owns
    exclude_owned: bool = True


@dataclass
class _History:
    """Interactions as of a date, indexed. Shapes: M members, P products, E entries."""

    member_ids: np.ndarray  # (M,) unicode
    product_ids: np.ndarray  # (P,) unicode
    indptr: np.ndarray  # (M + 1,) int64, CSR rows of members
    indices: np.ndarray  # (E,) int32, product index of each entry, ascending per member
    counts: np.ndarray  # (E,) float32, purchase days/orders net of returns (>= 1)
    days_since: np.ndarray  # (E,) float32, days from the last purchase to as_of
    popularity: np.ndarray  # (P,) float64, buyers + weight * recent buyers
    repeatable: np.ndarray  # (P,) bool


def _interactions(
    member_ids: np.ndarray,
    product_ids: np.ndarray,
    ts: np.ndarray,
    quantity: np.ndarray,
    as_of: np.datetime64,
    order_ids: np.ndarray | None,
    cfg: PopularityConfig,
) -> _History:
    """Turn order lines into member x product purchase counts (see the module docstring).

    Lines after ``as_of`` and lines without a product id are ignored.
    """
    import pandas as pd

    n = len(member_ids)
    lengths = {len(product_ids), len(ts), len(quantity)} | (
        {len(order_ids)} if order_ids is not None else set()
    )
    if lengths != {n}:
        raise ValueError(
            "member_ids, product_ids, ts, quantity (and order_ids) differ in length: "
            f"{n}, {sorted(lengths)}"
        )
    as_of_us = np.asarray(as_of).astype("datetime64[us]")  # 0-d
    t = np.asarray(ts).astype("datetime64[us]")
    q = np.asarray(quantity, dtype=np.float64)
    df = pd.DataFrame({"m": np.asarray(member_ids).astype(str), "p": product_ids, "t": t, "q": q})
    if order_ids is not None:
        df["k"] = np.asarray(order_ids).astype(str)
    else:
        df["k"] = t.astype("datetime64[D]")
    keep = (df["t"] <= as_of_us) & df["p"].notna() & np.isfinite(q)
    df = df[keep.to_numpy()]
    df = df.assign(p=df["p"].astype(str))
    df = df[df["p"] != ""]
    members = np.sort(df["m"].unique()).astype(str)

    per_key = df.groupby(["m", "p", "k"], sort=False).agg(q=("q", "sum"), t=("t", "max"))
    per_key = per_key.reset_index()
    pos = per_key["q"] > 0
    per_key = per_key.assign(
        buy=pos.astype(np.int64),
        ret=(per_key["q"] < 0).astype(np.int64),
        tbuy=per_key["t"].where(pos),
    )
    mp = per_key.groupby(["m", "p"], sort=False).agg(
        q=("q", "sum"), buy=("buy", "sum"), ret=("ret", "sum"), last=("tbuy", "max")
    )
    mp = mp.reset_index()
    mp["count"] = (mp["buy"] - mp["ret"]).clip(lower=0)
    mp = mp[(mp["q"] > 0) & (mp["count"] > 0) & mp["last"].notna()]

    products = np.sort(mp["p"].unique()).astype(str)
    m_idx = np.searchsorted(members, mp["m"].to_numpy(str)).astype(np.int64)
    p_idx = np.searchsorted(products, mp["p"].to_numpy(str)).astype(np.int32)
    counts = mp["count"].to_numpy(np.float32)
    last = mp["last"].to_numpy("datetime64[us]")
    days_since = ((as_of_us - last).astype(np.int64) / _DAY_US).astype(np.float32)

    order = np.lexsort((p_idx, m_idx))
    m_idx, p_idx, counts, days_since = m_idx[order], p_idx[order], counts[order], days_since[order]
    indptr = np.zeros(len(members) + 1, dtype=np.int64)
    np.cumsum(np.bincount(m_idx, minlength=len(members)), out=indptr[1:])

    n_p = len(products)
    buyers = np.bincount(p_idx, minlength=n_p).astype(np.float64)
    recent = np.bincount(p_idx[days_since < cfg.popular_days], minlength=n_p)
    repeaters = np.bincount(p_idx[counts >= 2], minlength=n_p)
    rate = np.divide(repeaters, buyers, out=np.zeros(n_p), where=buyers > 0)
    return _History(
        member_ids=members,
        product_ids=products,
        indptr=indptr,
        indices=p_idx,
        counts=counts,
        days_since=days_since,
        popularity=buyers + cfg.popular_recent_weight * recent,
        repeatable=(buyers >= cfg.repeat_min_buyers) & (rate >= cfg.repeat_rate_threshold),
    )


def user_item_matrix(h: _History, weighting: str, bm25_k1: float, bm25_b: float) -> Any:
    """The (M, P) float32 CSR member x product matrix of ``h``'s counts, weighted:
    "count" (as is), "log" (``log1p(count)``) or "bm25" (implicit's BM25 over products)."""
    from scipy.sparse import csr_matrix

    if weighting not in ("count", "log", "bm25"):
        raise ValueError(f"weighting must be 'count', 'log' or 'bm25', not {weighting!r}")
    weight = np.log1p(h.counts) if weighting == "log" else h.counts
    shape = (len(h.member_ids), len(h.product_ids))
    user_items = csr_matrix((weight.astype(np.float32), h.indices, h.indptr), shape=shape)
    if weighting == "bm25":
        from implicit.nearest_neighbours import bm25_weight

        user_items = bm25_weight(user_items.T, K1=bm25_k1, B=bm25_b).T.tocsr()
        user_items = user_items.astype(np.float32)
    return user_items


def single_threaded_blas() -> Any:
    """A context in which BLAS runs on one thread, as implicit recommends around its fits:
    its own threads already use the cores, and OpenBLAS' pool on top of them slows it down
    (implicit warns about that pool otherwise)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def fit_quietly(model: Any, user_items: Any) -> None:
    """``model.fit(user_items)`` for an implicit model, without its progress bar, with BLAS on
    one thread, and without the ParameterWarning its cosine model raises about its own
    internal COO matrix."""
    import warnings

    with warnings.catch_warnings(), single_threaded_blas():
        warnings.filterwarnings("ignore", message="Method expects CSR input")
        model.fit(user_items, show_progress=False)


class Recommender(ABC):
    """Fit on order lines as of a date; recommend ``n`` products per member, best first.

    Subclasses set ``kind`` (stored in the artifact) and ``config_cls``.
    """

    kind: ClassVar[str]
    config_cls: ClassVar[type[PopularityConfig]] = PopularityConfig

    def __init__(self, config: PopularityConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()
        self.fitted = False
        self._index: dict[str, int] = {}

    # ------------------------------------------------------------------ interface
    def fit(
        self,
        member_ids: np.ndarray,
        product_ids: np.ndarray,
        ts: np.ndarray,
        quantity: np.ndarray,
        *,
        as_of: np.datetime64,
        order_ids: np.ndarray | None = None,
        in_stock: Mapping[str, bool] | None = None,
        segments: Mapping[str, str] | None = None,
        categories: Mapping[str, str] | None = None,
    ) -> Self:
        """Learn from order lines.

        ``member_ids``, ``product_ids``: (L,) str; ``ts``: (L,) datetime64 (naive UTC);
        ``quantity``: (L,) float, negative for returns; ``as_of``: lines after it are
        ignored and recency is measured to it; ``order_ids``: (L,) str, optional, to count
        distinct orders instead of distinct days; ``in_stock``: product -> bool, products
        mapped to False are never recommended (absent products count as in stock);
        ``segments``: member -> segment (a tag such as the RFM segment), to answer a member
        the model has no history for with what their segment buys; ``categories``: product
        -> category, for the ``category`` filter of ``recommend``.
        """
        h = self._fit_history(member_ids, product_ids, ts, quantity, as_of, order_ids, in_stock)
        self._fit_segments(h, segments or {})
        cats = categories or {}
        self._categories = np.array(
            [str(cats.get(p) or "") for p in h.product_ids.tolist()], dtype=str
        )
        self._fit(h)
        self._prepare()
        return self

    def _fit(self, h: _History) -> None:  # noqa: B027 - a hook; popularity needs nothing more
        """Learn what the model adds to the shared state ``_fit_history`` has set from
        ``h``; ``_prepare`` runs after it."""

    def recommend(
        self,
        member_id: str,
        n: int = 10,
        *,
        segment: str | None = None,
        category: str | None = None,
        exclude: Sequence[str] = (),
    ) -> list[Recommendation]:
        """Up to ``n`` (product_id, score, reason) for one member, best first, no duplicates.

        A member the model has no history for gets their ``segment``'s popular products
        (reason "popular_in_segment") when the segment is known, then the popular list.
        ``category`` keeps only that category's products; ``exclude`` drops these product
        ids (e.g. what is already in the basket). Filtered lists are filled from the
        segment's and the shop's popular products of the same filter."""
        if n <= 0:
            return []
        u = self._index.get(member_id)
        if not category and not exclude:
            if u is not None:
                return self._recommend(u, n)
            return self._cold(segment, n, None)
        keep = self._keep_mask(category, exclude)
        out: list[Recommendation] = []
        if u is not None:
            fetch = min(self.n_products, max(4 * n, n + len(exclude)))
            while True:
                recs = self._recommend(u, fetch)
                out = [r for r in recs if keep[self._pid_index[r[0]]]][:n]
                if len(out) >= n or fetch >= self.n_products or len(recs) < fetch:
                    break
                fetch = min(self.n_products, fetch * 4)
        if len(out) < n:
            taken = {p for p, _, _ in out}
            cap = out[-1][1] if out else None
            for p, sc, why in self._cold(
                segment if u is None else self._segment_of(u), self.n_products, keep
            ):
                if len(out) >= n:
                    break
                if p not in taken:
                    out.append((p, sc if cap is None else min(sc, cap), why))
        return out

    def _keep_mask(self, category: str | None, exclude: Sequence[str]) -> np.ndarray:
        keep = self._in_stock.copy()
        if category:
            keep &= self._categories == category
        for p in exclude:
            i = self._pid_index.get(p)
            if i is not None:
                keep[i] = False
        return keep

    def _segment_of(self, u: int) -> str | None:
        code = int(self._member_segment[u]) if len(self._member_segment) else -1
        return str(self._segment_names[code]) if code >= 0 else None

    def _cold(self, segment: str | None, n: int, keep: np.ndarray | None) -> list[Recommendation]:
        """The segment's popular products, then the shop's, each kept by ``keep``."""
        out: list[Recommendation] = []
        seg = self._segment_code.get(segment) if segment else None
        if seg is not None:
            a, b = self._seg_indptr[seg], self._seg_indptr[seg + 1]
            for i, sc in zip(
                self._seg_products[a:b].tolist(), self._seg_scores[a:b].tolist(), strict=True
            ):
                if keep is None or keep[i]:
                    out.append((str(self._product_ids[i]), float(sc), POPULAR_IN_SEGMENT))
                    if len(out) >= n:
                        return out
        if keep is None and not out:
            return self._popular_recs[:n]
        taken = {p for p, _, _ in out}
        cap = out[-1][1] if out else None
        for i, (p, sc, why) in zip(self._popular_list, self._popular_recs, strict=True):
            if len(out) >= n:
                break
            if (keep is None or keep[i]) and p not in taken:
                out.append((p, sc if cap is None else sc * cap, why))
        return out

    def _fit_segments(self, h: _History, segments: Mapping[str, str]) -> None:
        """Per segment, its members' most-bought products (distinct buyers, in stock)."""
        names = sorted({str(v) for v in segments.values() if v})
        code = {s: i for i, s in enumerate(names)}
        m_seg = np.array([code.get(str(segments.get(m) or ""), -1) for m in h.member_ids.tolist()],
                         dtype=np.int32)  # fmt: skip
        self._segment_names = np.array(names, dtype=str)
        self._member_segment = m_seg
        indptr, prods, scores = [0], [], []
        rows = np.repeat(np.arange(len(h.member_ids)), np.diff(h.indptr))
        seg_of_entry = m_seg[rows] if len(rows) else np.zeros(0, np.int32)
        for i in range(len(names)):
            counts = np.bincount(h.indices[seg_of_entry == i], minlength=len(h.product_ids))
            order = np.lexsort((np.arange(len(counts)), -counts))
            order = order[(counts[order] > 0)][:SEGMENT_LIST]
            top = float(counts[order[0]]) if len(order) else 1.0
            prods.append(order.astype(np.int32))
            scores.append((counts[order] / top).astype(np.float32))
            indptr.append(indptr[-1] + len(order))
        self._seg_indptr = np.asarray(indptr, dtype=np.int64)
        self._seg_products = np.concatenate(prods) if prods else np.zeros(0, np.int32)
        self._seg_scores = np.concatenate(scores) if scores else np.zeros(0, np.float32)

    @abstractmethod
    def _recommend(self, u: int, n: int) -> list[Recommendation]:
        """``recommend`` for the member in history row ``u``, ``n`` >= 1."""

    def recommend_many(
        self, member_ids: Sequence[str], n: int = 10, segments: Sequence[str | None] | None = None
    ) -> list[list[Recommendation]]:
        """``recommend`` for each member, in order (the same answers, one member at a time:
        at ~50 µs per member a batch matrix product would save little and could reorder
        near-ties through float rounding)."""
        if segments is None:
            return [self.recommend(m, n) for m in member_ids]
        return [self.recommend(m, n, segment=s) for m, s in zip(member_ids, segments, strict=True)]

    def known_member(self, member_id: str) -> bool:
        """True when the member had order lines before as_of."""
        return member_id in self._index

    @property
    def n_members(self) -> int:
        return len(self._index)

    @property
    def n_products(self) -> int:
        return len(self._product_ids)

    # ------------------------------------------------------------------ shared state
    def _fit_history(
        self,
        member_ids: np.ndarray,
        product_ids: np.ndarray,
        ts: np.ndarray,
        quantity: np.ndarray,
        as_of: np.datetime64,
        order_ids: np.ndarray | None,
        in_stock: Mapping[str, bool] | None,
    ) -> _History:
        cfg = self.config
        h = _interactions(member_ids, product_ids, ts, quantity, as_of, order_ids, cfg)
        self._as_of = np.asarray(as_of).astype("datetime64[us]")  # 0-d
        self._member_ids = h.member_ids
        self._product_ids = h.product_ids
        self._indptr = h.indptr
        self._indices = h.indices
        member_repeat = (h.counts >= 2) | h.repeatable[h.indices]
        flags = np.full(len(h.indices), _OWNED, dtype=np.int8)
        flags[member_repeat] = _REPEAT
        flags[~member_repeat & (h.days_since < cfg.recent_days)] = _JUST_BOUGHT
        self._flags = flags
        stock = np.ones(len(h.product_ids), dtype=bool)
        if in_stock:
            names = h.product_ids.tolist()
            stock = np.fromiter((bool(in_stock.get(p, True)) for p in names), bool, len(names))
        self._in_stock = stock
        self._popularity = h.popularity.astype(np.float32)
        return h

    def _prepare(self) -> None:
        """Derived lookups (after fit or load): member index, popular list, stock mask."""
        self._index = {m: i for i, m in enumerate(self._member_ids.tolist())}
        self._pid_index = {p: i for i, p in enumerate(self._product_ids.tolist())}
        if not hasattr(self, "_segment_names"):  # an artifact written before segments existed
            self._segment_names = np.zeros(0, dtype=str)
            self._member_segment = np.zeros(0, dtype=np.int32)
            self._seg_indptr = np.zeros(1, dtype=np.int64)
            self._seg_products = np.zeros(0, dtype=np.int32)
            self._seg_scores = np.zeros(0, dtype=np.float32)
        if not hasattr(self, "_categories") or len(self._categories) != len(self._product_ids):
            self._categories = np.full(len(self._product_ids), "", dtype=str)
        self._segment_code = {s: i for i, s in enumerate(self._segment_names.tolist())}
        if len(self._seg_products):  # out-of-stock products never reach a segment list
            ok = self._in_stock[self._seg_products]
            n_seg = len(self._seg_indptr) - 1
            seg = np.repeat(np.arange(n_seg), np.diff(self._seg_indptr))
            kept = np.bincount(seg[ok], minlength=n_seg)
            self._seg_products, self._seg_scores = self._seg_products[ok], self._seg_scores[ok]
            self._seg_indptr = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
        pop = self._popularity.astype(np.float64)
        order = np.lexsort((np.arange(len(pop)), -pop))
        order = order[self._in_stock[order] & (pop[order] > 0)]
        top = float(pop[order[0]]) if len(order) else 1.0
        self._popular_recs: list[Recommendation] = [
            (p, s / top, POPULAR)
            for p, s in zip(self._product_ids[order].tolist(), pop[order].tolist(), strict=True)
        ]
        self._popular_list: list[int] = order.tolist()
        self._out_of_stock = np.flatnonzero(~self._in_stock)
        self._jb_indptr, pos = self._rows(self._flags == _JUST_BOUGHT)
        self._jb_idx = self._indices[pos]
        self.fitted = True

    def _rows(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CSR (indptr (M + 1,), entry positions) of the history entries where ``mask``."""
        counts = np.diff(self._indptr)
        rows = np.repeat(np.arange(len(counts)), counts)
        indptr = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows[mask], minlength=len(counts)), out=indptr[1:])
        return indptr, np.flatnonzero(mask)

    def _fill_popular(
        self, recs: list[Recommendation], blocked: set[int], n: int, cap: float | None
    ) -> list[Recommendation]:
        """Append popular products not yet in ``recs`` nor ``blocked`` until ``n``.

        Scores are popularity / top popularity, scaled by ``cap`` (the last score already in
        ``recs``) so that scores never increase down the list.
        """
        taken = {p for p, _, _ in recs}
        for i, (p, s, r) in zip(self._popular_list, self._popular_recs, strict=True):
            if len(recs) >= n:
                break
            if i in blocked or p in taken:
                continue
            recs.append((p, s if cap is None else s * cap, r))
        return recs

    # ------------------------------------------------------------------ persistence
    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "kind": np.array(self.kind),
            "config": np.array(json.dumps(asdict(self.config))),
            "as_of": np.array(str(self._as_of)),
            "member_ids": self._member_ids.astype(str),
            "product_ids": self._product_ids.astype(str),
            "indptr": self._indptr,
            "indices": self._indices,
            "flags": self._flags,
            "in_stock": self._in_stock,
            "popularity": self._popularity,
            "segment_names": self._segment_names.astype(str),
            "member_segment": self._member_segment,
            "seg_indptr": self._seg_indptr,
            "seg_products": self._seg_products,
            "seg_scores": self._seg_scores,
            "categories": self._categories.astype(str),
        }

    def _restore(self, z: Mapping[str, np.ndarray]) -> None:
        self._as_of = np.asarray(str(z["as_of"]), dtype="datetime64[us]")
        self._member_ids = z["member_ids"]
        self._product_ids = z["product_ids"]
        self._indptr = z["indptr"]
        self._indices = z["indices"]
        self._flags = z["flags"]
        self._in_stock = z["in_stock"]
        self._popularity = z["popularity"]
        if "segment_names" in z:
            self._segment_names, self._member_segment = z["segment_names"], z["member_segment"]
            self._seg_indptr, self._seg_products = z["seg_indptr"], z["seg_products"]
            self._seg_scores = z["seg_scores"]
        if "categories" in z:
            self._categories = z["categories"]

    def save(self, path: Path) -> None:
        """Write one ``.npz`` at exactly ``path`` (no suffix is added)."""
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() before save()")
        write_npz(path, self.kind, {k: v for k, v in self._arrays().items() if k != "kind"})

    @classmethod
    def load(cls, path: Path) -> Self:
        """Load a ``save``d model of this class (an artifact of another kind is refused);
        ``models.recommenders.load_recommender`` loads any kind."""
        kind, z = read_npz(path)
        if getattr(cls, "kind", None) is None:
            raise TypeError("Recommender is abstract: use models.recommenders.load_recommender")
        target = class_for({cls.kind: cls}, kind, cls, path, f"{cls.__name__} ({cls.kind})")
        known = {f.name for f in fields(target.config_cls)}
        raw: dict[str, Any] = json.loads(str(z["config"]))
        model = target(target.config_cls(**{k: v for k, v in raw.items() if k in known}))
        model._restore(z)
        model._prepare()
        return model  # type: ignore[return-value]


class PopularityRecommender(Recommender):
    """The baseline: the most-bought products (distinct buyers, recent buyers counted
    ``1 + popular_recent_weight`` times), the same list for everybody except that the
    just-bought filter applies. Reason: "popular"; score: popularity / top popularity."""

    kind = "popularity"
    config_cls = PopularityConfig

    def _recommend(self, u: int, n: int) -> list[Recommendation]:
        a, b = self._jb_indptr[u], self._jb_indptr[u + 1]
        if a == b:
            return self._popular_recs[:n]
        return self._fill_popular([], set(self._jb_idx[a:b].tolist()), n, None)


class HybridRecommender(Recommender):
    """Implicit ALS + item-item similarity + the member's repeat purchases + popularity.

    For a known member ``u`` with ALS scores ``s = item_factors @ user_factors[u]`` and
    item-item scores ``c = sum over the member's products j of log1p(count_j) * sim[j]``
    (cosine similarity between products' buyer vectors, the ``item_neighbours`` nearest
    per product, a product's similarity to itself left out):

    - ``s / max(s) + item_weight * c / max(c)`` ("similar_members": both terms are what
      members with similar baskets bought);
    - for the member's repeatable products (repeatable in the population, or bought >= 2
      times by the member) ``max(als, 0)`` plus ``buy_again_weight * f * r`` with frequency
      term ``f = count / (count + buy_again_saturation)`` and recency term
      ``r = 0.5 ** (days since last purchase / buy_again_half_life_days)`` ("buy_again");
    - drop just-bought products, out-of-stock products and (``exclude_owned``) the member's
      other past products; products with no positive score are left out;
    - fill up to ``n`` with popular products ("popular"), scored below the last one.

    An unknown member gets the popular list.
    """

    kind = "hybrid"
    config_cls = HybridConfig
    config: HybridConfig

    def __init__(self, config: HybridConfig | None = None) -> None:
        super().__init__(config if config is not None else HybridConfig())

    def _fit(self, h: _History) -> None:
        cfg = self.config
        if cfg.weighting not in ("log", "count", "bm25"):
            raise ValueError(
                f"HybridConfig.weighting must be 'log', 'count' or 'bm25', not {cfg.weighting!r}"
            )
        n_m, n_p = len(h.member_ids), len(h.product_ids)
        ba = np.zeros(len(h.indices), dtype=np.float32)
        rep = self._flags == _REPEAT
        freq = h.counts[rep] / (h.counts[rep] + cfg.buy_again_saturation)
        rec = np.power(0.5, h.days_since[rep] / cfg.buy_again_half_life_days)
        ba[rep] = (cfg.buy_again_weight * freq * rec).astype(np.float32)
        self._buy_again = ba
        self._user_factors, self._item_factors = self._fit_als(h, n_m, n_p)
        self._weights = np.log1p(h.counts).astype(np.float32)
        self._sim = self._fit_similarity(h)

    def _fit_als(self, h: _History, n_m: int, n_p: int) -> tuple[np.ndarray, np.ndarray]:
        """(user_factors (M, k) float32, item_factors (P, k) float32) from implicit's ALS."""
        cfg = self.config
        k = cfg.factors
        if len(h.indices) == 0:
            return np.zeros((n_m, k), np.float32), np.zeros((n_p, k), np.float32)
        user_items = user_item_matrix(h, cfg.weighting, cfg.bm25_k1, cfg.bm25_b)
        from implicit.als import AlternatingLeastSquares

        with single_threaded_blas():  # implicit checks the BLAS pool when ALS is built
            als = AlternatingLeastSquares(
                factors=k,
                regularization=cfg.regularization,
                alpha=cfg.alpha,
                iterations=cfg.iterations,
                use_gpu=False,
                num_threads=cfg.num_threads,
                random_state=cfg.random_state,
            )
            als.fit(user_items, show_progress=False)
        return (
            np.ascontiguousarray(als.user_factors, dtype=np.float32),
            np.ascontiguousarray(als.item_factors, dtype=np.float32),
        )

    def _fit_similarity(self, h: _History) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Product x product cosine similarity as CSR arrays (indptr (P + 1,) int64,
        indices (S,) int32, data (S,) float32), without the diagonal; empty when
        ``item_weight`` is 0."""
        cfg = self.config
        n_p = len(h.product_ids)
        if cfg.item_weight <= 0 or len(h.indices) == 0:
            return np.zeros(n_p + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)
        from implicit.nearest_neighbours import CosineRecommender

        knn = CosineRecommender(K=cfg.item_neighbours + 1, num_threads=cfg.num_threads)
        fit_quietly(knn, user_item_matrix(h, "count", 0.0, 0.0))
        sim = knn.similarity.tocsr()
        sim.setdiag(0.0)
        sim.eliminate_zeros()
        sim.sort_indices()
        return (
            sim.indptr.astype(np.int64),
            sim.indices.astype(np.int32),
            sim.data.astype(np.float32),
        )

    def _prepare(self) -> None:
        super()._prepare()
        repeat = self._flags == _REPEAT
        blocked = ~repeat if self.config.exclude_owned else self._flags == _JUST_BOUGHT
        self._rep_indptr, pos = self._rows(repeat)
        self._rep_idx, self._rep_ba = self._indices[pos], self._buy_again[pos]
        self._blk_indptr, pos = self._rows(blocked)
        self._blk_idx = self._indices[pos]
        self._oos_any = bool(len(self._out_of_stock))
        self._product_list: list[str] = self._product_ids.tolist()
        self._use_items = self.config.item_weight > 0 and len(self._sim[1]) > 0
        if self._use_items:  # for heavy members: one pass over the whole matrix is cheaper
            from scipy.sparse import csr_matrix

            sim_indptr, sim_indices, sim_data = self._sim
            n_p = len(self._product_list)
            sim = csr_matrix((sim_data, sim_indices, sim_indptr), shape=(n_p, n_p))
            self._sim_t = sim.T.tocsr()

    def _item_scores(self, u: int) -> np.ndarray | None:
        """(P,) float64 item-item scores of member ``u`` (see the class docstring), or None
        when the term is off or the member's products have no neighbours."""
        sim_indptr, sim_indices, sim_data = self._sim
        a, b = self._indptr[u], self._indptr[u + 1]
        starts, ends = sim_indptr[self._indices[a:b]], sim_indptr[self._indices[a:b] + 1]
        lens = ends - starts
        total = int(lens.sum())
        if total == 0:
            return None
        if 8 * total > len(sim_data):  # gathering costs ~6x more per entry than a matvec
            w = np.bincount(
                self._indices[a:b], weights=self._weights[a:b], minlength=self._sim_t.shape[0]
            )
            return self._sim_t @ w
        # positions of every neighbour entry of the member's products, concatenated
        pos = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(total)
        w = np.repeat(self._weights[a:b], lens) * sim_data[pos]
        return np.bincount(sim_indices[pos], weights=w, minlength=len(self._product_list))

    def _rank(
        self, u: int, s: np.ndarray, n: int, item: np.ndarray | None = None
    ) -> list[Recommendation]:
        """Rank for member ``u`` given its raw ALS scores ``s`` (P,) float32 (overwritten)
        and its item-item term ``item`` (P,) float32 already on the raw ALS scale.

        Works on the raw scale (buy-again added as ``ba * top``) and divides only the
        chosen scores by ``top``, the member's best ALS score: the same ranking and scores
        as normalising first, for fewer passes over the catalogue.
        """
        n_p = len(s)
        k = min(n, n_p)
        if k <= 0:
            return []
        top = float(s.max())
        if top <= 0:  # no positive ALS signal: only buy-again items can score above 0
            top = 1.0
        if item is not None:
            s += item * np.float32(top)
        a, b = self._rep_indptr[u], self._rep_indptr[u + 1]
        rep = self._rep_idx[a:b]
        if a != b:
            s[rep] = np.maximum(s[rep], 0.0) + self._rep_ba[a:b] * top
        c, d = self._blk_indptr[u], self._blk_indptr[u + 1]
        if c != d:
            s[self._blk_idx[c:d]] = -np.inf
        if self._oos_any:
            s[self._out_of_stock] = -np.inf
        idx = np.argpartition(s, n_p - k)[n_p - k :] if k < n_p else np.arange(n_p)
        vals = s[idx]
        order = np.lexsort((idx, -vals))
        idx_l, vals_l = idx[order].tolist(), (vals[order] / top).tolist()
        rep_set = set(rep.tolist()) if a != b else ()
        names = self._product_list
        recs: list[Recommendation] = [
            (names[i], v, BUY_AGAIN if i in rep_set else SIMILAR_MEMBERS)
            for i, v in zip(idx_l, vals_l, strict=True)
            if v > 0
        ]
        if len(recs) < n:
            cap = recs[-1][1] if recs else None
            self._fill_popular(recs, set(self._blk_idx[c:d].tolist()), n, cap)
        return recs

    def _recommend(self, u: int, n: int) -> list[Recommendation]:
        item = None
        if self._use_items:
            c = self._item_scores(u)
            if c is not None and c.max() > 0:
                item = (c * (self.config.item_weight / c.max())).astype(np.float32)
        return self._rank(u, self._item_factors @ self._user_factors[u], n, item)

    def _arrays(self) -> dict[str, np.ndarray]:
        sim_indptr, sim_indices, sim_data = self._sim
        return {
            **super()._arrays(),
            "buy_again": self._buy_again,
            "user_factors": self._user_factors,
            "item_factors": self._item_factors,
            "weights": self._weights,
            "sim_indptr": sim_indptr,
            "sim_indices": sim_indices,
            "sim_data": sim_data,
        }

    def _restore(self, z: Mapping[str, np.ndarray]) -> None:
        super()._restore(z)
        self._buy_again = z["buy_again"]
        self._user_factors = np.ascontiguousarray(z["user_factors"])
        self._item_factors = np.ascontiguousarray(z["item_factors"])
        n_e, n_p = len(self._indices), len(self._product_ids)
        if "sim_indptr" in z:  # artifacts saved before the item-item term have none
            self._weights = z["weights"]
            self._sim = (z["sim_indptr"], z["sim_indices"], z["sim_data"])
        else:
            self.config.item_weight = 0.0  # the term was not part of that model
            self._weights = np.zeros(n_e, np.float32)
            self._sim = (
                np.zeros(n_p + 1, np.int64),
                np.zeros(0, np.int32),
                np.zeros(0, np.float32),
            )
