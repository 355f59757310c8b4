"""The recommendation head of the unified CRS (equations 2-5) and its FAISS index.

    d  = W_d . meanpool(Enc(X_R))                            explicit needs (the dialogue)
    b  = BehaviourEncoder(e_{h_1}, ..., e_{h_m} | d)          implicit needs (behaviours, latest last)
    l  = e_{LLM item}  (only when trained with LLM inputs)    equation 4
    u  = d + W_b b [+ W_l l]
    r  = softmax_i(u . e_i + c_i + p_i) over EVERY catalog item   equations 2 and 3 (cross-entropy)

p_i (the behaviour pointer, on by default, `behaviour_pointer`) is our addition: a learned bonus
alpha * log(1 + count_i) + beta * exp(-age_i / 10) for items the user browsed (count_i times, the
latest age_i behaviours ago), 0 for all others. Users often ask about items they have just
browsed; an inner product of dense embeddings cannot say "this very item" for 68k items learnt
from a few thousand dialogues, a pointer can. It stays exact with FAISS: an index search for the
top k + m (m browsed items) plus exact scoring of the m browsed items gives the exact top k.

e_i are trainable item embeddings started from the SVD of item knowledge and behaviour
co-occurrence (`crs.catalog.initial_item_embeddings`), c_i an item bias started from log
popularity. W_b and W_l start as the identity, so before any training the user representation
already points to items like the ones the user browsed (and the one the LLM picked).

Behaviour encoders: 'attention' (the dialogue vector attends over the behaviour embeddings plus
a recency embedding), 'gru' (last state of a GRU), 'mean' (masked mean), 'none'.
At inference the item vectors [e_i, c_i] live in a `crs.index.ItemIndex`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .index import ItemIndex, augment_items, augment_queries  # noqa: F401  (re-exported)


class BehaviourEncoder(nn.Module):
    def __init__(self, kind: str, dim: int, max_len: int):
        super().__init__()
        self.kind = kind
        self.max_len = max_len
        if kind == "attention":
            self.recency = nn.Embedding(max_len, dim)
            nn.init.zeros_(self.recency.weight)
            self.query = nn.Linear(dim, dim)
            nn.init.eye_(self.query.weight)
            nn.init.zeros_(self.query.bias)
        elif kind == "gru":
            self.gru = nn.GRU(dim, dim, batch_first=True)

    def forward(self, emb: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """emb (B, M, D) behaviour item embeddings, latest LAST, left-padded; mask (B, M) bool."""
        if self.kind == "none" or emb.shape[1] == 0:
            return emb.new_zeros(emb.shape[0], emb.shape[2])
        maskf = mask.to(emb.dtype)
        count = maskf.sum(1, keepdim=True)
        if self.kind == "mean":
            return (emb * maskf.unsqueeze(-1)).sum(1) / count.clamp(min=1)
        if self.kind == "gru":
            # left padding: the last position is the latest behaviour; padded steps see zeros
            out, _ = self.gru(emb * maskf.unsqueeze(-1))
            return out[:, -1] * (count > 0).to(emb.dtype)
        m = emb.shape[1]
        positions = torch.arange(m - 1, -1, -1, device=emb.device).clamp(max=self.max_len - 1)  # 0 = latest
        keys = emb + self.recency(positions).unsqueeze(0)
        logits = torch.einsum("bd,bmd->bm", self.query(query), keys) / keys.shape[-1] ** 0.5
        logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        weights = torch.softmax(logits, dim=1) * maskf
        return torch.einsum("bm,bmd->bd", weights, emb)


class Recommender(nn.Module):
    def __init__(self, num_items: int, d_model: int, item_dim: int, behaviour_encoder: str = "attention",
                 max_behaviours: int = 50, use_llm: bool = False, init_embeddings: torch.Tensor | None = None,
                 init_bias: torch.Tensor | None = None, behaviour_pointer: bool = True):
        super().__init__()
        self.num_items = num_items
        self.use_llm = use_llm
        self.behaviour_pointer = behaviour_pointer
        if behaviour_pointer:
            self.pointer_weights = nn.Parameter(torch.tensor([1.0, 1.0]))
        emb = init_embeddings if init_embeddings is not None else torch.randn(num_items, item_dim) * 0.02
        if emb.shape != (num_items, item_dim):
            raise ValueError(f"initial item embeddings have shape {tuple(emb.shape)}, expected {(num_items, item_dim)}")
        self.item_emb = nn.Parameter(emb.clone().float())
        self.item_bias = nn.Parameter(init_bias.clone().float() if init_bias is not None else torch.zeros(num_items))
        self.dialogue = nn.Linear(d_model, item_dim)
        nn.init.normal_(self.dialogue.weight, std=0.02)
        nn.init.zeros_(self.dialogue.bias)
        self.behaviours = BehaviourEncoder(behaviour_encoder, item_dim, max_behaviours)
        self.w_behaviour = nn.Linear(item_dim, item_dim, bias=False)
        nn.init.eye_(self.w_behaviour.weight)
        if use_llm:
            self.w_llm = nn.Linear(item_dim, item_dim, bias=False)
            nn.init.eye_(self.w_llm.weight)

    @staticmethod
    def pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)

    def _lookup(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = rows >= 0
        return self.item_emb[rows.clamp(min=0)] * valid.unsqueeze(-1).to(self.item_emb.dtype), valid

    def user(self, pooled: torch.Tensor, behaviour_rows: torch.Tensor, llm_rows: torch.Tensor | None = None) -> torch.Tensor:
        """User representations (B, item_dim). behaviour_rows (B, M) catalog rows, -1 = padding;
        llm_rows (B,) the LLM's item row or -1 (ignored unless use_llm)."""
        d = self.dialogue(pooled.float())
        emb, mask = self._lookup(behaviour_rows)
        u = d + self.w_behaviour(self.behaviours(emb, mask, d))
        if self.use_llm and llm_rows is not None:
            llm_emb, _ = self._lookup(llm_rows)
            u = u + self.w_llm(llm_emb)
        return u

    def pointer(self, behaviour_rows: torch.Tensor) -> torch.Tensor:
        """Pointer bonus (B, M) per behaviour position: non-zero only at the LATEST occurrence of each
        browsed item; 0 at padding (-1) and when the pointer is off."""
        rows = behaviour_rows
        if not self.behaviour_pointer or rows.shape[1] == 0:
            return torch.zeros(rows.shape, dtype=self.item_emb.dtype, device=rows.device)
        valid = rows >= 0
        same = (rows.unsqueeze(2) == rows.unsqueeze(1)) & valid.unsqueeze(2) & valid.unsqueeze(1)  # (B, M, M)
        count = same.sum(2).to(self.item_emb.dtype)
        later = torch.triu(torch.ones_like(same[0]), diagonal=1)  # q > p
        latest = valid & ~(same & later.unsqueeze(0)).any(2)
        m = rows.shape[1]
        age = torch.arange(m - 1, -1, -1, device=rows.device, dtype=self.item_emb.dtype)  # left padded: last = 0
        bonus = self.pointer_weights[0] * torch.log1p(count) + self.pointer_weights[1] * torch.exp(-age / 10.0)
        return bonus * latest.to(bonus.dtype)

    def scores(self, user: torch.Tensor, behaviour_rows: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of every catalog item (B, N): u . e_i + c_i (+ the pointer bonus of browsed items)."""
        out = user @ self.item_emb.t() + self.item_bias
        if behaviour_rows is not None and self.behaviour_pointer and behaviour_rows.shape[1]:
            out = out.scatter_add(1, behaviour_rows.clamp(min=0), self.pointer(behaviour_rows).to(out.dtype))
        return out

    def loss(self, user: torch.Tensor, gold_rows: torch.Tensor, behaviour_rows: torch.Tensor | None = None,
             candidate_rows: torch.Tensor | None = None, candidate_weight: float = 0.0,
             candidate_bonus: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy over the whole catalog (equation 3 / 5); samples whose gold is unknown are skipped.

        With `candidate_weight` > 0, plus that weight times the cross-entropy over each sample's own
        candidates (rows padded with -1): sharpens the ranking among same-seller candidates.
        `candidate_bonus` (B, C) is added to the candidates' scores there (the needs-match bonus)."""
        keep = gold_rows >= 0
        if not keep.any():
            return user.sum() * 0.0
        beh = behaviour_rows[keep] if behaviour_rows is not None else None
        scores = self.scores(user[keep], beh)
        gold = gold_rows[keep]
        loss = F.cross_entropy(scores, gold)
        if candidate_weight > 0 and candidate_rows is not None:
            cands = candidate_rows[keep]
            valid = cands >= 0
            is_gold = (cands == gold.unsqueeze(1)) & valid
            has = is_gold.any(1)
            if has.any():
                cs = scores.gather(1, cands.clamp(min=0))
                if candidate_bonus is not None:
                    cs = cs + candidate_bonus[keep].to(cs.dtype)
                cs = cs[has]
                cs = cs.masked_fill(~valid[has], torch.finfo(cs.dtype).min)
                loss = loss + candidate_weight * F.cross_entropy(cs, is_gold[has].float().argmax(1))
        return loss

    def build_index(self, kind: str = "flat", **kwargs) -> ItemIndex:
        with torch.no_grad():
            return ItemIndex(self.item_emb.detach().float().cpu().numpy(),
                             self.item_bias.detach().float().cpu().numpy(), kind=kind, **kwargs)
