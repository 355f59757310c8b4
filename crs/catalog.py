"""The item catalog of the recommender and the signal its item embeddings start from.

`Catalog`: every item the CRS can score, in a fixed row order (the item_kg.txt order, then items
that only dialogues mention). Saved with a model as `items.json`.

`initial_item_embeddings`: item embeddings are not started from noise but from a truncated SVD of
a sparse item x feature matrix with two blocks of columns:
    knowledge     one column per seller, 一级类目, 叶子类目 and per (relation, value) pair of the item
                  knowledge (brand, price range, material, ...), weighted by IDF
    co-occurrence one column per user of user_action.txt, the items the user acted on (IDF weighted,
                  scaled by `cooccurrence_weight`): items browsed by the same users come out close
Rows are L2-normalised per block before the SVD; the embedding is U * S rescaled to unit mean norm,
so items that share knowledge (or users) have a higher inner product than random pairs.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from uneed.corpus import CATEGORY_RELATION, LEAF_RELATION, Corpus, Item
from uneed.errors import PresalesError

log = logging.getLogger(__name__)


class Catalog:
    """Item ids <-> rows of the item embedding matrix."""

    def __init__(self, item_ids: Iterable[str]):
        self.ids: list[str] = list(dict.fromkeys(str(i) for i in item_ids))
        self.index: dict[str, int] = {item: row for row, item in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.index

    def row(self, item_id: str | None) -> int:
        """The row of an item, or -1 when unknown (or None)."""
        if item_id is None:
            return -1
        return self.index.get(item_id, -1)

    def rows(self, item_ids: Sequence[str]) -> list[int]:
        """Rows of the known items only, in order."""
        return [self.index[i] for i in item_ids if i in self.index]

    @classmethod
    def from_corpus(cls, corpus: Corpus) -> "Catalog":
        ids = list(corpus.items)
        for _split, d in corpus.all_dialogues():
            for turn in d.dialogue:
                ids.extend(turn.rec_item_id)
                for cands in turn.rec_item_candidates or []:
                    ids.extend(cands)
        return cls(ids)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.ids, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Catalog":
        path = Path(path)
        try:
            ids = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PresalesError(f"{path}: missing item catalog") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PresalesError(f"{path}: corrupt item catalog ({exc})") from None
        if not isinstance(ids, list) or not ids:
            raise PresalesError(f"{path}: corrupt item catalog (expected a non-empty JSON list of item ids)")
        return cls(ids)


def item_tokens(item: Item) -> list[str]:
    """The knowledge features of one item."""
    tokens = [f"seller={item.seller_id}"]
    for relation, values in item.knowledge.items():
        for value in values:
            if relation == CATEGORY_RELATION:
                tokens.append(f"cat={value}")
            elif relation == LEAF_RELATION:
                tokens.append(f"leaf={value}")
            else:
                tokens.append(f"{relation}={value}")
    return tokens


def _block(rows: list[list[str]], n_items: int):
    """A row-normalised IDF-weighted sparse matrix from per-item token lists."""
    from scipy import sparse

    vocab: dict[str, int] = {}
    r, c = [], []
    for i, toks in enumerate(rows):
        for t in dict.fromkeys(toks):  # first-seen order: a set's would follow PYTHONHASHSEED (the SVD start with it)
            r.append(i)
            c.append(vocab.setdefault(t, len(vocab)))
    if not vocab:
        return sparse.csr_matrix((n_items, 0), dtype=np.float32)
    m = sparse.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n_items, len(vocab)))
    df = np.asarray((m > 0).sum(axis=0)).ravel()
    keep = df >= 2  # a feature of one item says nothing about similarity
    m = m[:, np.flatnonzero(keep)]
    if m.shape[1] == 0:
        return m
    idf = np.log((1 + n_items) / (1 + df[keep])).astype(np.float32) + 1.0
    m = m.multiply(idf[None, :]).tocsr()
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.diags(1.0 / norms).dot(m).tocsr()


def item_feature_matrix(catalog: Catalog, items: Mapping[str, Item],
                        behaviours: Mapping[str, tuple[list[str], list[str]]] | None = None,
                        cooccurrence_weight: float = 0.5):
    """Sparse (items x features) matrix: knowledge block | co-occurrence block."""
    from scipy import sparse

    n = len(catalog)
    knowledge = [item_tokens(items[i]) if i in items else [] for i in catalog.ids]
    blocks = [_block(knowledge, n)]
    if behaviours and cooccurrence_weight > 0:
        users: list[list[str]] = [[] for _ in range(n)]
        for user, (_times, acted) in behaviours.items():
            for item in acted:
                row = catalog.row(item)
                if row >= 0:
                    users[row].append(f"user={user}")
        blocks.append(_block(users, n) * cooccurrence_weight)
    return sparse.hstack(blocks).tocsr()


def initial_item_embeddings(catalog: Catalog, items: Mapping[str, Item],
                            behaviours: Mapping[str, tuple[list[str], list[str]]] | None, dim: int,
                            cooccurrence_weight: float = 0.5, seed: int = 0) -> np.ndarray:
    """(len(catalog), dim) float32 item embeddings from a truncated SVD of the item features.

    Dimensions beyond the rank of the feature matrix get small noise (std 0.01).
    """
    rng = np.random.default_rng(seed)
    n = len(catalog)
    out = rng.normal(0.0, 0.01, size=(n, dim)).astype(np.float32)
    m = item_feature_matrix(catalog, items, behaviours, cooccurrence_weight)
    k = min(dim, min(m.shape) - 1)
    if k < 1 or m.nnz == 0:
        log.warning("item features carry no shared signal: item embeddings start from noise")
        return out
    from scipy.sparse.linalg import svds

    v0 = rng.normal(size=min(m.shape)).astype(np.float64)
    u, s, _vt = svds(m.astype(np.float64), k=k, v0=v0)
    order = np.argsort(-s)
    emb = (u[:, order] * s[order]).astype(np.float32)
    norms = np.linalg.norm(emb, axis=1)
    mean_norm = float(norms[norms > 0].mean()) if (norms > 0).any() else 1.0
    out[:, :k] = emb / max(mean_norm, 1e-8)
    log.info("item embeddings: SVD of %d x %d features (nnz %d), rank %d of %d dims", m.shape[0], m.shape[1],
             m.nnz, k, dim)
    return out


def popularity(catalog: Catalog, gold_items: Iterable[str]) -> np.ndarray:
    """log(1 + count) of each item as a gold recommendation: the starting item bias."""
    counts = np.zeros(len(catalog), dtype=np.float32)
    for item in gold_items:
        row = catalog.row(item)
        if row >= 0:
            counts[row] += 1
    return np.log1p(counts)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


__all__ = ["Catalog", "item_tokens", "item_feature_matrix", "initial_item_embeddings", "popularity", "cosine"]
