"""The configuration of the unified CRS (section 3.3): its BART, its recommender, how it decodes.

A `CRSConfig` is saved with every model as `crs_config.json`; loading a model rebuilds exactly the
architecture and input path it was trained with (`use_llm` records whether it saw `[LLM]` inputs
and LLM items, section 3.5, so inference takes the same path).

Presets: `default` (d_model 128, 2+2 layers, FFN 512, copy head: the default run on the small
corpus trains in under 10 minutes on two CPU cores) and `tiny`
(for tests: d_model 64, 1+1 layers).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from uneed.errors import PresalesError
from uneed.tasks.crs_format import ReplyLayout

BEHAVIOUR_ENCODERS = ("attention", "gru", "mean", "none")
INDEX_KINDS = ("flat", "ivf", "hnsw")
INDEX_DEVICES = ("auto", "cpu", "gpu")  # auto: the GPU when the installed FAISS sees one (crs.index)
ITEM_INITS = ("svd", "random")
UNDERSTAND_HEADS = ("generate", "extract")
ELICIT_HEADS = ("generate", "classify")


class CRSConfigError(PresalesError, ValueError):
    """A bad CRS configuration value."""


@dataclass
class CRSConfig:
    # --- the sequence-to-sequence model (ignored for the architecture when base_model is set)
    d_model: int = 128
    encoder_layers: int = 2
    decoder_layers: int = 2
    attention_heads: int = 4
    ffn_dim: int = 512
    dropout: float = 0.1
    max_position: int = 512
    base_model: str | None = None  # a local BART / CPT checkpoint directory, instead of the embedded BART
    # --- inputs and outputs
    max_source_len: int = 128  # tokens; longer sources lose their oldest turns (truncated from the left)
    max_target_len: int = 48
    max_new_tokens: dict[str, int] = field(default_factory=lambda: {"understand": 40, "elicit": 16, "respond": 48})
    num_beams: int = 1  # beam search works only without the copy head
    no_repeat_ngram: int = 2  # a decoded reply never repeats an n-gram (0: off); 2 stops '混合性，还是混合性', '她她她'
    copy_mechanism: bool = True  # pointer-generator output layer (crs.model.CopyHead)
    # --- how understanding and elicitation are answered (crs.heads)
    understand_head: str = "generate"  # generate (UniMIND: the decoder writes 'key：value') | extract (BIO tagging)
    elicit_head: str = "generate"  # generate (the decoder writes the keys) | classify (a choice among the keys)
    valueless_threshold: float = 0.5  # extraction: a key named without a value is read above this probability
                                      # (training picks it on valid when it trains the extraction head)
    touching_span_log_prob: float = 0.0  # extraction: log P(a span starts right where another ends), set by
                                         # training from the train tags (crs.heads.touching_span_log_prob)
    needs_match: bool = False  # recommendation adds a learned bonus for candidates whose knowledge matches the needs
    rerank: bool = False  # the candidates' final order comes from a linear re-ranker fitted on valid (crs.rerank)
    respond_facts: bool = False  # a reply's items show all their knowledge in the source (not the first two facts)
    respond_plan_first: bool = False  # a reply's plan (asked tags, items, prompt) opens its source, kept whole
    respond_context_turns: int = 0  # a reply's source shows the latest turns only (0: all)
    # --- the recommender (equations 2-5)
    item_dim: int = 128
    behaviour_encoder: str = "attention"  # attention | gru | mean | none
    max_behaviours: int = 50
    item_init: str = "svd"  # svd: truncated SVD of item knowledge + behaviour co-occurrence; random: N(0, 0.02)
    cooccurrence_weight: float = 0.5  # weight of the user-item columns next to the knowledge columns in the SVD
    behaviour_pointer: bool = True  # bonus for items the user browsed (see crs.recommender)
    use_llm: bool = False  # trained with [LLM] segments and the LLM's item in the user representation
    # --- the FAISS index used at inference
    index: str = "flat"  # flat (exact inner product) | ivf | hnsw (approximate, for large catalogs)
    index_device: str = "auto"  # auto | cpu | gpu: where FAISS searches (gpu: flat and ivf, with faiss-gpu)
    ivf_nlist: int = 0  # 0: about 4*sqrt(N)
    ivf_nprobe: int = 32
    hnsw_m: int = 32
    hnsw_ef_search: int = 128

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.behaviour_encoder not in BEHAVIOUR_ENCODERS:
            raise CRSConfigError(f"behaviour_encoder must be one of {BEHAVIOUR_ENCODERS}, got {self.behaviour_encoder!r}")
        if self.index not in INDEX_KINDS:
            raise CRSConfigError(f"index must be one of {INDEX_KINDS}, got {self.index!r}")
        if self.index_device not in INDEX_DEVICES:
            raise CRSConfigError(f"index_device must be one of {INDEX_DEVICES}, got {self.index_device!r}")
        if self.understand_head not in UNDERSTAND_HEADS:
            raise CRSConfigError(f"understand_head must be one of {UNDERSTAND_HEADS}, got {self.understand_head!r}")
        if self.elicit_head not in ELICIT_HEADS:
            raise CRSConfigError(f"elicit_head must be one of {ELICIT_HEADS}, got {self.elicit_head!r}")
        if self.item_init not in ITEM_INITS:
            raise CRSConfigError(f"item_init must be one of {ITEM_INITS}, got {self.item_init!r}")
        for name in ("d_model", "encoder_layers", "decoder_layers", "attention_heads", "ffn_dim", "max_position",
                     "max_source_len", "max_target_len", "item_dim", "num_beams"):
            if int(getattr(self, name)) < 1:
                raise CRSConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.d_model % self.attention_heads:
            raise CRSConfigError(f"d_model ({self.d_model}) must be divisible by attention_heads ({self.attention_heads})")
        if self.base_model is None and self.max_source_len + 2 > self.max_position:
            raise CRSConfigError(f"max_source_len ({self.max_source_len}) + 2 exceeds max_position ({self.max_position})")
        if not 0 < self.valueless_threshold < 1:
            raise CRSConfigError(f"valueless_threshold must be in (0, 1), got {self.valueless_threshold}")
        if not float(self.touching_span_log_prob) <= 0:
            raise CRSConfigError(f"touching_span_log_prob is a log probability (<= 0), got {self.touching_span_log_prob}")
        if int(self.respond_context_turns) < 0:
            raise CRSConfigError(f"respond_context_turns must be 0 (all) or more, got {self.respond_context_turns!r}")
        if not 0 <= self.dropout < 1:
            raise CRSConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def reply_layout(self) -> ReplyLayout:
        """How a response-generation source is laid out (uneed.tasks.crs_format.ReplyLayout)."""
        return ReplyLayout(plan_first=self.respond_plan_first, context_turns=self.respond_context_turns,
                           facts=self.respond_facts)

    @property
    def head_tasks(self) -> tuple[str, ...]:
        """The tasks a classification head answers instead of the decoder."""
        return tuple(t for t, on in (("understand", self.understand_head == "extract"),
                                     ("elicit", self.elicit_head == "classify")) if on)

    # ------------------------------------------------------------------------------------ io
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CRSConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise CRSConfigError(f"unknown CRS config field(s) {unknown}; known: {sorted(names)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "CRSConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CRSConfigError(f"{path}: missing CRS config") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CRSConfigError(f"{path}: corrupt CRS config ({exc})") from None
        if not isinstance(data, dict):
            raise CRSConfigError(f"{path}: corrupt CRS config (not a JSON object)")
        return cls.from_dict(data)


PRESETS: dict[str, dict] = {
    "default": {},
    "tiny": dict(d_model=64, encoder_layers=1, decoder_layers=1, attention_heads=2, ffn_dim=128, max_position=256,
                 max_source_len=192, max_target_len=32, item_dim=32,
                 max_new_tokens={"understand": 24, "elicit": 12, "respond": 24}),
}


def preset(name: str, **overrides) -> CRSConfig:
    if name not in PRESETS:
        raise CRSConfigError(f"unknown CRS preset {name!r}; choose from {sorted(PRESETS)}")
    values = dict(PRESETS[name])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return CRSConfig.from_dict(values)
