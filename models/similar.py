"""Products like a product: bought together (same order) and similar (same members).

Both are implicit's item-item nearest neighbours, fitted on a binary matrix whose rows are
orders (bought together) or members (similar) and whose columns are products:

- ``weighting="count"``: implicit's ``ItemItemRecommender``, raw co-occurrence counts (the
  simple rule a shop would write first: "most often bought with");
- ``weighting="cosine"``: ``CosineRecommender``, counts divided by both products' popularity;
- ``weighting="bm25"``: ``BM25Recommender``, counts with BM25 weighting of long baskets.

Only the ``K`` nearest neighbours of each product are kept, as one CSR matrix saved in a
``.npz`` (read with ``allow_pickle=False``), so a lookup is a slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from models.artifact import meta_of, read_npz, write_npz
from models.products import fit_quietly

WEIGHTINGS = ("count", "cosine", "bm25")


@dataclass
class NeighboursConfig:
    weighting: str = "cosine"  # "count", "cosine" or "bm25"
    K: int = 50  # neighbours kept per product  # noqa: N815 (implicit's name)
    bm25_k1: float = 1.2
    bm25_b: float = 0.75

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {self.weighting!r}")


@dataclass(frozen=True, slots=True)
class Neighbour:
    product_id: str
    score: float
    together: int  # rows (orders or members) holding both products


class ProductNeighbours:
    """Nearest products of each product. ``fit(rows, product_ids)`` takes one entry per
    (row, product) pair: ``rows`` the order ids (bought together) or member ids (similar)."""

    kind: ClassVar[str] = "product_neighbours"

    def __init__(self, config: NeighboursConfig | None = None) -> None:
        self.config = config or NeighboursConfig()
        self._products = np.array([], dtype=str)
        self._index: dict[str, int] = {}
        self._indptr = np.zeros(1, dtype=np.int64)
        self._nbr = np.array([], dtype=np.int32)
        self._score = np.array([], dtype=np.float32)
        self._together = np.array([], dtype=np.int32)

    @property
    def fitted(self) -> bool:
        return len(self._products) > 0

    def fit(
        self, rows: Sequence[Any] | np.ndarray, product_ids: Sequence[Any] | np.ndarray
    ) -> Self:
        from implicit.nearest_neighbours import (
            BM25Recommender,
            CosineRecommender,
            ItemItemRecommender,
        )
        from scipy.sparse import csr_matrix

        rows = np.asarray(rows).astype(str)
        prods = np.asarray(product_ids).astype(str)
        if len(rows) != len(prods):
            raise ValueError(f"{len(rows)} rows but {len(prods)} product ids")
        row_ids, r = np.unique(rows, return_inverse=True)
        self._products, p = np.unique(prods, return_inverse=True)
        self._index = {pid: i for i, pid in enumerate(self._products.tolist())}
        n_p = len(self._products)
        if n_p == 0:
            return self
        m = csr_matrix((np.ones(len(r), np.float64), (r, p)), shape=(len(row_ids), n_p))
        m.sum_duplicates()
        m.data[:] = 1.0  # a product counts once per order / member
        cfg = self.config
        k = min(cfg.K + 1, n_p)  # +1: implicit keeps the product itself as a neighbour
        model: Any
        if cfg.weighting == "count":
            model = ItemItemRecommender(K=k, num_threads=1)
        elif cfg.weighting == "cosine":
            model = CosineRecommender(K=k, num_threads=1)
        else:
            model = BM25Recommender(K=k, K1=cfg.bm25_k1, B=cfg.bm25_b, num_threads=1)
        fit_quietly(model, m)
        sim = model.similarity.tocsr()
        sim.setdiag(0)
        sim.eliminate_zeros()
        co = (m.T @ m).tocsr()  # co-occurrence counts, for the "together" figure
        indptr = [0]
        nbr: list[np.ndarray] = []
        score: list[np.ndarray] = []
        together: list[np.ndarray] = []
        for i in range(n_p):
            a, b = sim.indptr[i], sim.indptr[i + 1]
            idx, val = sim.indices[a:b], sim.data[a:b]
            order = np.lexsort((idx, -val))[: cfg.K]
            idx, val = idx[order], val[order]
            nbr.append(idx.astype(np.int32))
            score.append(val.astype(np.float32))
            together.append(np.asarray(co[i, idx].todense()).ravel().astype(np.int32))
            indptr.append(indptr[-1] + len(idx))
        self._indptr = np.asarray(indptr, dtype=np.int64)
        self._nbr = np.concatenate(nbr) if nbr else np.array([], np.int32)
        self._score = np.concatenate(score) if score else np.array([], np.float32)
        self._together = np.concatenate(together) if together else np.array([], np.int32)
        return self

    def known(self, product_id: str) -> bool:
        return product_id in self._index

    def neighbours(self, product_id: str, n: int = 10) -> list[Neighbour]:
        """Up to ``n`` products, best first; empty for an unknown product."""
        i = self._index.get(product_id)
        if i is None:
            return []
        a, b = self._indptr[i], min(self._indptr[i + 1], self._indptr[i] + n)
        return [
            Neighbour(str(self._products[j]), float(s), int(t))
            for j, s, t in zip(self._nbr[a:b], self._score[a:b], self._together[a:b], strict=True)
        ]

    def neighbour_ids(self, product_id: str, n: int = 10) -> list[str]:
        return [x.product_id for x in self.neighbours(product_id, n)]

    def save(self, path: Path) -> None:
        write_npz(
            path,
            self.kind,
            {
                "products": self._products.astype(str),
                "indptr": self._indptr,
                "nbr": self._nbr,
                "score": self._score,
                "together": self._together,
            },
            asdict(self.config),
        )

    @classmethod
    def load(cls, path: Path) -> ProductNeighbours:
        kind, z = read_npz(path)
        if kind != cls.kind:
            raise ValueError(f"{path} is not a product-neighbours artifact (kind {kind!r})")
        out = cls(NeighboursConfig(**meta_of(z)))
        out._products = z["products"]
        out._index = {pid: i for i, pid in enumerate(out._products.tolist())}
        out._indptr, out._nbr = z["indptr"], z["nbr"]
        out._score, out._together = z["score"], z["together"]
        return out


def basket_hit_rate(
    model: ProductNeighbours, baskets: Sequence[Sequence[str]], k: int = 10
) -> np.ndarray:
    """Next-basket co-purchase hit rate, one value per basket: the share of the basket's known
    products whose top-``k`` neighbours contain another product of the same basket. NaN for
    a basket with fewer than two known distinct products (it says nothing)."""
    out = np.full(len(baskets), np.nan)
    for b, items in enumerate(baskets):
        known = sorted({p for p in items if model.known(p)})
        if len(known) < 2:
            continue
        hits = [bool(set(model.neighbour_ids(p, k)) & (set(known) - {p})) for p in known]
        out[b] = float(np.mean(hits))
    return out
