"""Peers of the shipped recommender: what a data scientist would reach for first.

Each is a :class:`~models.products.Recommender` on the same interactions (member x product
purchase counts as of a date, see :mod:`models.products`), with the same business rules:
the just-bought filter, out-of-stock products never shown, unknown members and short lists
filled with the popular list (scored below the model's own picks). They are honest, tuned
versions, compared with the shipped hybrid in the products backtest:

- :class:`BuyAgainRecommender`: the member's own past products ranked by
  ``count ** count_power * 0.5 ** (days since last purchase / half_life_days)``;
- :class:`ItemCosineRecommender`: implicit's item-item cosine nearest neighbours (``K``
  neighbours per product) on the member x product matrix;
- :class:`ALSRecommender`: implicit's ALS (matrix factorisation of implicit feedback);
- :class:`BPRRecommender`: implicit's Bayesian personalised ranking.

The three collaborative peers filter the member's own past products when
``filter_already_bought`` (implicit's ``filter_already_liked_items``, the usual default);
with it off they may recommend a repeat purchase. Every peer saves to one ``.npz`` and loads
with ``allow_pickle=False``; ``models.recommenders.load_recommender`` knows their kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.products import (
    _JUST_BOUGHT,
    BUY_AGAIN,
    SIMILAR_MEMBERS,
    PopularityConfig,
    Recommendation,
    Recommender,
    _History,
    fit_quietly,
    single_threaded_blas,
    user_item_matrix,
)

SIMILAR_PRODUCTS = "similar_products"  # the item-cosine peer's reason


@dataclass
class BuyAgainConfig(PopularityConfig):
    """The member's own products: score = count ** count_power * 0.5 ** (days / half-life)."""

    half_life_days: float = 60.0  # recency decay of a past purchase, calendar days
    count_power: float = 1.0  # 1: proportional to the number of purchase days/orders


@dataclass
class ItemCosineConfig(PopularityConfig):
    """implicit's ``CosineRecommender`` on the weighted member x product matrix."""

    K: int = 100  # neighbours kept per product  # noqa: N815 (implicit's name)
    weighting: str = "count"  # "count", "log" or "bm25" (see models.products.user_item_matrix)
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    filter_already_bought: bool = True
    num_threads: int = 0  # implicit's threads; 0 = all cores


@dataclass
class ALSConfig(PopularityConfig):
    """implicit's ALS; confidence = ``alpha`` * weight of the member x product matrix."""

    factors: int = 64
    regularization: float = 0.05
    alpha: float = 10.0
    iterations: int = 15
    weighting: str = "bm25"  # "count", "log" or "bm25"
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    filter_already_bought: bool = True
    random_state: int | None = 0
    num_threads: int = 0


@dataclass
class BPRConfig(PopularityConfig):
    """implicit's BPR on the binary member x product matrix (sampled pairwise ranking)."""

    factors: int = 64
    learning_rate: float = 0.05
    regularization: float = 0.01
    iterations: int = 100
    filter_already_bought: bool = True
    random_state: int | None = 0
    num_threads: int = 0  # > 1 is Hogwild (not reproducible); the backtest uses 1


class _ScoredPeer(Recommender):
    """Shared ranking: a score per product, the member's blocked products removed, the
    top ``n`` positive scores divided by the best one, then the popular fill."""

    reason: str = SIMILAR_MEMBERS

    def _block_mask(self) -> np.ndarray:
        """(E,) bool: history entries never recommended to their member."""
        owned = bool(getattr(self.config, "filter_already_bought", False))
        return np.ones(len(self._flags), bool) if owned else self._flags == _JUST_BOUGHT

    def _prepare(self) -> None:
        super()._prepare()
        self._blk_indptr, pos = self._rows(self._block_mask())
        self._blk_idx = self._indices[pos]
        self._product_list: list[str] = self._product_ids.tolist()

    def _blocked(self, u: int) -> np.ndarray:
        return self._blk_idx[self._blk_indptr[u] : self._blk_indptr[u + 1]]

    def _top(self, u: int, s: np.ndarray, n: int) -> list[Recommendation]:
        """Rank member ``u``'s scores ``s`` (P,) float32 (overwritten), best first."""
        n_p = len(s)
        k = min(n, n_p)
        if k <= 0:
            return []
        blocked = self._blocked(u)
        s[blocked] = -np.inf
        s[self._out_of_stock] = -np.inf
        idx = np.argpartition(s, n_p - k)[n_p - k :] if k < n_p else np.arange(n_p)
        vals = s[idx]
        order = np.lexsort((idx, -vals))
        idx, vals = idx[order], vals[order]
        keep = vals > 0
        idx, vals = idx[keep], vals[keep]
        return self._finish(idx, vals, blocked, n)

    def _finish(
        self, idx: np.ndarray, vals: np.ndarray, blocked: np.ndarray, n: int
    ) -> list[Recommendation]:
        """Chosen product indices ``idx`` with positive scores ``vals`` (best first) ->
        recommendations scored ``vals / vals[0]``, filled with popular products."""
        top = float(vals[0]) if len(vals) else 1.0
        names = self._product_list
        recs: list[Recommendation] = [
            (names[i], v / top, self.reason)
            for i, v in zip(idx.tolist(), vals.tolist(), strict=True)
        ]
        if len(recs) < n:
            cap = recs[-1][1] if recs else None
            self._fill_popular(recs, set(blocked.tolist()), n, cap)
        return recs


class BuyAgainRecommender(_ScoredPeer):
    """The member's own past products by frequency and recency, then popular products.

    Entry score ``count ** count_power * 0.5 ** (days since last purchase / half_life)``;
    just-bought and out-of-stock products are skipped. Reason "buy_again".
    """

    kind = "buy_again"
    config_cls = BuyAgainConfig
    config: BuyAgainConfig
    reason = BUY_AGAIN

    def __init__(self, config: BuyAgainConfig | None = None) -> None:
        super().__init__(config if config is not None else BuyAgainConfig())

    def _fit(self, h: _History) -> None:
        cfg = self.config
        decay = np.power(0.5, h.days_since / cfg.half_life_days)
        self._score = (np.power(h.counts, cfg.count_power) * decay).astype(np.float32)

    def _recommend(self, u: int, n: int) -> list[Recommendation]:
        a, b = self._indptr[u], self._indptr[u + 1]
        idx, score = self._indices[a:b], self._score[a:b]
        ok = (self._flags[a:b] != _JUST_BOUGHT) & self._in_stock[idx] & (score > 0)
        idx, score = idx[ok], score[ok]
        order = np.lexsort((idx, -score))[:n]
        return self._finish(idx[order], score[order], self._blocked(u), n)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {**super()._arrays(), "score": self._score}

    def _restore(self, z: Mapping[str, np.ndarray]) -> None:
        super()._restore(z)
        self._score = z["score"]


class ItemCosineRecommender(_ScoredPeer):
    """implicit's ``CosineRecommender``: a product's score for a member is the sum over the
    member's products of (weight x cosine similarity), over the ``K`` nearest neighbours of
    each product. Reason "similar_products"."""

    kind = "item_cosine"
    config_cls = ItemCosineConfig
    config: ItemCosineConfig
    reason = SIMILAR_PRODUCTS

    def __init__(self, config: ItemCosineConfig | None = None) -> None:
        super().__init__(config if config is not None else ItemCosineConfig())

    def _fit(self, h: _History) -> None:
        from implicit.nearest_neighbours import CosineRecommender

        cfg = self.config
        user_items = user_item_matrix(h, cfg.weighting, cfg.bm25_k1, cfg.bm25_b)
        self._weights = user_items.data.astype(np.float32)  # aligned with the history entries
        model = CosineRecommender(K=cfg.K, num_threads=cfg.num_threads)
        fit_quietly(model, user_items)
        sim = model.similarity.tocsr()
        self._sim = (sim.indptr.astype(np.int64), sim.indices.astype(np.int32), sim.data)

    def _prepare(self) -> None:
        from implicit.nearest_neighbours import CosineRecommender, NearestNeighboursScorer
        from scipy.sparse import csr_matrix

        super()._prepare()
        n_p = len(self._product_ids)
        indptr, indices, data = self._sim
        self._model = CosineRecommender(K=self.config.K, num_threads=1)
        self._model.similarity = csr_matrix((data, indices, indptr), shape=(n_p, n_p))
        self._model.scorer = NearestNeighboursScorer(self._model.similarity)

    def _recommend(self, u: int, n: int) -> list[Recommendation]:
        from scipy.sparse import csr_matrix

        a, b = self._indptr[u], self._indptr[u + 1]
        row = csr_matrix(
            (self._weights[a:b], self._indices[a:b], np.array([0, b - a])),
            shape=(1, len(self._product_ids)),
        )
        blocked = self._blocked(u)
        ids, scores = self._model.recommend(
            0,
            row,
            N=n,
            filter_already_liked_items=self.config.filter_already_bought,
            filter_items=np.union1d(blocked, self._out_of_stock).astype(np.int32),
        )
        keep = scores > 0
        ids, scores = np.asarray(ids)[keep][:n], np.asarray(scores)[keep][:n]
        order = np.lexsort((ids, -scores))
        return self._finish(ids[order], scores[order], blocked, n)

    def _arrays(self) -> dict[str, np.ndarray]:
        indptr, indices, data = self._sim
        return {
            **super()._arrays(),
            "weights": self._weights,
            "sim_indptr": indptr,
            "sim_indices": indices,
            "sim_data": data,
        }

    def _restore(self, z: Mapping[str, np.ndarray]) -> None:
        super()._restore(z)
        self._weights = z["weights"]
        self._sim = (z["sim_indptr"], z["sim_indices"], z["sim_data"])


class _FactorPeer(_ScoredPeer):
    """A factor model: score = ``item_factors @ user_factors[u]``."""

    reason = SIMILAR_MEMBERS

    def _fit(self, h: _History) -> None:
        self._user_factors, self._item_factors = self._factors(h)

    def _factors(self, h: _History) -> tuple[np.ndarray, np.ndarray]:
        """(user_factors (M, f) float32, item_factors (P, f) float32)."""
        raise NotImplementedError

    def _recommend(self, u: int, n: int) -> list[Recommendation]:
        return self._top(u, self._item_factors @ self._user_factors[u], n)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            **super()._arrays(),
            "user_factors": self._user_factors,
            "item_factors": self._item_factors,
        }

    def _restore(self, z: Mapping[str, np.ndarray]) -> None:
        super()._restore(z)
        self._user_factors = np.ascontiguousarray(z["user_factors"])
        self._item_factors = np.ascontiguousarray(z["item_factors"])


def _as_arrays(model: Any) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.ascontiguousarray(model.user_factors, dtype=np.float32),
        np.ascontiguousarray(model.item_factors, dtype=np.float32),
    )


class ALSRecommender(_FactorPeer):
    """implicit's ``AlternatingLeastSquares`` on the weighted member x product matrix.
    Reason "similar_members"."""

    kind = "als"
    config_cls = ALSConfig
    config: ALSConfig

    def __init__(self, config: ALSConfig | None = None) -> None:
        super().__init__(config if config is not None else ALSConfig())

    def _factors(self, h: _History) -> tuple[np.ndarray, np.ndarray]:
        from implicit.cpu.als import AlternatingLeastSquares

        cfg = self.config
        user_items = user_item_matrix(h, cfg.weighting, cfg.bm25_k1, cfg.bm25_b)
        model = AlternatingLeastSquares(
            factors=cfg.factors,
            regularization=cfg.regularization,
            alpha=cfg.alpha,
            iterations=cfg.iterations,
            num_threads=cfg.num_threads,
            random_state=cfg.random_state,
        )
        with single_threaded_blas():  # implicit's own threads use the cores
            model.fit(user_items, show_progress=False)
        return _as_arrays(model)


class BPRRecommender(_FactorPeer):
    """implicit's ``BayesianPersonalizedRanking`` (the item bias is the last factor).
    Reason "similar_members"."""

    kind = "bpr"
    config_cls = BPRConfig
    config: BPRConfig

    def __init__(self, config: BPRConfig | None = None) -> None:
        super().__init__(config if config is not None else BPRConfig())

    def _factors(self, h: _History) -> tuple[np.ndarray, np.ndarray]:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        cfg = self.config
        user_items = user_item_matrix(h, "count", 0.0, 0.0)
        model = BayesianPersonalizedRanking(
            factors=cfg.factors,
            learning_rate=cfg.learning_rate,
            regularization=cfg.regularization,
            iterations=cfg.iterations,
            num_threads=cfg.num_threads,
            random_state=cfg.random_state,
        )
        with single_threaded_blas():  # implicit's own threads use the cores
            model.fit(user_items, show_progress=False)
        return _as_arrays(model)
