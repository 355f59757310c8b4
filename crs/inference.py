"""Inference API of a trained CRS: the four U-NEED tasks on plain Python inputs, batched.

    crs = CRS.load("runs/crs")                       # a run dir (uses RUN/best) or a model dir
    crs.understand([context])                        -> [['品类：面膜', ...]]
    crs.elicit([context], needs=[[('品类', '面膜')]])  -> [['肤质']]
    crs.recommend([context], behaviours=[[...]], candidates=[[...20 ids...]], k=5)
                                                     -> [[ScoredItem('586711180132', 3.2), ...]]
    crs.respond([context], attributes=[['肤质：']], items=[[]]) -> ['亲亲您是什么肤质呢']

A context is a list of `uneed.tasks.Utterance` (speaker 用户/客服, text, and optionally the tags,
asked keys and recommended items of earlier turns). Documented behaviour on awkward input:
  * empty context: `understand` raises PresalesError (there is no utterance to understand); the
    other tasks accept it and answer from the prompt (and behaviours) alone.
  * a context longer than the model takes: truncated from the left, the latest turns and the task
    prompt are kept; logged at INFO level (logger 'crs.data').
  * unknown item ids among candidates / exclude / behaviours / llm_items: dropped with a WARNING;
    a candidate list with no known item yields an empty ranking.
  * `needs` (explicit needs: ('key', 'value') pairs or 'key：value' tags) are written into the
    sequence as the [understand] segment of the last user utterance, unless the context already
    carries tags.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from uneed.device import autocast
from uneed.errors import ModelLoadError, PresalesError
from uneed.needs import ItemValues, match_features
from uneed.replies import item_values
from uneed.schema import USER
from uneed.tasks import CRSExample, TaskSample, Utterance, crs_example, parse_keys, parse_tags

from .catalog import Catalog
from .config import CRSConfig
from .data import Encoder, Features, collate
from .heads import decode_bio, span_pieces
from .index import ItemIndex
from .model import UnifiedCRS
from .rerank import Reranker

log = logging.getLogger(__name__)

GEN_TASKS = ("understand", "elicit", "respond")
# A catalog search with the needs-match bonus re-ranks this many items beyond the k asked for.
MATCH_RERANK = 100
_CJK_SPACE = re.compile(r"(?<=[^\x00-\x7f])\s+|\s+(?=[^\x00-\x7f])")


@dataclass(frozen=True)
class ScoredItem:
    item_id: str
    score: float

    def to_dict(self) -> dict:
        return {"item_id": self.item_id, "score": self.score}


class _KnownItem:
    """Stands in for uneed.corpus.Item when only its texts were saved with the model: the short one
    (two facts) and, when saved, the one with all its knowledge."""

    def __init__(self, text: str, facts: str | None = None):
        self._text = text
        self._facts = facts

    def text(self, max_relations: int | None = None) -> str:
        return self._facts if max_relations is None and self._facts else self._text


def resolve_model_dir(path: str | Path) -> Path:
    """A model directory from a run directory (RUN/best, else RUN/checkpoint/model) or itself."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such CRS run or model directory")
    if not path.is_dir():
        raise ModelLoadError(f"{path}: not a directory")
    for cand in (path, path / "best", path / "checkpoint" / "model"):
        if (cand / "crs_config.json").is_file():
            return cand
    raise ModelLoadError(f"{path}: not a CRS run or model directory (no crs_config.json in it, in best/ or in "
                         f"checkpoint/model/); train one with `presales train crs`")


def save_item_texts(path: Path, items: Mapping) -> None:
    """The short item texts the sequences show for recommended items (crs_format.item_short), the
    texts with all their knowledge (what a reply's items show with respond_facts) and each item's
    knowledge values (what the needs-match bonus compares the needs with)."""
    texts = {i: item.text(max_relations=2) for i, item in items.items()}
    (path / "item_texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    facts = {i: item.text() for i, item in items.items()}
    (path / "item_facts.json").write_text(json.dumps(facts, ensure_ascii=False), encoding="utf-8")
    (path / "item_values.json").write_text(json.dumps({i: sorted(item_values(item)) for i, item in items.items()},
                                                      ensure_ascii=False), encoding="utf-8")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: corrupt ({exc})") from None


def save_item_groups(path: Path, corpus) -> None:
    """Each item's domain (uneed.corpus.Corpus.item_domains) and seller: recommendations stay in the
    conversation's category and prefer its seller's items."""
    groups = {"domains": corpus.item_domains(), "sellers": {i: item.seller_id for i, item in corpus.items.items()}}
    (path / "item_groups.json").write_text(json.dumps(groups, ensure_ascii=False), encoding="utf-8")


def _as_tags(needs) -> list[str]:
    tags = []
    for n in needs or []:
        if isinstance(n, (tuple, list)):
            tags.append(f"{n[0]}：{n[1] if len(n) > 1 else ''}")
        else:
            tags.append(str(n))
    return tags


def _pairs(needs) -> list[tuple[str, str]]:
    """Needs given as ('key', 'value') pairs or 'key：value' tags, as pairs."""
    return [tuple(t.partition("：")[::2]) for t in _as_tags(needs)]


def _context_needs(context: Sequence[Utterance]) -> list[tuple[str, str]]:
    """The valued tags of the user's turns, in order (what uneed.tasks calls the needs so far)."""
    pairs = [tuple(t.partition("：")[::2]) for u in context if u.speaker == USER for t in u.tags]
    return list(dict.fromkeys((k, v) for k, v in pairs if v))


def _with_needs(context: Sequence[Utterance], needs) -> list[Utterance]:
    ctx = list(context)
    tags = _as_tags(needs)
    if not tags or any(u.tags for u in ctx):
        return ctx
    for j in range(len(ctx) - 1, -1, -1):
        if ctx[j].speaker == USER:
            u = ctx[j]
            ctx[j] = Utterance(u.speaker, u.text, u.act_tag, tags=tags, asked=list(u.asked), items=list(u.items))
            return ctx
    return ctx


class CRS:
    """A trained unified CRS ready to answer; see the module docstring for the input conventions."""

    def __init__(self, model: UnifiedCRS, tok, catalog: Catalog, device: str | torch.device = "cpu",
                 item_texts: Mapping[str, str] | None = None, index_kind: str | None = None, batch_size: int = 32,
                 item_values: Mapping[str, Sequence[str]] | None = None, item_facts: Mapping[str, str] | None = None,
                 item_domains: Mapping[str, str] | None = None, item_sellers: Mapping[str, str] | None = None,
                 reranker: Reranker | None = None):
        self.model = model.eval()
        self.tok = tok
        self.catalog = catalog
        self.config: CRSConfig = model.config
        self.device = torch.device(device)
        self.model.to(self.device)
        self.batch_size = batch_size
        facts = item_facts or {}
        self.items = {i: _KnownItem(t, facts.get(i)) for i, t in (item_texts or {}).items()}
        reads_values = self.config.needs_match or self.config.rerank
        self.item_values = item_values if reads_values else None
        self._prepared_values: dict[str, ItemValues] = {}  # item id -> its values as match_features reads them
        self._recent_bonus: dict[tuple, dict[int, float]] = {}  # (needs, rows) -> needs_bonus, oldest first
        self._bonus_lock = threading.Lock()
        if reads_values and not item_values:
            raise ModelLoadError("this CRS reads item knowledge (needs match or re-ranker), but no item_values.json came "
                                  "with it")
        self.reranker = reranker  # None until fitted (training) or when the config has none
        self.encoder = Encoder(tok, catalog, self.config.max_source_len, self.config.max_target_len,
                               self.config.max_behaviours, keys=model.keys, head_tasks=self.config.head_tasks,
                               item_values=self.item_values if self.config.needs_match else None)
        self.index_kind = index_kind or self.config.index
        self._index: ItemIndex | None = None
        self.set_item_groups(item_domains or {}, item_sellers or {})
        self.set_item_leaves({})

    def set_item_groups(self, domains: Mapping[str, str], sellers: Mapping[str, str]) -> None:
        """Item id -> domain and -> seller, for recommendations filtered by domain (see `recommend`)."""
        self.item_domains, self.item_sellers = dict(domains), dict(sellers)
        self._domain_rows: dict[str, set[int]] = {}
        self._seller_rows: dict[str, set[int]] = {}
        for groups, rows in ((self.item_domains, self._domain_rows), (self.item_sellers, self._seller_rows)):
            for item_id, group in groups.items():
                row = self.catalog.row(item_id) if item_id in self.catalog else -1
                if row >= 0:
                    rows.setdefault(group, set()).add(row)

    def set_item_leaves(self, leaves: Mapping[str, str]) -> None:
        """Item id -> leaf category (叶子类目, e.g. 热水器), for recommendations kept to the kind of item the
        shopper named (`recommend`'s `leaves`); the agent sets them from the corpus (agent.assistant)."""
        self._leaf_rows: dict[str, set[int]] = {}
        for item_id, leaf in leaves.items():
            row = self.catalog.row(item_id) if item_id in self.catalog else -1
            if row >= 0 and leaf:
                self._leaf_rows.setdefault(leaf, set()).add(row)
        self._rows_with_leaf = set().union(*self._leaf_rows.values())

    # ------------------------------------------------------------------------------------ loading
    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", index: str | None = None,
             trust_remote_code: bool = False, batch_size: int = 32, with_reranker: bool = True) -> "CRS":
        """Load RUN/best (or a model directory). PresalesError (ModelLoadError) when it is missing,
        incomplete or corrupt. `index` overrides the FAISS index kind (flat, ivf, hnsw).
        with_reranker=False: leave out the candidate re-ranker of a model that has one (what training
        does while it fits one)."""
        path = resolve_model_dir(run_dir)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model, tok, catalog = UnifiedCRS.load(path, trust_remote_code=trust_remote_code)
        texts = _read_json(path / "item_texts.json")
        groups = _read_json(path / "item_groups.json")
        values = _read_json(path / "item_values.json") if model.config.needs_match or model.config.rerank else None
        reranker = Reranker.load(path) if model.config.rerank and with_reranker else None
        facts = _read_json(path / "item_facts.json") if model.config.respond_facts else None
        return cls(model, tok, catalog, device=device, item_texts=texts, index_kind=index, batch_size=batch_size,
                   item_values=values, item_facts=facts, item_domains=groups.get("domains"),
                   item_sellers=groups.get("sellers"), reranker=reranker)

    @property
    def index(self) -> ItemIndex:
        if self._index is None:
            c = self.config
            kwargs = {}
            if self.index_kind == "ivf":
                kwargs = dict(nlist=c.ivf_nlist, nprobe=c.ivf_nprobe)
            elif self.index_kind == "hnsw":
                kwargs = dict(hnsw_m=c.hnsw_m, ef_search=c.hnsw_ef_search)
            self._index = self.model.recommender.build_index(self.index_kind, device=c.index_device, **kwargs)
        return self._index

    def refresh_index(self) -> None:
        """Rebuild the FAISS index (after the item embeddings changed, e.g. during training)."""
        self._index = None

    # ------------------------------------------------------------------------------------ low level
    def _gen_text(self, ids: torch.Tensor) -> list[str]:
        texts = self.tok.batch_decode(ids, skip_special_tokens=True)
        if self.config.base_model:
            texts = [_CJK_SPACE.sub("", t) for t in texts]
        return [t.strip() for t in texts]

    def answer_features(self, feats: Sequence[Features]) -> list[str]:
        """The output text of understanding, elicitation or response features of ONE task: from the
        task's classification head when the model has one, else decoded."""
        if not feats:
            return []
        task = feats[0].task
        if task in self.model.heads:
            return self.extract_features(feats) if task == "understand" else self.classify_features(feats)
        return self.generate_features(feats)

    def extract_features(self, feats: Sequence[Features], threshold: float | None = None) -> list[str]:
        """Understanding by the extraction head: 'key：value' spans of the utterance, then 'key：' for
        each key named without a value (probability above `threshold`, by default the config's)."""
        threshold = self.config.valueless_threshold if threshold is None else threshold
        out: list[str] = [""] * len(feats)
        order = sorted(range(len(feats)), key=lambda i: len(feats[i].input_ids))
        keys = self.model.keys
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            batch = collate([feats[i] for i in idx], self.encoder.pad, self.device)
            with torch.no_grad(), autocast(self.device):
                labels, valueless = self.model.extract(batch)
            labels, valueless = labels.cpu().tolist(), valueless.float().cpu().numpy()
            for j, i in enumerate(idx):
                f = feats[i]
                pieces = span_pieces(f.source, [f.offsets[t] for t in f.span_tokens])
                spans = decode_bio([labels[j][t] for t in f.span_tokens], pieces, keys)
                tags = [f"{k}：{v}" for k, v in spans]
                valued = {k for k, _ in spans}
                tags += [f"{keys.keys[k]}：" for k in np.flatnonzero(valueless[j] > threshold)
                         if keys.keys[k] not in valued]
                out[i] = "；".join(dict.fromkeys(tags))
        return out

    def classify_features(self, feats: Sequence[Features]) -> list[str]:
        """Elicitation by the classification head: the most likely key among those allowed."""
        out: list[str] = [""] * len(feats)
        for s in range(0, len(feats), self.batch_size):
            chunk = list(feats[s:s + self.batch_size])
            batch = collate(chunk, self.encoder.pad, self.device)
            with torch.no_grad(), autocast(self.device):
                probs = self.model.elicit_scores(batch).float().cpu().numpy()
            for j, f in enumerate(chunk):
                out[s + j] = self.model.keys.keys[int(probs[j].argmax())] if any(f.allowed) else ""
        return out

    def generate_features(self, feats: Sequence[Features], max_new_tokens: int | None = None) -> list[str]:
        """Greedy (or beam) decoding of generation features, batched by length; outputs in input order."""
        out: list[str] = [""] * len(feats)
        order = sorted(range(len(feats)), key=lambda i: len(feats[i].input_ids))
        capped, caps = Counter(), {}  # task -> outputs that reached the length cap without ending; task -> that cap
        self.model.eval()
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            task = feats[idx[0]].task
            n_new = caps[task] = max_new_tokens or self.config.max_new_tokens.get(task, self.config.max_target_len)
            batch = collate([Features(feats[i].key, "gen", "", feats[i].input_ids, labels=[0]) for i in idx],
                            self.encoder.pad, self.device)
            with torch.no_grad(), autocast(self.device):
                # replies only: a tag list may repeat a key ('功能需求：省电；功能需求：静音') or be empty
                reply = task == "respond"
                ids = self.model.generate(batch["input_ids"], batch["attention_mask"], n_new, self.config.num_beams,
                                          self.config.no_repeat_ngram if reply else 0,
                                          self.tok.all_special_ids if reply else ())
            capped[task] += int((ids[:, 1:] != self.encoder.eos).all(1).sum())
            for i, text in zip(idx, self._gen_text(ids)):
                out[i] = text
        for task, n in capped.items():
            if n:  # an output cut mid-clause: the model did not learn to end (crs.data.Encoder.target)
                log.info("%s: %d of %d outputs reached the length cap of %d tokens without ending", task, n,
                         sum(f.task == task for f in feats), caps[task])
        return out

    def user_vectors(self, feats: Sequence[Features]) -> tuple[np.ndarray, list[dict[int, float]]]:
        """User representations (N, item_dim) of recommendation features, and per sample the
        behaviour-pointer bonus {catalog row: bonus} of the items the user browsed."""
        vecs, extras = [], []
        self.model.eval()
        for s in range(0, len(feats), self.batch_size):
            batch = collate(list(feats[s:s + self.batch_size]), self.encoder.pad, self.device)
            with torch.no_grad(), autocast(self.device):
                u = self.model.user(batch["input_ids"], batch["attention_mask"], batch["behaviours"],
                                    batch["llm_rows"] if self.config.use_llm else None)
                bonus = self.model.recommender.pointer(batch["behaviours"]).float().cpu().numpy()
            vecs.append(u.float().cpu().numpy())
            rows = batch["behaviours"].cpu().numpy()
            for r, b in zip(rows, bonus):
                extras.append({int(x): float(y) for x, y in zip(r, b) if x >= 0 and y != 0.0})
        users = np.concatenate(vecs) if vecs else np.zeros((0, self.config.item_dim), np.float32)
        return users, extras

    def _item_values_prepared(self, item_id: str) -> ItemValues:
        prepared = self._prepared_values.get(item_id)
        if prepared is None:
            prepared = self._prepared_values[item_id] = ItemValues(self.item_values.get(item_id, ()))
        return prepared

    def needs_bonus(self, needs: Sequence[tuple[str, str]], rows: Sequence[int]) -> dict[int, float]:
        """{catalog row: the learned needs-match bonus} of `rows` (empty without the needs matcher). The
        last few results are kept: a turn ranks the same category with the same needs more than once
        (graph 2's recommendation, then the replay's catalog ranking: half the rows in a profile)."""
        if "match" not in self.model.heads or not needs or not len(rows):
            return {}
        key = (tuple(needs), tuple(int(r) for r in rows))
        with self._bonus_lock:
            cached = self._recent_bonus.get(key)
        if cached is not None:
            return dict(cached)
        feats = torch.tensor([match_features(needs, self._item_values_prepared(self.catalog.ids[r])) for r in rows])
        with torch.no_grad():
            bonus = self.model.heads["match"](feats.to(self.device)).float().cpu().tolist()
        out = {int(r): b for r, b in zip(rows, bonus) if b != 0.0}
        with self._bonus_lock:
            self._recent_bonus[key] = out
            while len(self._recent_bonus) > RECENT_BONUS:
                self._recent_bonus.pop(next(iter(self._recent_bonus)))
        return dict(out)

    def rank_candidates(self, feats: Sequence[Features], users: np.ndarray, extras: list[dict[int, float]],
                        candidates: Sequence[Sequence[int]] | None = None, rerank: bool = True):
        """Each sample's candidates ranked: the index's score, the pointer bonus and the needs bonus,
        then the re-ranker's order when the model has one and `rerank` (a candidate list, not a search
        of a whole category: the re-ranker was fitted on candidate lists)."""
        cands = [f.candidates for f in feats] if candidates is None else candidates
        merged = [_merge(e, self.needs_bonus(f.needs, c)) for f, e, c in zip(feats, extras, cands)]
        ranked = self.index.rank_candidates(users, cands, extra=merged)
        if not rerank:
            return ranked
        return [self._reranked(f, rows, scores) for f, (rows, scores) in zip(feats, ranked)]

    def _reranked(self, f: Features, rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One sample's rows and scores in the re-ranker's order (as they are without a re-ranker)."""
        if self.reranker is None or len(rows) == 0:
            return rows, scores
        ids = [self.catalog.ids[r] for r in rows]
        browsed = [self.catalog.ids[r] for r in f.behaviours if r >= 0]
        new = np.asarray(self.reranker.scores(scores, ids, self.item_values, f.needs, f.shown, browsed), np.float32)
        order = np.argsort(-new, kind="stable")
        return np.asarray(rows)[order], new[order]

    def search_catalog(self, feats: Sequence[Features], users: np.ndarray, extras: list[dict[int, float]], k: int,
                       exclude: list[list[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The top k of the whole catalog per sample; with the needs matcher, the top k + MATCH_RERANK
        of the index re-ranked with the needs bonus. (Not with the candidate re-ranker: fitted on the
        candidate lists of one seller, it trusts popularity over the model's score, and on the catalog
        that lowered hit@50 from 0.69 to 0.60 on data/small.)"""
        if "match" not in self.model.heads:
            return self.index.search(users, k, exclude=exclude, extra=extras)
        rows, scores = self.index.search(users, k + MATCH_RERANK, exclude=exclude, extra=extras)
        out_rows = np.full((len(feats), k), -1, dtype=np.int64)
        out_scores = np.full((len(feats), k), -np.inf, dtype=np.float32)
        for j, f in enumerate(feats):
            found = [int(r) for r in rows[j] if r >= 0]
            bonus = self.needs_bonus(f.needs, found)
            rescored = sorted(((float(s) + bonus.get(r, 0.0), r) for r, s in zip(found, scores[j])), reverse=True)[:k]
            out_rows[j, : len(rescored)] = [r for _, r in rescored]
            out_scores[j, : len(rescored)] = [s for s, _ in rescored]
        return out_rows, out_scores

    def predict_examples(self, examples: Sequence[CRSExample], catalog_k: int = 50) -> list[dict]:
        """Prediction rows (uneed.tasks.write_predictions format) for CRS examples of any tasks.

        understand/elicit/respond: the generated text; recommend: the candidate ids ranked best first
        ('scores' beside them) and 'catalog_top' the ids of the `catalog_k` best items of the catalog.
        """
        feats = self.encoder.encode_all(examples, "predict")
        rows: list[dict | None] = [None] * len(feats)
        for task in GEN_TASKS:
            idx = [i for i, f in enumerate(feats) if f.task == task]
            if not idx:
                continue
            texts = self.answer_features([feats[i] for i in idx])
            for i, t in zip(idx, texts):
                rows[i] = {"key": feats[i].key, "task": task, "prediction": t}
        idx = [i for i, f in enumerate(feats) if f.task == "recommend"]
        if idx:
            rec = [feats[i] for i in idx]
            users, extras = self.user_vectors(rec)
            ranked = self.rank_candidates(rec, users, extras)
            top_rows, _ = self.search_catalog(rec, users, extras, catalog_k) if catalog_k else (None, None)
            for j, i in enumerate(idx):
                cand_rows, scores = ranked[j]
                row = {"key": feats[i].key, "task": "recommend",
                       "prediction": [self.catalog.ids[r] for r in cand_rows],
                       "scores": [round(float(s), 5) for s in scores]}
                if top_rows is not None:
                    row["catalog_top"] = [self.catalog.ids[r] for r in top_rows[j] if r >= 0]
                rows[i] = row
        return [r for r in rows if r is not None]

    # ------------------------------------------------------------------------------------ the API
    def _sample(self, task: str, context: Sequence[Utterance], current: Utterance | None = None, domain: str = "",
                **kw) -> TaskSample:
        return TaskSample(task=task, split="api", domain=domain or "", sid="", seq_no=0, user_id="", seller_id="",
                          context=list(context), current=current or Utterance(USER, "", ""), target=kw.pop("target", ""),
                          **kw)

    def _check(self, contexts, *others) -> None:
        if isinstance(contexts, (str, Utterance)):
            raise PresalesError("contexts must be a list of contexts (each a list of Utterance)")
        for name, other in others:
            if other is not None and len(other) != len(contexts):
                raise PresalesError(f"{name} has {len(other)} entries for {len(contexts)} contexts")
        for c in contexts:
            for u in c:
                if not isinstance(u, Utterance):
                    raise PresalesError(f"a context holds {type(u).__name__}, expected uneed.tasks.Utterance")

    def _llm(self, llm_predictions, i):
        return llm_predictions[i] if (llm_predictions is not None and self.config.use_llm) else None

    def understand(self, contexts: Sequence[Sequence[Utterance]], llm_predictions: Sequence | None = None,
                   domains: Sequence[str] | None = None) -> list[list[str]]:
        """Tags ('key：value') of the LAST utterance of each context, read with the earlier turns.
        `domains[i]` (e.g. 美妆行业) limits the extraction head to that domain's keys."""
        self._check(contexts, ("llm_predictions", llm_predictions), ("domains", domains))
        examples = []
        for i, ctx in enumerate(contexts):
            if not ctx:
                raise PresalesError("understand needs a non-empty context: its last utterance is the one to understand")
            s = self._sample("understand", ctx[:-1], ctx[-1], domain=domains[i] if domains else "", target=[])
            examples.append(crs_example(s, self.items, self._llm(llm_predictions, i)))
        return [parse_tags(t)[0] for t in self.answer_features(self.encoder.encode_all(examples, "understand"))]

    def elicit(self, contexts: Sequence[Sequence[Utterance]], needs: Sequence | None = None,
               llm_predictions: Sequence | None = None, domains: Sequence[str] | None = None) -> list[list[str]]:
        """Attribute keys to ask next (the classification head never names a key stated or asked already,
        and keeps to `domains[i]`'s keys)."""
        self._check(contexts, ("needs", needs), ("llm_predictions", llm_predictions), ("domains", domains))
        examples = []
        for i, ctx in enumerate(contexts):
            given = _pairs(needs[i]) if needs else []
            s = self._sample("elicit", _with_needs(ctx, needs[i] if needs else None), target=[],
                             domain=domains[i] if domains else "", needs=given or _context_needs(ctx))
            examples.append(crs_example(s, self.items, self._llm(llm_predictions, i)))
        return [parse_keys(t)[0] for t in self.answer_features(self.encoder.encode_all(examples, "elicit"))]

    def respond(self, contexts: Sequence[Sequence[Utterance]], attributes: Sequence | None = None,
                items: Sequence | None = None, llm_predictions: Sequence | None = None) -> list[str]:
        """A staff reply that asks about `attributes` ('key：value' / 'key：' tags) and/or presents `items`."""
        self._check(contexts, ("attributes", attributes), ("items", items), ("llm_predictions", llm_predictions))
        examples = []
        for i, ctx in enumerate(contexts):
            s = self._sample("respond", ctx, target="", asked=_as_tags(attributes[i] if attributes else []),
                             items=list(items[i]) if items else [])
            examples.append(crs_example(s, self.items, self._llm(llm_predictions, i), self.config.reply_layout))
        return self.answer_features(self.encoder.encode_all(examples, "respond"))

    def _known(self, ids, what: str) -> list[str]:
        ids = [str(i) for i in (ids or [])]
        unknown = [i for i in ids if i not in self.catalog]
        if unknown:
            log.warning("%d unknown item id(s) among %s dropped: %s", len(unknown), what, ", ".join(unknown[:5]))
        return [i for i in ids if i in self.catalog]

    def recommend(self, contexts: Sequence[Sequence[Utterance]], needs: Sequence | None = None,
                  behaviours: Sequence | None = None, candidates: Sequence | None = None, k: int | None = 10,
                  exclude: Sequence | None = None, llm_items: Sequence | None = None,
                  domains: Sequence | None = None, sellers: Sequence | None = None,
                  leaves: Sequence | None = None) -> list[list[ScoredItem]]:
        """Items for each context, best first, with scores (u . e_i + c_i).

        domains[i] (e.g. 手机行业): only items of that domain are returned, from the candidates or the
        catalog (an exact ranking of the domain's items); sellers[i]: over the catalog, that seller's items
        of the domain come first, then the domain's others, as the release builds its candidates. Without
        item groups (a model saved before they were) domains are ignored with a warning. leaves[i]: the
        kinds of item the shopper named (their 品类 values, e.g. ['热水器']): when one names a leaf category
        of the catalog (after `set_item_leaves`; equal, or one contains the other, two characters or more),
        items of other leaf categories are left out; items without a leaf category stay.

        candidates[i] given: rank those items (top k of them; k=None: all); otherwise search the whole
        catalog for the top k (k=None: 10). exclude[i]: items never returned (already rejected).
        behaviours[i]: item ids the user browsed, latest last. llm_items[i]: the item an LLM picked
        (used only by a CRS trained with LLM inputs).
        """
        self._check(contexts, ("needs", needs), ("behaviours", behaviours), ("candidates", candidates),
                    ("exclude", exclude), ("llm_items", llm_items), ("domains", domains), ("sellers", sellers),
                    ("leaves", leaves))
        allowed = self._allowed_rows(domains, len(contexts))
        if leaves is not None:
            allowed = [self._within_leaves(a, names) for a, names in zip(allowed, leaves)]
        examples = []
        for i, ctx in enumerate(contexts):
            llm_item = llm_items[i] if llm_items is not None and self.config.use_llm else None
            if llm_item is not None and llm_item not in self.catalog:
                log.warning("unknown LLM item %s ignored", llm_item)
                llm_item = None
            given = _pairs(needs[i]) if needs else []
            s = self._sample("recommend", _with_needs(ctx, needs[i] if needs else None), target="",
                             needs=given or _context_needs(ctx),
                             behaviours=self._known(behaviours[i] if behaviours else [], "behaviours"),
                             candidates=self._known(candidates[i], "candidates") if candidates else [])
            examples.append(crs_example(s, self.items, [llm_item] if llm_item else None))
        feats = self.encoder.encode_all(examples, "recommend")
        users, extras = self.user_vectors(feats)
        excl = [set(self.catalog.rows(self._known(exclude[i], "exclude"))) if exclude else set()
                for i in range(len(contexts))]
        results: list[list[ScoredItem]] = []
        if candidates is not None:
            cand_rows = [[r for r in f.candidates if r not in excl[i] and (allowed[i] is None or r in allowed[i])]
                         for i, f in enumerate(feats)]
            for rows, scores in self.rank_candidates(feats, users, extras, cand_rows):
                top = len(rows) if k is None else k
                results.append([ScoredItem(self.catalog.ids[r], float(s)) for r, s in zip(rows[:top], scores[:top])])
            return results
        top_k = 10 if k is None else k
        if any(a is not None for a in allowed):
            for j in range(len(contexts)):
                results.append(self._search_within(feats[j], users[j:j + 1], extras[j], allowed[j], excl[j], top_k,
                                                   sellers[j] if sellers else None))
            return results
        rows, scores = self.search_catalog(feats, users, extras, top_k,
                                           exclude=[sorted(e) for e in excl] if exclude else None)
        for j in range(len(contexts)):
            results.append([ScoredItem(self.catalog.ids[r], float(s)) for r, s in zip(rows[j], scores[j]) if r >= 0])
        return results

    def _allowed_rows(self, domains: Sequence | None, n: int) -> list[set[int] | None]:
        """Per context the catalog rows it may recommend (None: all)."""
        if domains is None:
            return [None] * n
        if any(domains) and not self._domain_rows:
            log.warning("this CRS has no item groups (item_groups.json): recommendations are not filtered by "
                        "category")
            return [None] * len(domains)
        return [self._domain_rows.get(d, set()) if d else None for d in domains]

    def _within_leaves(self, allowed: set[int] | None, names: Sequence[str] | None) -> set[int] | None:
        """`allowed` less the rows of other leaf categories than those `names` name (unchanged when none is
        named). Items whose knowledge has no leaf category stay: in the embedded corpus that is 6,138 of
        6,900 items, and most of the staff's items (kept to the named ones only, graph 1's catalog hit@50 in
        the replay fell from 0.740 to 0.644)."""
        wanted = [n for n in (names or []) if n]
        named = {leaf for leaf in self._leaf_rows
                 if any(n == leaf or (min(len(n), len(leaf)) >= 2 and (n in leaf or leaf in n)) for n in wanted)}
        if not named:
            return allowed
        other = self._rows_with_leaf - set().union(*(self._leaf_rows[leaf] for leaf in named))
        base = allowed if allowed is not None else set(range(len(self.catalog)))
        return base - other

    def _search_within(self, feat: Features, user: np.ndarray, extra: dict, allowed: set[int] | None,
                       excluded: set[int], k: int, seller: str | None) -> list[ScoredItem]:
        """The top k of the allowed rows (exact scores, with the needs bonus), the seller's rows first."""
        if allowed is None:
            rows, scores = self.search_catalog([feat], user, [extra], k, exclude=[sorted(excluded)])
            return [ScoredItem(self.catalog.ids[r], float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]
        pool = allowed - excluded
        own = pool & self._seller_rows.get(seller, set()) if seller else set()
        out: list[ScoredItem] = []
        for group in (own, pool - own):
            if len(out) >= k or not group:
                continue
            [(rows, scores)] = self.rank_candidates([feat], user, [extra], [sorted(group)], rerank=False)
            out += [ScoredItem(self.catalog.ids[r], float(s)) for r, s in zip(rows[: k - len(out)], scores)]
        return out


RECENT_BONUS = 8  # needs_bonus results a CRS keeps


def _merge(a: dict[int, float], b: dict[int, float]) -> dict[int, float]:
    out = dict(a)
    for r, v in b.items():
        out[r] = out.get(r, 0.0) + v
    return out

