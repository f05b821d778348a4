"""Products like a product: bought together (same order) and similar (same members).

A binary matrix whose rows are orders (bought together) or members (similar) and whose
columns are products gives the co-occurrence counts ``C = M.T @ M`` (scipy sparse). A
product's neighbours are ranked by

    C[i, j] / n[j] ** popularity_power

where ``n[j]`` is the number of rows holding product j: ``popularity_power = 0`` is the raw
"most often bought with" count a shop would write first, ``0.5`` ranks exactly as cosine
similarity does (implicit's ``CosineRecommender``), values in between discount products that
go with everything (a carrier bag). The trainer picks the power on a validation window and
the gate keeps it only when it beats raw counts by more than the noise.

Only the ``K`` nearest neighbours of each product are kept, as one CSR matrix saved in a
``.npz`` (read with ``allow_pickle=False``), so a lookup is a slice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from models.artifact import meta_of, read_npz, write_npz


@dataclass
class NeighboursConfig:
    popularity_power: float = 0.0  # 0: raw co-occurrence counts; 0.5: cosine ranking
    K: int = 50  # neighbours kept per product  # noqa: N815 (implicit's name)

    def __post_init__(self) -> None:
        if not 0.0 <= self.popularity_power <= 1.0:
            raise ValueError(f"popularity_power must be in [0, 1], not {self.popularity_power}")
        if self.K < 1:
            raise ValueError(f"K must be >= 1, not {self.K}")


@dataclass
class CoOccurrence:
    """``counts``: (n_products, n_products) CSR, rows holding both products (diagonal 0);
    ``rows_with``: (n_products,) rows holding each product; ``products``: their ids."""

    products: np.ndarray
    counts: Any
    rows_with: np.ndarray


def cooccurrence(
    rows: Sequence[Any] | np.ndarray, product_ids: Sequence[Any] | np.ndarray
) -> CoOccurrence:
    """Co-occurrence counts of one entry per (row, product) pair; ``rows`` are order ids
    (bought together) or member ids (similar). A product counts once per row."""
    from scipy.sparse import csr_matrix

    rows = np.asarray(rows).astype(str)
    prods = np.asarray(product_ids).astype(str)
    if len(rows) != len(prods):
        raise ValueError(f"{len(rows)} rows but {len(prods)} product ids")
    row_ids, r = np.unique(rows, return_inverse=True)
    products, p = np.unique(prods, return_inverse=True)
    m = csr_matrix((np.ones(len(r), np.float64), (r, p)), shape=(len(row_ids), len(products)))
    m.sum_duplicates()
    m.data[:] = 1.0
    co = (m.T @ m).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    return CoOccurrence(products, co, np.asarray(m.sum(axis=0)).ravel())


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
        """Neighbours from (row, product) pairs; see :func:`cooccurrence`."""
        return self.fit_counts(cooccurrence(rows, product_ids))

    def fit_counts(self, counts: CoOccurrence) -> Self:
        """Neighbours from precomputed co-occurrence counts (several powers, one count)."""
        self._products = counts.products
        self._index = {pid: i for i, pid in enumerate(self._products.tolist())}
        n_p = len(self._products)
        co = counts.counts
        if n_p == 0:
            return self
        discount = counts.rows_with**-self.config.popularity_power
        k = self.config.K
        row = np.repeat(np.arange(n_p), np.diff(co.indptr))  # the product of each entry
        score = co.data * discount[co.indices]
        order = np.lexsort((co.indices, -score, row))  # by product, best first, ties by id
        start = co.indptr[:-1][row[order]]
        keep = order[(np.arange(len(order)) - start) < k]  # the first k entries of each row
        self._indptr = np.concatenate([[0], np.cumsum(np.bincount(row[keep], minlength=n_p))])
        self._nbr = co.indices[keep].astype(np.int32)
        self._score = score[keep].astype(np.float32)
        self._together = co.data[keep].astype(np.int32)
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

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "products": self._products.astype(str),
            "indptr": self._indptr,
            "nbr": self._nbr,
            "score": self._score,
            "together": self._together,
        }

    def _set_state(self, z: Mapping[str, np.ndarray]) -> None:
        self._products = z["products"]
        self._index = {pid: i for i, pid in enumerate(self._products.tolist())}
        self._indptr, self._nbr = z["indptr"], z["nbr"]
        self._score, self._together = z["score"], z["together"]

    def save(self, path: Path) -> None:
        write_npz(path, self.kind, self._state(), asdict(self.config))

    @classmethod
    def load(cls, path: Path) -> ProductNeighbours:
        kind, z = read_npz(path)
        if kind != cls.kind:
            raise ValueError(f"{path} is not a product-neighbours artifact (kind {kind!r})")
        out = cls(NeighboursConfig(**meta_of(z)))
        out._set_state(z)
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


class SimilarProducts:
    """Both neighbour sets of the catalogue in one artifact: ``bought_together`` (same
    order) and ``similar`` (same members), fitted with the same popularity discount."""

    kind: ClassVar[str] = "similar_products"

    def __init__(self, bought_together: ProductNeighbours | None = None,
                 similar: ProductNeighbours | None = None) -> None:  # fmt: skip
        self.bought_together = bought_together or ProductNeighbours()
        self.similar = similar or ProductNeighbours()

    @property
    def fitted(self) -> bool:
        return self.bought_together.fitted or self.similar.fitted

    def known(self, product_id: str) -> bool:
        return self.bought_together.known(product_id) or self.similar.known(product_id)

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {}
        for name, part in (("together", self.bought_together), ("similar", self.similar)):
            arrays |= {f"{name}_{k}": v for k, v in part._state().items()}
            meta[name] = asdict(part.config)
        write_npz(path, self.kind, arrays, meta)

    @classmethod
    def load(cls, path: Path) -> SimilarProducts:
        kind, z = read_npz(path)
        if kind != cls.kind:
            raise ValueError(f"{path} is not a similar-products artifact (kind {kind!r})")
        meta = meta_of(z)
        parts = []
        for name in ("together", "similar"):
            part = ProductNeighbours(NeighboursConfig(**meta[name]))
            part._set_state({k.removeprefix(f"{name}_"): v for k, v in z.items()
                             if k.startswith(f"{name}_")})  # fmt: skip
            parts.append(part)
        return cls(*parts)
