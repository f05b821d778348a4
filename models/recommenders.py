"""Every product recommender by kind, and the loader that picks the class from an artifact.

``models.products`` holds the base class, popularity and the shipped hybrid; ``models.peers``
the peers a data scientist would reach for. This module imports both (they never import
it), so every kind is known here without registration side effects.
"""

from __future__ import annotations

from pathlib import Path

from models.artifact import class_for, read_npz
from models.peers import ALSRecommender, BPRRecommender, BuyAgainRecommender, ItemCosineRecommender
from models.products import HybridRecommender, PopularityRecommender, Recommender

KINDS: dict[str, type[Recommender]] = {
    cls.kind: cls
    for cls in (
        PopularityRecommender, HybridRecommender, BuyAgainRecommender, ItemCosineRecommender,
        ALSRecommender, BPRRecommender,
    )
}  # fmt: skip


def load_recommender(path: Path) -> Recommender:
    """Load any ``save``d recommender, choosing the class from the artifact's kind."""
    kind, _ = read_npz(path)
    return class_for(KINDS, kind, Recommender, Path(path), "product recommender").load(path)
