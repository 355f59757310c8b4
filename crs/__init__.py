"""The unified CRS of section 3.3 (BART + FAISS-backed item-embedding recommender).

    from crs import CRS
    crs = CRS.load("runs/crs")        # see crs.inference for the API

Modules: config (CRSConfig, presets), catalog (item rows, SVD item init), index (FAISS),
recommender (equations 2-5), model (UnifiedCRS), data (tokenising), inference (CRS),
evaluate (predict and score a split). Imports are lazy: `import crs` pulls in no torch.
"""
from __future__ import annotations

__all__ = ["CRS", "ScoredItem", "CRSConfig", "UnifiedCRS", "ItemIndex"]


def __getattr__(name: str):
    if name in ("CRS", "ScoredItem"):
        from . import inference

        return getattr(inference, name)
    if name == "CRSConfig":
        from .config import CRSConfig

        return CRSConfig
    if name == "UnifiedCRS":
        from .model import UnifiedCRS

        return UnifiedCRS
    if name == "ItemIndex":
        from .index import ItemIndex

        return ItemIndex
    raise AttributeError(name)
