"""The unified CRS of section 3.3 (UniMIND style): one BART that generates the outputs of
understanding, elicitation and response generation from prompted sequences, and a recommendation
head on its encoder (crs.recommender).

A saved model directory:
    crs_config.json   CRSConfig (architecture, decoding, whether LLM inputs were used)
    seq2seq/          the BART (or CPT) in Hugging Face format (save_pretrained)
    recommender.pt    the recommendation head's state dict (item embeddings and biases included)
    items.json        the catalog: item id of each row of the item embedding matrix
    tokenizer/        the tokenizer (Hugging Face format)
    copy.pt           the copy head's state dict (with copy_mechanism)
    keys.json, heads.pt   the attribute keys and the classification heads (with understand_head: extract,
                      elicit_head: classify or needs_match; crs.heads)
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from uneed.decoding import ban_repeated_ngrams
from uneed.errors import ModelLoadError, PresalesError
from uneed.tasks import SPECIAL_TOKENS

from .catalog import Catalog
from .config import CRSConfig
from .heads import ElicitationHead, ExtractionHead, KeySpace, NeedsMatcher, bio_transitions, viterbi_bio
from .recommender import Recommender

log = logging.getLogger(__name__)

MODEL_FILES = ("crs_config.json", "seq2seq", "recommender.pt", "items.json", "tokenizer")


# ------------------------------------------------------------------------------------ tokenizer
def build_tokenizer(texts: Iterable[str], base_model: str | None = None, model_max_length: int = 1024):
    """The embedded char tokenizer over `texts` (+ special tokens), or the base model's own tokenizer
    with the CRS special tokens added. Truncation is always from the left."""
    if base_model is None:
        from uneed.vocab import build_char_tokenizer

        return build_char_tokenizer(texts, special_tokens=SPECIAL_TOKENS, model_max_length=model_max_length)
    tok = base_tokenizer(base_model)
    missing = [t for t in SPECIAL_TOKENS if t not in tok.get_vocab()]
    if missing:
        tok.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False) \
            if _accepts_replace(tok) else tok.add_special_tokens({"additional_special_tokens": missing})
    tok.truncation_side = "left"
    return tok


def base_tokenizer(base_model: str | Path):
    """The tokenizer of a local BART / CPT checkpoint directory (never downloaded).

    The Chinese BART and CPT checkpoints (fnlp/bart-base-chinese, fnlp/cpt-base) ship a BERT vocab.txt
    beside a config of model type bart, whose own tokenizer is a byte-level BPE: a directory with a
    vocab.txt, no tokenizer.json / vocab.json and no tokenizer class named in tokenizer_config.json or
    config.json is read as a BertTokenizer (AutoTokenizer would build an empty BPE tokenizer of a few
    special tokens from it, silently)."""
    from transformers import AutoTokenizer, BertTokenizer

    path = Path(base_model)
    if not path.is_dir():
        raise ModelLoadError(f"--base-model {base_model}: no such directory (a local BART or CPT checkpoint "
                             "directory is expected; nothing is downloaded)")
    named = any(_json_field(path / name, "tokenizer_class") for name in ("tokenizer_config.json", "config.json"))
    bert_vocab = (path / "vocab.txt").is_file() and not any((path / f).is_file()
                                                           for f in ("tokenizer.json", "vocab.json"))
    cls = BertTokenizer if bert_vocab and not named else AutoTokenizer
    try:
        tok = cls.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - OSError, ValueError, TypeError...: an unusable directory
        raise ModelLoadError(f"--base-model {base_model}: no usable tokenizer there ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if len(tok) < 100:
        raise ModelLoadError(f"--base-model {base_model}: its tokenizer ({type(tok).__name__}) has only {len(tok)} "
                             "tokens; the directory lacks its vocabulary files")
    if cls is BertTokenizer:
        log.info("--base-model %s: its vocab.txt read as a BertTokenizer (%d tokens)", base_model, len(tok))
    return tok


def _json_field(path: Path, key: str):
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get(key) if isinstance(data, dict) else None


def _accepts_replace(tok) -> bool:
    import inspect

    return "replace_extra_special_tokens" in inspect.signature(tok.add_special_tokens).parameters


def special_ids(tok) -> tuple[int, int, int]:
    """(pad, bos, eos) ids; BERT-style tokenizers (fnlp/bart-base-chinese, CPT) use [CLS]/[SEP]."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
    eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
    if bos is None or eos is None:
        raise ModelLoadError("the tokenizer has neither <s>/</s> nor [CLS]/[SEP] tokens")
    return pad, bos, eos


# ------------------------------------------------------------------------------------ seq2seq
def embedded_bart(config: CRSConfig, tok):
    from transformers import BartConfig, BartForConditionalGeneration

    pad, bos, eos = special_ids(tok)
    bart_config = BartConfig(
        vocab_size=len(tok), d_model=config.d_model, encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers, encoder_attention_heads=config.attention_heads,
        decoder_attention_heads=config.attention_heads, encoder_ffn_dim=config.ffn_dim,
        decoder_ffn_dim=config.ffn_dim, max_position_embeddings=config.max_position, dropout=config.dropout,
        attention_dropout=config.dropout, activation_dropout=0.0, pad_token_id=pad, bos_token_id=bos,
        eos_token_id=eos, decoder_start_token_id=eos, forced_eos_token_id=eos, scale_embedding=False,
    )
    return BartForConditionalGeneration(bart_config)


def load_seq2seq(path: str | Path, trust_remote_code: bool = False):
    from transformers import AutoModelForSeq2SeqLM

    try:
        return AutoModelForSeq2SeqLM.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, safetensors errors...
        raise ModelLoadError(f"{path}: cannot load the sequence-to-sequence model ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def base_seq2seq(base_model: str, tok, trust_remote_code: bool = False):
    """A local BART/CPT checkpoint, its embeddings resized to the tokenizer with the CRS special tokens."""
    path = Path(base_model)
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"--base-model {base_model}: not a model directory (no config.json)")
    model = load_seq2seq(path, trust_remote_code)
    if model.get_input_embeddings().weight.shape[0] < len(tok):
        model.resize_token_embeddings(len(tok))
    pad, bos, eos = special_ids(tok)
    if model.config.decoder_start_token_id is None:
        model.config.decoder_start_token_id = eos
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pad
    return model


# ------------------------------------------------------------------------------------ copying
class CopyHead(nn.Module):
    """A pointer-generator output layer (See et al., 2017) over the BART decoder.

    p(w) = g * softmax(lm_logits)(w) + (1 - g) * sum_{j: x_j = w} a_j,
    a = softmax over source positions of (W_q h_t) . (W_k enc_j), g = sigmoid(w . [h_t; sum_j a_j enc_j]).
    Understanding outputs are mostly spans of the utterance ('品牌：VIVO'); a BART trained from scratch
    on a few thousand dialogues learns to copy through cross-attention only after thousands of steps,
    a pointer learns it in a few hundred (our addition; off with copy_mechanism=false).
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.gate = nn.Linear(2 * d_model, 1)

    def forward(self, dec: torch.Tensor, enc: torch.Tensor, src_ids: torch.Tensor, src_mask: torch.Tensor,
                lm_logits: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (B, T, V)."""
        scores = torch.einsum("btd,bsd->bts", self.q(dec), self.k(enc)) / dec.shape[-1] ** 0.5
        scores = scores.float().masked_fill(~src_mask.bool().unsqueeze(1), torch.finfo(torch.float32).min)
        attn = torch.softmax(scores, dim=-1)
        context = torch.einsum("bts,bsd->btd", attn.to(enc.dtype), enc)
        gen = torch.sigmoid(self.gate(torch.cat([dec, context], dim=-1)).float())  # (B, T, 1)
        probs = gen * torch.softmax(lm_logits.float(), dim=-1)
        index = src_ids.unsqueeze(1).expand(-1, dec.shape[1], -1)
        probs = probs.scatter_add(2, index, (1 - gen) * attn)
        return torch.log(probs.clamp(min=1e-12))


def _cache_argument(decoder) -> str:
    """The decoder's name for its key/value cache, in its arguments and its output: `past_key_values` in
    transformers 5.17 (what GPU images carry), `cache` in the newest releases (which deprecate the old name)."""
    import inspect

    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


# ------------------------------------------------------------------------------------ the CRS
def build_heads(config: CRSConfig, d_model: int, keys: KeySpace | None) -> nn.ModuleDict:
    """The classification heads the config asks for (crs.heads); empty for the generative path."""
    heads = nn.ModuleDict()
    if config.head_tasks and keys is None:
        raise ModelLoadError(f"the heads of {list(config.head_tasks)} need the attribute keys (keys.json)")
    if config.understand_head == "extract":
        heads["understand"] = ExtractionHead(d_model, len(keys))
    if config.elicit_head == "classify":
        heads["elicit"] = ElicitationHead(d_model, len(keys))
    if config.needs_match:
        heads["match"] = NeedsMatcher()
    return heads


class UnifiedCRS(nn.Module):
    def __init__(self, config: CRSConfig, seq2seq, recommender: Recommender, copy: CopyHead | None = None,
                 keys: KeySpace | None = None):
        super().__init__()
        self.config = config
        self.seq2seq = seq2seq
        self.recommender = recommender
        self.copy = copy
        self.keys = keys
        d_model = seq2seq.config.d_model if hasattr(seq2seq.config, "d_model") else seq2seq.config.hidden_size
        self.heads = build_heads(config, d_model, keys)

    @classmethod
    def build(cls, config: CRSConfig, tok, catalog: Catalog, init_embeddings: torch.Tensor | None = None,
              init_bias: torch.Tensor | None = None, trust_remote_code: bool = False,
              keys: KeySpace | None = None) -> "UnifiedCRS":
        seq2seq = base_seq2seq(config.base_model, tok, trust_remote_code) if config.base_model else \
            embedded_bart(config, tok)
        d_model = seq2seq.config.d_model if hasattr(seq2seq.config, "d_model") else seq2seq.config.hidden_size
        rec = Recommender(len(catalog), d_model, config.item_dim, config.behaviour_encoder, config.max_behaviours,
                          config.use_llm, init_embeddings, init_bias, config.behaviour_pointer)
        return cls(config, seq2seq, rec, CopyHead(d_model) if config.copy_mechanism else None, keys)

    # -------------------------------------------------------------------------------- forward
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.seq2seq.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state

    def user(self, input_ids, attention_mask, behaviour_rows, llm_rows=None) -> torch.Tensor:
        pooled = Recommender.pool(self.encode(input_ids, attention_mask), attention_mask)
        return self.recommender.user(pooled, behaviour_rows, llm_rows)

    def recommend_loss(self, batch: dict, candidate_weight: float = 0.0) -> torch.Tensor:
        """L_R (equation 3; equation 5 when trained with LLM items), plus `candidate_weight` times the
        cross-entropy over the sample's candidates (with the needs-match bonus when configured)."""
        user = self.user(batch["input_ids"], batch["attention_mask"], batch["behaviours"], batch.get("llm_rows"))
        bonus = self.heads["match"](batch["match"]) if "match" in self.heads and "match" in batch else None
        return self.recommender.loss(user, batch["gold"], batch["behaviours"], batch.get("candidates"),
                                     candidate_weight, candidate_bonus=bonus)

    def head_loss(self, task: str, batch: dict) -> torch.Tensor:
        """The loss of the classification head that answers `task` (understand or elicit)."""
        enc = self.encode(batch["input_ids"], batch["attention_mask"])
        return self.heads[task].loss(enc, batch)

    def task_loss(self, task: str, batch: dict) -> torch.Tensor:
        """The training loss of a batch of one generation-side task: its head's, or L_theta."""
        return self.head_loss(task, batch) if task in self.heads else self.generation_loss(batch)

    @torch.no_grad()
    def extract(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted BIO labels (B, S) and valueless-key probabilities (B, K) of understanding features:
        over each utterance's tokens the most likely valid BIO sequence (crs.heads.viterbi_bio; on
        data/small it lifted test F1 from 0.608 to 0.692 over per-token argmax, and the prior against
        touching spans from 0.699 to 0.750), elsewhere argmax."""
        enc = self.encode(batch["input_ids"], batch["attention_mask"])
        tag_logits, key_logits = self.heads["understand"](enc, batch["span_mask"], batch["allowed_keys"])
        log_probs = torch.log_softmax(tag_logits.float(), dim=-1).cpu()
        labels = log_probs.argmax(-1)
        trans, start = bio_transitions(self.heads["understand"].num_keys, self.config.touching_span_log_prob)
        for b, mask in enumerate(batch["span_mask"].bool().cpu()):
            positions = mask.nonzero().flatten()
            if len(positions):
                labels[b, positions] = torch.tensor(viterbi_bio(log_probs[b, positions], trans, start))
        return labels.to(tag_logits.device), torch.sigmoid(key_logits)

    @torch.no_grad()
    def elicit_scores(self, batch: dict) -> torch.Tensor:
        """Probabilities (B, K) of each key being the one to ask (disallowed keys: 0)."""
        enc = self.encode(batch["input_ids"], batch["attention_mask"])
        return torch.softmax(self.heads["elicit"](enc, batch["attention_mask"], batch["allowed_keys"]), dim=-1)

    def _lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.seq2seq.get_output_embeddings()(hidden)
        bias = getattr(self.seq2seq, "final_logits_bias", None)
        return logits + bias if bias is not None else logits

    def _start_id(self) -> int:
        start = self.seq2seq.config.decoder_start_token_id
        return int(start if start is not None else self.seq2seq.config.eos_token_id)

    def generation_loss(self, batch: dict) -> torch.Tensor:
        """L_theta (equation 1): token-level negative log-likelihood of the target."""
        if self.copy is None:
            return self.seq2seq(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                labels=batch["labels"]).loss
        from transformers.models.bart.modeling_bart import shift_tokens_right

        labels = batch["labels"]
        pad = self.seq2seq.config.pad_token_id
        dec_in = shift_tokens_right(labels, pad, self._start_id())
        enc = self.encode(batch["input_ids"], batch["attention_mask"])
        dec = self.seq2seq.get_decoder()(input_ids=dec_in, encoder_hidden_states=enc,
                                         encoder_attention_mask=batch["attention_mask"]).last_hidden_state
        logp = self.copy(dec, enc, batch["input_ids"], batch["attention_mask"], self._lm_logits(dec))
        return nn.functional.nll_loss(logp.reshape(-1, logp.shape[-1]), labels.reshape(-1), ignore_index=-100)

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, max_new_tokens: int, num_beams: int = 1,
                 no_repeat_ngram: int = 0, non_empty: Sequence[int] = ()) -> torch.Tensor:
        """Token ids of the outputs (greedy; beam search only without the copy head). With
        `no_repeat_ngram` n > 0, no n-gram occurs twice in an output; with `non_empty` (special token
        ids, </s> among them), the first token is none of those, so the output is never empty."""
        if self.copy is None:
            return self.seq2seq.generate(input_ids=input_ids, attention_mask=attention_mask,
                                         max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False,
                                         no_repeat_ngram_size=no_repeat_ngram, min_new_tokens=1 if non_empty else 0)
        eos = self.seq2seq.config.eos_token_id
        pad = self.seq2seq.config.pad_token_id
        enc = self.encode(input_ids, attention_mask)
        decoder = self.seq2seq.get_decoder()
        cur = torch.full((input_ids.shape[0], 1), self._start_id(), dtype=torch.long, device=input_ids.device)
        out = [cur]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        cache_arg = _cache_argument(decoder)
        cache = None
        for _ in range(max_new_tokens):
            step = decoder(input_ids=cur, encoder_hidden_states=enc, encoder_attention_mask=attention_mask,
                           use_cache=True, **{cache_arg: cache})
            cache = getattr(step, cache_arg)
            h = step.last_hidden_state
            logp = self.copy(h, enc, input_ids, attention_mask, self._lm_logits(h))[:, -1]
            if no_repeat_ngram > 0:
                ban_repeated_ngrams(logp, torch.cat(out, dim=1)[:, 1:], no_repeat_ngram)
            if non_empty and len(out) == 1:
                logp[:, list(non_empty)] = torch.finfo(logp.dtype).min
            nxt = logp.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            out.append(nxt.unsqueeze(1))
            done |= nxt == eos
            cur = nxt.unsqueeze(1)
            if bool(done.all()):
                break
        return torch.cat(out, dim=1)

    # -------------------------------------------------------------------------------- io
    def save(self, path: str | Path, tok, catalog: Catalog) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.config.save(path / "crs_config.json")
        self.seq2seq.save_pretrained(str(path / "seq2seq"))
        torch.save(self.recommender.state_dict(), path / "recommender.pt")
        if self.copy is not None:
            torch.save(self.copy.state_dict(), path / "copy.pt")
        if self.keys is not None:
            self.keys.save(path / "keys.json")
        if len(self.heads):
            torch.save(self.heads.state_dict(), path / "heads.pt")
        catalog.save(path / "items.json")
        tok.save_pretrained(str(path / "tokenizer"))

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu",
             trust_remote_code: bool = False) -> tuple["UnifiedCRS", object, Catalog]:
        """(model, tokenizer, catalog) from a saved model directory; ModelLoadError when it is unusable."""
        path = Path(path)
        if not path.is_dir():
            raise ModelLoadError(f"{path}: no such model directory")
        missing = [f for f in MODEL_FILES if not (path / f).exists()]
        if missing:
            raise ModelLoadError(f"{path}: incomplete model directory (missing {', '.join(missing)})")
        try:
            config = CRSConfig.load(path / "crs_config.json")
        except PresalesError as exc:
            raise ModelLoadError(str(exc)) from None
        catalog = Catalog.load(path / "items.json")
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(str(path / "tokenizer"), local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(f"{path / 'tokenizer'}: corrupt tokenizer ({type(exc).__name__}: {exc})") from None
        tok.truncation_side = "left"
        seq2seq = load_seq2seq(path / "seq2seq", trust_remote_code)
        d_model = seq2seq.config.d_model if hasattr(seq2seq.config, "d_model") else seq2seq.config.hidden_size
        rec = Recommender(len(catalog), d_model, config.item_dim, config.behaviour_encoder, config.max_behaviours,
                          config.use_llm, behaviour_pointer=config.behaviour_pointer)
        copy = CopyHead(d_model) if config.copy_mechanism else None
        keys = None
        if config.head_tasks and not (path / "keys.json").is_file():
            raise ModelLoadError(f"{path}: incomplete model directory (missing keys.json)")
        if (path / "keys.json").is_file():
            try:
                keys = KeySpace.load(path / "keys.json")
            except Exception as exc:
                raise ModelLoadError(f"{path / 'keys.json'}: corrupt ({type(exc).__name__}: {exc})") from None
        model = cls(config, seq2seq, rec, copy, keys)
        heads = model.heads if len(model.heads) else None
        for name, module in (("recommender.pt", rec), ("copy.pt", copy), ("heads.pt", heads)):
            if module is None:
                continue
            try:
                state = torch.load(path / name, map_location=map_location, weights_only=True)
                module.load_state_dict(state)
            except FileNotFoundError:
                raise ModelLoadError(f"{path}: incomplete model directory (missing {name})") from None
            except Exception as exc:
                raise ModelLoadError(f"{path / name}: corrupt {name.split('.')[0]} weights "
                                     f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        return model, tok, catalog
