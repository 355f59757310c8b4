"""Train the unified CRS of section 3.3 (and, with --llm-predictions, the LLM-assisted CRS of 3.5).

    presales train crs --data DIR --out RUN [--config FILE] [--llm-predictions FILE] [--resume]
    python -m training.crs --data data/small --out runs/crs

Two stages: stage 1 (`rec_epochs`) warms the encoder and the recommender up on recommendation
(L = L_R) and, with the classification heads of crs.heads, on the tasks they answer; stage 2
(`epochs`) trains all four tasks (L = L_R + L_theta; batches hold one task each). An optional stage 3
(`reply_epochs`) trains the decoder alone on the replies from stage 2's best model (`polish_replies`).
Every epoch: train losses and validation metrics go to RUN/log.jsonl, the state to RUN/checkpoint/
(--resume continues from it), and the best model by `valid_score` to RUN/best/. The validation
score is the mean of understanding F1, elicitation F1, response BLEU-1 (greedy decoding of at most
`valid_samples` samples each) and recommendation MRR@5 on the candidates; in stage 1 (if there is no stage 2) it
is MRR@5 alone. At the end the best model predicts valid, test (and train) into
RUN/predictions_{split}.jsonl and the test metrics of the four tasks, overall and per category,
go to RUN/test_metrics.json.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from crs.catalog import Catalog, initial_item_embeddings, popularity
from crs.config import CRSConfig, preset
from crs.data import Encoder, Features, batches, collate
from crs.evaluate import CONTEXTS, headline, own_context, predict_samples, score_predictions, split_examples
from crs.heads import KeySpace, touching_span_log_prob
from crs.inference import CRS, save_item_groups, save_item_texts
from crs.model import UnifiedCRS, build_tokenizer
from crs.rerank import Reranker, design_rows
from training import distributed
from training.runtime import RunDir, autocast, pick_device, replace_dir, set_seed, staging_dir
from uneed.arguments import parse_args
from uneed.candidates import popularity_counts
from uneed.errors import ModelLoadError, PresalesError
from uneed.logs import progress_bar, setup_logging
from uneed.metrics import evaluate, rank_of
from uneed.replies import item_values
from uneed.tasks import build_samples, crs_example, fold_of, parse_cross_fit, read_predictions, write_predictions
from uneed.vocab import unknown_rate

log = logging.getLogger("training.crs")
# What the best checkpoint is chosen by (their mean, with the recommendation MRR@5): each generation
# task's headline metric on `valid_samples` decoded samples. Without the responses, a model whose
# replies collapsed could win on understanding alone.
VALID_METRICS = {"understand": "f1", "elicit": "f1", "respond": "bleu-1"}


@dataclass
class CRSTrainArgs:
    """Train the unified CRS (BART + item-embedding recommender) on a U-NEED-format directory."""

    data: str = field(metadata={"help": "U-NEED-format directory (train/valid/test_dialogue.json, item_kg.txt, "
                                        "user_action.txt)"})
    out: str = field(metadata={"help": "run directory (config, log, checkpoints, metrics, predictions)"})
    preset: str = field(default="default", metadata={"help": "model size preset: default | tiny"})
    base_model: str | None = field(default=None, metadata={"help": "local BART/CPT checkpoint directory instead of the "
                                                                   "embedded BART (uses its own tokenizer)"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow the base model's own modeling code (CPT)"})
    llm_predictions: str | None = field(default=None, metadata={"help": "LLM prediction JSONL (all splits): [LLM] "
                                                                        "segments and the LLM item (section 3.5)"})
    seed: int = field(default=42, metadata={"help": "random seed"})
    rec_epochs: int = field(default=4, metadata={"help": "stage 1 epochs: recommendation only (L_R)"})
    epochs: int = field(default=5, metadata={"help": "stage 2 epochs: all four tasks (L_R + L_theta)"})
    batch_size: int = field(default=32, metadata={"help": "batch size of generation tasks"})
    rec_batch_size: int = field(default=32, metadata={"help": "batch size of recommendation"})
    lr: float = field(default=3e-3, metadata={"help": "peak learning rate of the sequence-to-sequence model"})
    rec_lr: float = field(default=3e-3, metadata={"help": "learning rate of the recommendation head"})
    item_lr: float | None = field(default=3e-5, metadata={"help": "learning rate of the item embeddings and biases "
                                                                   "(None: rec_lr); small, so the SVD start is not "
                                                                   "overwritten by memorising the train items"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases/norms/items)"})
    warmup_ratio: float = field(default=0.05, metadata={"help": "linear warm-up share of all steps"})
    grad_clip: float = field(default=1.0, metadata={"help": "gradient norm clip"})
    candidate_loss_weight: float = field(default=1.0, metadata={"help": "weight of the cross-entropy over each "
                                                                          "sample's candidates next to L_R (0: off)"})
    max_source_len: int | None = field(default=None, metadata={"help": "source tokens (left-truncated); preset value "
                                                                         "when unset"})
    max_target_len: int | None = field(default=None, metadata={"help": "target tokens; preset value when unset"})
    d_model: int | None = field(default=None, metadata={"help": "override the preset's d_model"})
    encoder_layers: int | None = field(default=None, metadata={"help": "override the preset's encoder layers"})
    decoder_layers: int | None = field(default=None, metadata={"help": "override the preset's decoder layers"})
    item_dim: int | None = field(default=None, metadata={"help": "override the item embedding size"})
    behaviour_encoder: str | None = field(default=None, metadata={"help": "attention | gru | mean | none"})
    item_init: str | None = field(default=None, metadata={"help": "svd | random"})
    index: str | None = field(default=None, metadata={"help": "FAISS index at inference: flat | ivf | hnsw"})
    index_device: str | None = field(default=None, metadata={"help": "where FAISS searches: auto (the GPU when "
                                                                     "faiss-gpu sees one) | cpu | gpu"})
    # every other field of the model (crs.config.CRSConfig), so each ablation runs from a config file or flags
    attention_heads: int | None = field(default=None, metadata={"help": "override the preset's attention heads"})
    ffn_dim: int | None = field(default=None, metadata={"help": "override the preset's feed-forward size"})
    dropout: float | None = field(default=None, metadata={"help": "override the preset's dropout"})
    max_position: int | None = field(default=None, metadata={"help": "override the preset's position embeddings"})
    num_beams: int | None = field(default=None, metadata={"help": "beams at decoding (works only without the "
                                                                   "copy head)"})
    copy_mechanism: bool | None = field(default=None, metadata={"help": "the copy head (false: plain BART output)"})
    max_behaviours: int | None = field(default=None, metadata={"help": "behaviours in the user representation"})
    cooccurrence_weight: float | None = field(default=None, metadata={"help": "weight of user co-occurrence in the "
                                                                              "SVD item start"})
    behaviour_pointer: bool | None = field(default=None, metadata={"help": "bonus for items the user browsed"})
    ivf_nlist: int | None = field(default=None, metadata={"help": "IVF cells (0: about 4*sqrt(N))"})
    ivf_nprobe: int | None = field(default=None, metadata={"help": "IVF cells searched"})
    hnsw_m: int | None = field(default=None, metadata={"help": "HNSW links per node"})
    hnsw_ef_search: int | None = field(default=None, metadata={"help": "HNSW search breadth"})
    no_repeat_ngram: int | None = field(default=None, metadata={"help": "a decoded reply never repeats an n-gram "
                                                                          "(0: off)"})
    understand_head: str | None = field(default=None, metadata={"help": "understanding by the decoder (generate, the "
                                                                       "paper's UniMIND) or by BIO tagging of the "
                                                                       "utterance on the encoder (extract)"})
    elicit_head: str | None = field(default=None, metadata={"help": "elicitation by the decoder (generate) or by a "
                                                                   "choice among the domain's keys (classify)"})
    needs_match: bool | None = field(default=None, metadata={"help": "add a learned bonus for candidates whose knowledge "
                                                                "matches the user's needs"})
    rerank: bool | None = field(default=None, metadata={"help": "order the candidates with a linear re-ranker on the "
                                                           "model's score and candidate features, fitted on the valid "
                                                           "split after training (crs.rerank)"})
    respond_facts: bool | None = field(default=None, metadata={"help": "a reply's items show all their knowledge in its "
                                                                  "source (not the first two facts)"})
    respond_plan_first: bool | None = field(default=None, metadata={"help": "a reply's plan (the tags it asks, the items "
                                                                       "it presents, the prompt) opens its source, "
                                                                       "kept whole; the history follows"})
    respond_context_turns: int | None = field(default=None, metadata={"help": "a reply's source shows only the latest "
                                                                         "turns (0: all)"})
    repeat_respond: int = field(default=1, metadata={"help": "each reply appears N times per stage-2 (and stage-3) "
                                                            "epoch (the decoder needs more steps than the heads)"})
    reply_epochs: int = field(default=0, metadata={"help": "stage 3: epochs in which the decoder and the copy head alone "
                                                          "go on learning the replies from the best model, the "
                                                          "encoder, its heads and the recommender frozen; its last "
                                                          "epoch is kept (one process)"})
    reply_lr: float = field(default=1e-3, metadata={"help": "stage 3's starting learning rate (decays linearly to 0)"})
    faithful_replies: bool = field(default=True, metadata={"help": "train on the replies without their clauses that "
                                                                  "state a value untrue of their items, or any value "
                                                                  "where their items' knowledge gives none "
                                                                  "(uneed.replies.faithful_targets)"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda"})
    num_threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch's default)"})
    resume: bool = field(default=False, metadata={"help": "continue from RUN/checkpoint"})
    max_minutes: float = field(default=0.0, metadata={"help": "start no epoch that would end after this many minutes "
                                                              "of training (judged by the last epoch; 0: no limit)"})
    overwrite: bool = field(default=False, metadata={"help": "replace a finished run at --out (kept until the new "
                                                             "one has finished)"})
    max_train_samples: int | None = field(default=None, metadata={"help": "cap train samples per task (smoke runs)"})
    valid_samples: int = field(default=150, metadata={"help": "validation samples per generation task decoded "
                                                              "each epoch"})
    predict_splits: list[str] = field(default_factory=lambda: ["valid", "test", "train"],
                                      metadata={"help": "splits the best model predicts at the end"})
    max_predict_samples: int | None = field(default=None, metadata={"help": "cap predicted samples per task and "
                                                                            "split, the first N"})
    fit_samples: int | None = field(default=None, metadata={"help": "the valueless-key threshold and the re-ranker "
                                                                    "are fitted on the first N valid samples of their "
                                                                    "task (default: all)"})
    cross_fit: str = field(default="", metadata={"help": "i/K: train on the train dialogues outside fold i of K and "
                                                       "predict only fold i of the train split (out-of-fold partner "
                                                       "predictions, scripts/cross_fit.sh)"})
    context: str = field(default="own", metadata={"help": "what earlier turns carry in the final predictions: own "
                                                         "(the CRS's own reading of them) | gold (their annotations)"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})
    allow_no_valid: bool = field(default=False, metadata={"help": "train without a validation split (the last epoch "
                                                                  "becomes best/)"})
    allow_no_item_kg: bool = field(default=False, metadata={"help": "train without item knowledge (empty "
                                                                    "item_kg.txt)"})
    max_utterance_chars: int = field(default=2000, metadata={"help": "longer utterances are cut at load time"})


# ------------------------------------------------------------------------------------ helpers
VALUELESS_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)  # fit_valueless_threshold picks among these on valid


def describe_row(row: dict) -> str:
    """An epoch's log row (but its epoch and stage) as one line: 'train_loss=1.2345, ..., best=True'."""
    return ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                     if k not in ("epoch", "stage"))


def loss_name(model: UnifiedCRS, task: str) -> str:
    """How a task's loss is logged: recommend, generate (the decoder's L_theta), extract or classify (a head)."""
    if task == "recommend":
        return "recommend"
    if task in model.heads:
        return "extract" if task == "understand" else "classify"
    return "generate"


def loss_count(kind: str, feats: list[Features]) -> int:
    """What a batch's loss (of `loss_name` kind) is the mean over, so that data-parallel shards weigh as one
    batch: the target tokens of the decoder (L_theta), the tagged tokens of the extraction head (its
    valueless-key term averages over keys: nearly, not exactly), else the samples."""
    if kind == "generate":
        return sum(len(f.labels or ()) for f in feats)
    if kind == "extract":
        return sum(sum(label != -100 for label in (f.tag_labels or ())) for f in feats)
    return len(feats)


def model_config(args: CRSTrainArgs) -> CRSConfig:
    """The preset, with every CRSConfig field the arguments set (None: the preset's value)."""
    names = {f.name for f in dataclasses.fields(CRSConfig)} - {"use_llm"}
    overrides = {n: getattr(args, n) for n in names if hasattr(args, n)}
    return preset(args.preset, **overrides, use_llm=bool(args.llm_predictions))


def param_groups(model: UnifiedCRS, args: CRSTrainArgs) -> list[dict]:
    decay, no_decay, rec, items = [], [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name in ("recommender.item_emb", "recommender.item_bias"):
            items.append(p)
        elif name.startswith("recommender."):
            rec.append(p)
        elif p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "lr": args.lr, "weight_decay": args.weight_decay},
            {"params": no_decay, "lr": args.lr, "weight_decay": 0.0},
            {"params": rec, "lr": args.rec_lr, "weight_decay": 0.0},
            {"params": items, "lr": args.rec_lr if args.item_lr is None else args.item_lr, "weight_decay": 0.0}]


def lr_lambda(total: int, warmup: int):
    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.05, 1.0 - (step - warmup) / max(1, total - warmup))

    return fn


def stage_tasks(model: UnifiedCRS, stage: int) -> set[str]:
    """What a stage trains: stage 1 recommendation and the tasks of the encoder's heads (encoder-only
    and cheap, they learn from more epochs), stage 2 everything, stage 3 the replies."""
    if stage == 1:
        return {"recommend", *model.heads.keys()} - {"match"}
    return {"respond"} if stage == 3 else {"understand", "elicit", "recommend", "respond"}


# What stage 3 trains: the decoder and the copy head. The shared token embeddings (also the encoder's input and
# the output projection) stay as stage 2 left them, so understanding, elicitation and recommendation do too.
REPLY_PARAMS = ("seq2seq.model.decoder.", "copy.")


def epoch_feats(feats: list[Features], tasks: set[str], repeat_respond: int) -> list[Features]:
    """The samples an epoch trains on: those of its tasks, each reply `repeat_respond` times."""
    return [f for f in feats if f.task in tasks for _ in range(repeat_respond if f.task == "respond" else 1)]


def count_batches(feats: list[Features], args: CRSTrainArgs, tasks: set[str]) -> int:
    by_task: dict[str, int] = {}
    for f in epoch_feats(feats, tasks, args.repeat_respond):
        by_task[f.task] = by_task.get(f.task, 0) + 1
    return sum(math.ceil(c / (args.rec_batch_size if t == "recommend" else args.batch_size))
               for t, c in by_task.items())


class Trainer:
    def __init__(self, args: CRSTrainArgs):
        self.args = args
        self.run = RunDir.staged(args.out, overwrite=args.overwrite, resume=args.resume)
        if args.num_threads > 0:
            torch.set_num_threads(args.num_threads)
        self.device = pick_device(args.device)

    # -------------------------------------------------------------------------------- setup
    def load_data(self):
        from uneed.corpus import ALLOW_NO_ITEM_KG, ALLOW_NO_VALID, load_corpus

        args = self.args
        allow = [name for name, on in ((ALLOW_NO_VALID, args.allow_no_valid), (ALLOW_NO_ITEM_KG, args.allow_no_item_kg))
                 if on]
        self.corpus = load_corpus(args.data, allow=allow, max_utterance_chars=args.max_utterance_chars)
        # CorpusError (a PresalesError) names what is wrong
        if not self.corpus.split("train"):
            raise PresalesError(f"{args.data}: the train split has no dialogues")
        if not self.corpus.split("valid") and not args.allow_no_valid:  # e.g. every valid dialogue skipped
            raise PresalesError(f"{args.data}: the valid split has no dialogues (pass --allow-no-valid to keep the "
                                "last epoch instead of the best)")
        self.llm = read_predictions(args.llm_predictions) if args.llm_predictions else None
        layout = model_config(args).reply_layout
        self.cross_fit = parse_cross_fit(args.cross_fit)
        if self.cross_fit and "train" not in args.predict_splits:
            raise PresalesError("--cross-fit: add train to --predict-splits (the held-out fold is what it is for)")
        self.train_samples, self.train_examples = split_examples(self.corpus, "train", self.llm,
                                                                 max_per_task=args.max_train_samples,
                                                                 reply=layout, select=self._in_training,
                                                                 faithful_replies=args.faithful_replies)
        if self.cross_fit:
            log.info("cross-fitting fold %d of %d: training on %d train samples", *self.cross_fit,
                     len(self.train_samples))
        self.valid_samples, self.valid_examples = split_examples(self.corpus, "valid", self.llm, reply=layout)
        if model_config(args).rerank and not any(s.task == "recommend" for s in self.valid_samples):
            if not args.allow_no_valid:
                raise PresalesError(f"{args.data}: the re-ranker is fitted on the valid split's recommendations and "
                                    "it has none (pass --rerank false)")
            log.warning("no valid recommendations (--allow-no-valid): this model gets no candidate re-ranker")
            args.rerank = False
        if not self.train_examples:
            raise PresalesError(f"{args.data}: no training samples could be built from the train split")
        if self.llm is not None:
            hit = sum(ex.key in self.llm for ex in self.train_examples)
            log.info("LLM predictions for %d of %d train samples", hit, len(self.train_examples))
            if hit == 0:
                raise PresalesError(f"{args.llm_predictions}: none of its keys match a train sample of {args.data}")

    def _in_training(self, sample) -> bool:
        return self.cross_fit is None or fold_of(sample.sid, self.cross_fit[1]) != self.cross_fit[0]

    def build_model(self) -> None:
        args = self.args
        config = model_config(args)
        texts = [t for ex in self.train_examples for t in (ex.prefix, ex.source, ex.target)]
        texts += [item.text() for item in self.corpus.items.values()]
        self.tok = build_tokenizer(texts, config.base_model)
        if config.base_model is None:
            rate = unknown_rate(self.tok, [ex.prefix + ex.source + ex.target for ex in self.valid_examples[:2000]])
            log.info("tokenizer: %d tokens, %.3f%% unknown characters on valid", len(self.tok), 100 * rate)
        self.catalog = Catalog.from_corpus(self.corpus)
        init = None
        if config.item_init == "svd":
            init = torch.from_numpy(initial_item_embeddings(self.catalog, self.corpus.items, self.corpus.behaviours,
                                                            config.item_dim, config.cooccurrence_weight, args.seed))
        bias = torch.from_numpy(popularity(self.catalog, [ex.gold_item for ex in self.train_examples
                                                          if ex.task == "recommend"]))
        keys = KeySpace.fit(self.train_examples) if config.head_tasks else None
        if keys is not None:
            log.info("attribute keys of the heads: %d over %d domains", len(keys), len(keys.domain_keys))
        self.model = UnifiedCRS.build(config, self.tok, self.catalog, init, bias, args.trust_remote_code, keys)

    def features(self) -> None:
        c = self.model.config
        self.item_values = ({i: sorted(item_values(item)) for i, item in self.corpus.items.items()}
                            if c.needs_match else None)
        self.encoder = Encoder(self.tok, self.catalog, c.max_source_len, c.max_target_len, c.max_behaviours,
                               keys=self.model.keys, head_tasks=c.head_tasks, item_values=self.item_values)
        self.train_feats = self.encoder.encode_all(self.train_examples, "train")
        self.valid_feats = self.encoder.encode_all(self.valid_examples, "valid")
        if c.understand_head == "extract":
            c.touching_span_log_prob = touching_span_log_prob(f.tag_labels for f in self.train_feats
                                                              if f.task == "understand")
            log.info("extraction: log P(touching spans) %.2f in the train tags", c.touching_span_log_prob)
        n = {t: sum(f.task == t for f in self.train_feats) for t in ("understand", "elicit", "recommend", "respond")}
        log.info("train samples: %s; valid samples: %d; catalog: %d items", n, len(self.valid_feats), len(self.catalog))

    def optimizer(self, total_steps: int) -> None:
        self.opt = torch.optim.AdamW(param_groups(self.model, self.args), betas=(0.9, 0.98), eps=1e-8)
        warmup = int(self.args.warmup_ratio * total_steps)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(total_steps, warmup))

    # -------------------------------------------------------------------------------- checkpoints
    def save_model(self, final: Path) -> None:
        tmp = staging_dir(final)
        self.model.save(tmp, self.tok, self.catalog)
        save_item_texts(tmp, self.corpus.items)
        save_item_groups(tmp, self.corpus)
        replace_dir(tmp, final)

    def save_checkpoint(self, epoch: int) -> None:
        final = self.run.checkpoint
        tmp = staging_dir(final)
        self.model.save(tmp / "model", self.tok, self.catalog)
        save_item_texts(tmp / "model", self.corpus.items)
        save_item_groups(tmp / "model", self.corpus)
        torch.save({"epoch": epoch, "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                    "best_score": self.best_score, "best_epoch": self.best_epoch,
                    "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                            "torch": torch.get_rng_state()}}, tmp / "trainer.pt")
        replace_dir(tmp, final)

    def resume(self) -> int:
        """Load RUN/checkpoint; returns the next epoch."""
        ckpt = self.run.checkpoint
        if not (ckpt / "trainer.pt").is_file():
            raise PresalesError(f"--resume: {ckpt} holds no checkpoint (missing trainer.pt); run without --resume")
        self.model, self.tok, self.catalog = UnifiedCRS.load(ckpt / "model", trust_remote_code=self.args.trust_remote_code)
        if self.model.config.use_llm != bool(self.args.llm_predictions):
            raise PresalesError(f"--resume: the checkpoint was trained {'with' if self.model.config.use_llm else 'without'}"
                                f" --llm-predictions; give the same inputs to resume it")
        try:
            state = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=False)
            self._pending_state = state
        except Exception as exc:
            raise ModelLoadError(f"{ckpt / 'trainer.pt'}: corrupt trainer state ({type(exc).__name__}: {exc})") from None
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        log.info("resuming after epoch %d (best valid_score %.4f at epoch %s)", int(state["epoch"]) + 1, self.best_score,
                 self.best_epoch)
        return int(state["epoch"]) + 1

    # -------------------------------------------------------------------------------- epochs
    def train_epoch(self, epoch: int, stage: int, rng: random.Random) -> dict:
        args = self.args
        feats = epoch_feats(self.train_feats, stage_tasks(self.model, stage), args.repeat_respond)
        rec = [f for f in feats if f.task == "recommend"]
        gen = [f for f in feats if f.task != "recommend"]
        plan = list(batches(rec, args.rec_batch_size, True, rng)) + list(batches(gen, args.batch_size, True, rng))
        rng.shuffle(plan)
        self.model.train()
        sums: dict[str, list] = {}
        dist = distributed.current()
        bar = progress_bar(plan, enabled=args.progress and dist.is_main, desc=f"epoch {epoch + 1} (stage {stage})",
                           leave=False, dynamic_ncols=True)
        for chunk in bar:
            part, real = dist.shard(chunk)  # this process's share of the global batch (all of it in one)
            batch = collate(part, self.encoder.pad, self.device)
            with autocast(self.device):
                task = chunk[0].task
                if task == "recommend":
                    loss = self.model.recommend_loss(batch, args.candidate_loss_weight)
                else:
                    loss = self.model.task_loss(task, batch)
                kind = loss_name(self.model, task)
            self.opt.zero_grad(set_to_none=True)
            loss, value, _ = dist.scale(loss, loss_count(kind, part) if real else 0)  # value: the global batch's
            loss.backward()
            dist.sync_grads(self.model.parameters())
            if args.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), args.grad_clip)
            self.opt.step()
            self.sched.step()
            value = float(value)
            if not math.isfinite(value):
                raise PresalesError(f"training diverged (loss {value}) at epoch {epoch + 1}; lower --lr")
            acc = sums.setdefault(kind, [0.0, 0])
            acc[0] += value * len(chunk)
            acc[1] += len(chunk)
            bar.set_postfix(loss=f"{value:.3f}")
        out = {f"train_loss_{k}": s / n for k, (s, n) in sums.items() if n}
        out["train_loss"] = sum(out.values())  # L_R + L_theta (+ the heads' losses; per-sample means)
        return out

    @torch.no_grad()
    def validate(self, stage: int) -> dict:
        args = self.args
        crs = CRS(self.model, self.tok, self.catalog, self.device, item_values=self.item_values)
        self.model.eval()
        out: dict = {}
        gen = [f for f in self.valid_feats if f.task != "recommend"]
        if gen and stage == 2:
            sums: dict[str, list] = {}
            for chunk in batches(gen, args.batch_size, False):
                batch = collate(chunk, self.encoder.pad, self.device)
                with autocast(self.device):
                    value = float(self.model.task_loss(chunk[0].task, batch))
                acc = sums.setdefault(loss_name(self.model, chunk[0].task), [0.0, 0])
                acc[0] += value * len(chunk)
                acc[1] += len(chunk)
            out.update({f"valid_loss_{k}": s / n for k, (s, n) in sums.items()})
        rec_idx = [i for i, f in enumerate(self.valid_feats) if f.task == "recommend"]
        parts = []
        if rec_idx:
            feats = [self.valid_feats[i] for i in rec_idx]
            users, extras = crs.user_vectors(feats)
            ranked = crs.rank_candidates(feats, users, extras)
            ranks = [rank_of(f.gold, list(r)) for f, (r, _) in zip(feats, ranked)]
            m = evaluate("recommend", ranks, ranks)["all"]
            out.update({f"valid_recommend_{k}": m[k] for k in ("accuracy", "hit@5", "mrr@5")})
            parts.append(m["mrr@5"])
        if stage == 2:
            for task, metric in VALID_METRICS.items():
                pairs = [(s, ex) for s, ex in zip(self.valid_samples, self.valid_examples) if s.task == task]
                pairs = pairs[: args.valid_samples]
                if not pairs:
                    continue
                rows = crs.predict_examples([ex for _, ex in pairs], catalog_k=0)
                value = score_predictions([s for s, _ in pairs], rows)[task]["all"][metric]
                out[f"valid_{task}_{metric}"] = value
                parts.append(value)
        out["valid_score"] = float(np.mean(parts)) if parts else 0.0
        return out

    # -------------------------------------------------------------------------------- main loop
    def fit(self) -> None:
        args = self.args
        set_seed(args.seed)
        self.load_data()
        self.best_score, self.best_epoch = -1.0, None
        start = 0
        self._pending_state = None
        if args.resume:
            start = self.resume()
        else:
            self.build_model()  # into a fresh staging directory: nothing of an older run is kept
        self.run.save_config(args)
        self.model.to(self.device)
        dist = distributed.current()
        dist.broadcast_parameters(self.model)
        self.features()
        total_epochs = args.rec_epochs + args.epochs
        steps = sum(count_batches(self.train_feats, args, stage_tasks(self.model, 1 if e < args.rec_epochs else 2))
                    for e in range(total_epochs))
        self.optimizer(max(1, steps))
        if self._pending_state is not None:
            self.opt.load_state_dict(self._pending_state["optimizer"])
            self.sched.load_state_dict(self._pending_state["scheduler"])
        if start >= total_epochs:
            log.info("all %d epochs already done", total_epochs)
        t_fit = time.time()
        for epoch in range(start, total_epochs):
            last = time.time() - t0 if epoch > start else 0.0  # the last epoch, its validation and saving included
            if args.max_minutes and epoch > start and dist.any_true(time.time() - t_fit + last > args.max_minutes * 60):
                log.warning("--max-minutes %.1f: stopping before epoch %d of %d (resume with --resume)",
                            args.max_minutes, epoch + 1, total_epochs)
                break
            stage = 1 if epoch < args.rec_epochs else 2
            if stage == 2 and epoch == args.rec_epochs:
                self.best_score, self.best_epoch = -1.0, None  # stage-1 models cannot generate yet
            t0 = time.time()
            rng = random.Random(args.seed * 1000 + epoch)
            row = {"epoch": epoch + 1, "stage": stage}
            row.update(self.train_epoch(epoch, stage, rng))
            if not dist.is_main:  # rank 0 validates, logs and saves; the others go on to the next epoch
                continue
            row.update(self.validate(stage))
            row["seconds"] = round(time.time() - t0, 1)
            keep_best = stage == 2 or args.epochs == 0
            latest = not self.valid_examples  # --allow-no-valid: nothing to choose by, the latest epoch is kept
            if latest:
                row.pop("valid_score")
            if keep_best and (latest or row["valid_score"] > self.best_score):
                self.best_score, self.best_epoch = row.get("valid_score", 0.0), epoch + 1
                self.save_model(self.run.best)
                row["best"] = True
            self.run.log(**row)
            log.info("epoch %d (stage %d): %s", epoch + 1, stage, describe_row(row))
            self.save_checkpoint(epoch)
        if not dist.is_main:
            return
        if not self.run.best.is_dir():  # e.g. zero epochs: keep what there is
            self.save_model(self.run.best)
        if args.reply_epochs > 0:
            self.polish_replies(total_epochs)
        self.run.plot_curves(["train_loss_recommend", "train_loss_generate", "valid_loss_generate",
                              "train_loss_extract", "valid_loss_extract", "train_loss_classify", "valid_loss_classify",
                              "valid_recommend_mrr@5", "valid_understand_f1", "valid_elicit_f1",
                              "valid_respond_bleu-1"])

    def polish_replies(self, first_epoch: int) -> None:
        """Stage 3 (`reply_epochs`): from the best model, the decoder and the copy head (REPLY_PARAMS) learn the
        replies alone for a few epochs at a learning rate that decays to 0, everything else frozen; its last
        epoch becomes the best model. Replies need more steps than the heads: given them in stage 2
        (--repeat-respond 3) the questions named their attribute more often but the shared encoder read the
        needs worse. Two such epochs on three trained CRSs: stated values true 0.870 -> 0.888 on average, each
        higher, the other tasks unchanged; the valid BLEU-1 that picks stage 2's best hardly moves (README)."""
        args = self.args
        if any(row.get("stage") == 3 for row in self.run.read_log()):  # --resume after it ran
            log.info("stage 3 ran already")
            return
        self.model.load_state_dict(UnifiedCRS.load(self.run.best, trust_remote_code=args.trust_remote_code)[0]
                                   .state_dict())
        trainable = []
        for name, p in self.model.named_parameters():
            p.requires_grad = name.startswith(REPLY_PARAMS)
            if p.requires_grad:
                trainable.append(p)
        steps = max(1, args.reply_epochs * count_batches(self.train_feats, args, stage_tasks(self.model, 3)))
        self.opt = torch.optim.AdamW(trainable, lr=args.reply_lr, betas=(0.9, 0.98), eps=1e-8,
                                     weight_decay=args.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda step: max(0.0, 1.0 - step / steps))
        for epoch in range(first_epoch, first_epoch + args.reply_epochs):
            t0 = time.time()
            row = {"epoch": epoch + 1, "stage": 3}
            row.update(self.train_epoch(epoch, 3, random.Random(args.seed * 1000 + epoch)))
            row.update(self.validate(2))
            row["seconds"] = round(time.time() - t0, 1)
            self.run.log(**row)
            log.info("epoch %d (stage 3, the decoder alone): %s", epoch + 1, describe_row(row))
        self.best_score, self.best_epoch = row.get("valid_score", self.best_score), first_epoch + args.reply_epochs
        self.save_model(self.run.best)
        for p in self.model.parameters():
            p.requires_grad = True

    def fit_valueless_threshold(self, crs: CRS) -> dict | None:
        """Choose the extraction head's threshold for keys named without a value on the valid split's
        understanding F1 (as the predictions read it, --context), and save it in the best model's config:
        the head's sigmoid is fitted to a rare label, and 0.5 misses most of them."""
        if "understand" not in self.model.heads:
            return None
        samples, _ = split_examples(self.corpus, "valid", self.llm, tasks=["understand"],
                                    max_per_task=self.args.fit_samples)
        if not samples:
            log.warning("no valid understanding samples (--allow-no-valid): the valueless-key threshold stays %.2f",
                        self.model.config.valueless_threshold)
            return None
        f1 = {}
        for threshold in VALUELESS_THRESHOLDS:
            crs.config.valueless_threshold = threshold
            rows = predict_samples(crs, self.corpus, samples, self.llm, context=self.args.context)
            f1[threshold] = score_predictions(samples, rows)["understand"]["all"]["f1"]
        best = max(f1, key=lambda t: (round(f1[t], 6), t == 0.5))  # ties keep the untuned 0.5
        crs.config.valueless_threshold = best  # what the re-ranker's own reading of the needs then uses
        crs.config.save(self.run.best / "crs_config.json")
        log.info("valueless-key threshold %.2f (valid understanding F1 %s)", best,
                 ", ".join(f"{t:.2f}: {v:.4f}" for t, v in f1.items()))
        return {"threshold": best, "valid_f1": {str(t): round(v, 4) for t, v in f1.items()}}

    def fit_reranker(self, crs: CRS) -> dict | None:
        """Fit the candidate re-ranker (crs.rerank) on the valid split's recommendations, the best model's
        scores among its features, and save it beside that model. The needs it reads are those the
        predictions read (--context own: the CRS's own understanding of the dialogue; fitted on the
        annotated needs instead, test accuracy on data/small was 0.300 instead of 0.322). Its popularity
        counts only the samples the model trained on (a cross-fitting fold's held-out dialogues stay out)."""
        if not self.model.config.rerank:
            return None
        samples, examples = split_examples(self.corpus, "valid", self.llm, tasks=["recommend"],
                                           max_per_task=self.args.fit_samples)
        if self.args.context == "own":
            samples, _ = own_context(crs, self.corpus, samples, self.llm)
            llm = self.llm or {}
            examples = [crs_example(s, self.corpus.items, llm.get(s.key), crs.config.reply_layout) for s in samples]
        feats = crs.encoder.encode_all(examples, "re-ranker")
        users, extras = crs.user_vectors(feats)
        # as the popularity baseline counts (every train recommendation), less a held-out cross-fitting fold
        popularity = popularity_counts([s for s in build_samples(self.corpus, "train", ["recommend"])
                                        if self._in_training(s)], self.corpus.behaviours)
        rows, gold = [], []
        for s, f, (ranked, scores) in zip(samples, feats, crs.rank_candidates(feats, users, extras)):
            ids = [crs.catalog.ids[r] for r in ranked]
            if s.target not in ids:
                continue
            browsed = [crs.catalog.ids[r] for r in f.behaviours if r >= 0]
            rows.append(design_rows(scores, ids, crs.item_values, f.needs, f.shown, browsed, popularity))
            gold.append(ids.index(s.target))
        if not rows:
            raise PresalesError("no valid recommendation has its gold item among known candidates: nothing to fit the "
                                "re-ranker on (pass --rerank false)")
        reranker = Reranker.fit(rows, gold, popularity, fitted_on={"split": "valid"})
        reranker.save(self.run.best)
        log.info("candidate re-ranker fitted on %d valid samples: accuracy %.4f there (the model's own order %.4f)",
                 len(rows), reranker.fitted_on["accuracy"], reranker.fitted_on["model_accuracy"])
        return {**reranker.fitted_on, "weights": reranker.named_weights()}

    def fit_on_valid(self) -> dict:
        """What is chosen on the valid split once the model is trained: the valueless-key threshold and
        the candidate re-ranker (each when the config has it)."""
        if "understand" not in self.model.heads and not self.model.config.rerank:
            return {}
        crs = CRS.load(self.run.best, device=str(self.device), trust_remote_code=self.args.trust_remote_code,
                       with_reranker=False)
        fitted = {"valueless_threshold": self.fit_valueless_threshold(crs), "reranker": self.fit_reranker(crs)}
        return {k: v for k, v in fitted.items() if v is not None}

    def predict_and_score(self, fitted: dict | None = None) -> dict:
        args = self.args
        crs = CRS.load(self.run.best, device=str(self.device), trust_remote_code=args.trust_remote_code)
        results = {"best_epoch": self.best_epoch, "best_valid_score": self.best_score, **(fitted or {})}
        self.cue_samples = build_samples(self.corpus, "train", ["respond"])  # the reply checks' question cues
        for split in args.predict_splits:
            if split not in ("train", "valid", "test"):
                raise PresalesError(f"--predict-splits: unknown split {split!r}")
            held_out = None if split != "train" or not self.cross_fit else (lambda s: not self._in_training(s))
            samples, examples = split_examples(self.corpus, split, self.llm, max_per_task=args.max_predict_samples,
                                               select=held_out)
            if not samples:
                continue
            t0 = time.time()
            rows = predict_samples(crs, self.corpus, samples, self.llm, context=args.context)
            write_predictions(self.run.path / f"predictions_{split}.jsonl", rows)
            log.info("%s: %d predictions in %.0fs", split, len(rows), time.time() - t0)
            if split in ("valid", "test"):
                results[split] = score_predictions(samples, rows, self.corpus.items, self.cue_samples)
                results[f"{split}_headline"] = headline(results[split])
        self.run.write_json("test_metrics.json", results)
        return results


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Writing model shards" bars at every checkpoint
    try:
        args = parse_args(CRSTrainArgs, argv, prog="presales train crs")
        config = model_config(args)  # a bad preset / value fails before anything is loaded
        if args.context not in CONTEXTS:
            raise PresalesError(f"--context must be one of {', '.join(CONTEXTS)}, got {args.context!r}")
        if args.reply_epochs and {config.understand_head, config.elicit_head} & {"generate"}:
            raise PresalesError("--reply-epochs trains the decoder on the replies alone: it needs --understand-head "
                                "extract and --elicit-head classify (with generate, the decoder answers those tasks too)")
        if args.reply_epochs and distributed.launched():
            raise PresalesError("--reply-epochs runs in one process: start it without torchrun, or pass --reply-epochs 0")
        if args.repeat_respond < 1:
            raise PresalesError(f"--repeat-respond must be 1 or more (each reply once per epoch at least), "
                                f"got {args.repeat_respond}")
        t0 = time.time()
        dist = distributed.setup(args.device)  # one process, or data-parallel under torchrun
        trainer = Trainer(args)
        trainer.fit()
        dist.close()  # rank 0 predicts alone
        if not dist.is_main:
            return 0
        results = trainer.predict_and_score(trainer.fit_on_valid())
        trainer.run.commit()
        log.info("test: %s", results.get("test_headline", {}))
        log.info("done in %.0fs; run directory %s", time.time() - t0, args.out)
    except PresalesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
