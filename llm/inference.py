"""Inference with the fine-tuned LLM: `LLM.load(path)` then batched `understand`, `elicit`,
`recommend`, `respond` (or `predict` for a mix of tasks, in the prediction-file format).

Inputs are `uneed.tasks.TaskSample`s - the same objects training used, so a prompt at inference is
built exactly as at training time (template, truncation, item text). For a live conversation build
one with `make_sample(task, context, current=..., needs=..., candidates=...)`.

    llm = LLM.load("runs/llm")                      # a run dir, an adapter dir or a plain HF model dir
    tags = llm.understand([sample])[0]             # ['品类：面霜', '功效：保湿']
    keys = llm.elicit([sample])[0]                 # ['价位']
    item = llm.recommend([sample], corpus.items)[0]  # the id among sample.candidates whose letter scores highest
    text = llm.respond([sample], corpus.items)[0]  # '亲，预算多少呢'

Behaviour at the edges:
  - an empty list of samples returns [];
  - understand with an empty current utterance, or recommend without candidates, raises PresalesError;
  - a prompt over the context length is cut from the left of the dialogue (see llm/prompts.py) and
    logged; a raw prompt given to `generate` is left-truncated token-wise, logged;
  - generation is greedy (do_sample=False) with the KV cache, batched with left padding; on CPU a
    plain Qwen2 model decodes in bare torch (llm/decoding.py: the same tokens, about twice as fast),
    anything else through `model.generate`;
  - a recommendation is not generated: the candidates' letters are scored (llm/letters.py);
  - text that does not parse gives [] / '' for that sample and one WARNING line per call.
"""
from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from uneed.corpus import Item
from uneed.decoding import ban_repeated_ngrams, keep_only
from uneed.device import autocast
from uneed.errors import ModelLoadError, PresalesError
from uneed.logs import progress_bar
from uneed.schema import USER
from uneed.tasks import TaskSample, Utterance, format_keys, format_tags

from .decoding import lean_decoder
from .model import LLM_CONFIG, load_base, load_tokenizer, plain_lm_head, read_llm_config
from .parsing import ParseStats, parse_elicit, parse_respond, parse_understand
from .prompts import PromptSettings, fit_record, render_prompt
from .spans import SpanValues, token_texts

log = logging.getLogger(__name__)

# Sub-directories of a training run, in the order `LLM.load` looks for them.
RUN_SUBDIRS = ("merged", "adapter", "model", "best", "checkpoint")


def _device(requested: str | None):
    import torch

    if requested in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def _left_padded(rows: Sequence[Sequence[int]], pad: int):
    """(input_ids, attention_mask) of token rows padded on the left to the longest: every row ends at the
    last position, where generation continues and a recommendation's letter is read."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids, mask


def resolve_model_dir(path: str | Path) -> tuple[Path, str]:
    """(directory, 'adapter' | 'model') for a run dir, an adapter dir or a plain HF model dir."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model or run directory")
    if not path.is_dir():
        raise ModelLoadError(f"{path}: not a directory")
    for sub in ("",) + RUN_SUBDIRS:
        d = path / sub if sub else path
        if (d / "adapter_config.json").is_file():
            return d, "adapter"
        if (d / "config.json").is_file():
            return d, "model"
    raise ModelLoadError(f"{path}: no model here (expected config.json, adapter_config.json, or a run directory "
                         f"with one of {', '.join(RUN_SUBDIRS)}/)")


def make_sample(task: str, context: Sequence[Utterance] = (), current: Utterance | None = None,
                needs: Iterable[tuple[str, str]] = (), candidates: Sequence[str] = (), asked: Sequence[str] = (),
                items: Sequence[str] = (), domain: str = "", key: str | None = None) -> TaskSample:
    """A TaskSample for a live conversation. `current` is the utterance to understand (understand
    only); `asked` are 'key：value' tags the reply should ask, `items` the items it presents (respond)."""
    sid = key or uuid.uuid4().hex[:8]
    return TaskSample(task=task, split="live", domain=domain, sid=sid, seq_no=len(context), user_id="", seller_id="",
                      context=list(context), current=current or Utterance(USER, "", ""), target="",
                      needs=list(needs), asked=list(asked), items=list(items), candidates=list(candidates))


def _opening_check(tokenizer, opening: str):
    """stop_row(row, new_ids) for LLM.generate: True once the row's text can no longer open with `opening`."""
    opened: set[int] = set()
    opening = opening.lstrip()

    def stop_row(row: int, new_ids: list[int]) -> bool:
        if row in opened:
            return False
        text = tokenizer.decode(new_ids, skip_special_tokens=True).lstrip()
        if text.startswith(opening):
            opened.add(row)
            return False
        return not opening.startswith(text)

    return stop_row


class _RowStop:
    """A transformers stopping criterion over a stop_row callback (model.generate's path)."""

    def __init__(self, stop_row, prompt_width: int):
        self.stop_row, self.width = stop_row, prompt_width

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        new = input_ids[:, self.width:].tolist()
        return torch.tensor([self.stop_row(r, ids) for r, ids in enumerate(new)], device=input_ids.device)


def _forcing(tokenizer, forced: Callable[[str], str]):
    """force_row(row, new_ids) for LLM.generate: the token ids of the text that must follow the row's
    text so far (llm.forcing), [] where the model chooses."""

    def force_row(row: int, new_ids: list[int]) -> list[int]:
        text = forced(tokenizer.decode(new_ids, skip_special_tokens=True))
        return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"] if text else []

    return force_row


class _ForcedTokens:
    """A transformers logits processor over a force_row callback (model.generate's path): one forced
    token per step, the same tokens the bare decoding loop takes."""

    def __init__(self, force_row, prompt_width: int):
        self.force_row, self.width = force_row, prompt_width
        self.pending: dict[int, list[int]] = {}

    def __call__(self, input_ids, scores):
        new = input_ids[:, self.width:].tolist()
        for row, ids in enumerate(new):
            if not self.pending.get(row):
                self.pending[row] = list(self.force_row(row, ids))
            if self.pending.get(row):
                token = self.pending[row].pop(0)
                scores[row] = float("-inf")
                scores[row, token] = 0.0
        return scores


class _NoRepeatInOutput:
    """A transformers logits processor (model.generate's path) that bans, as the bare decoding loop does,
    each token completing an n-gram of the continuation so far. transformers' own no_repeat_ngram_size
    also counts the prompt's n-grams, which would forbid copying a value the prompt names."""

    def __init__(self, n: int, prompt_width: int):
        self.n, self.width = n, prompt_width

    def __call__(self, input_ids, scores):
        ban_repeated_ngrams(scores, input_ids[:, self.width:], self.n)
        return scores


class _AllowedTokens:
    """A transformers logits processor over an allowed_row callback (model.generate's path): the tokens
    the bare decoding loop leaves each row (llm.spans)."""

    def __init__(self, allowed_row, prompt_width: int):
        self.allowed_row, self.width = allowed_row, prompt_width

    def __call__(self, input_ids, scores):
        keep_only(scores, input_ids[:, self.width:].tolist(), self.allowed_row)
        return scores


class LLM:
    """A causal LM plus the prompt settings it was fine-tuned with."""

    def __init__(self, model, tokenizer, settings: PromptSettings | None = None, device=None, source: str = ""):
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings or PromptSettings()
        self.device = device if device is not None else next(model.parameters()).device
        self.source = source
        # greedy decoding in bare torch on CPU where the model allows it (llm/decoding.py); False: model.generate
        self.bare_decoding = True
        # the prompt's pass in bfloat16 on CPU (bare decoding only; llm/decoding.py): off unless asked
        self.bf16_prefill = False
        self._token_texts: list[str] | None = None
        self.model.eval()
        limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "seq_length", None)
        if limit and self.settings.max_length > limit:
            self.settings.max_length = int(limit)

    # ------------------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path, device: str | None = "auto", trust_remote_code: bool | None = None,
             merge_adapters: bool = True) -> "LLM":
        """Load a training run dir (merged/ or adapter/ inside), a LoRA adapter dir (its base model is
        found through presales_llm.json or adapter_config.json) or a plain HF causal-LM dir."""
        import torch

        directory, kind = resolve_model_dir(path)
        config = read_llm_config(directory)
        remote = bool(config.get("trust_remote_code", False)) if trust_remote_code is None else trust_remote_code
        dev = _device(device)
        dtype = torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else None
        if kind == "model":
            model, tokenizer = load_base(directory, trust_remote_code=remote, dtype=dtype)
        else:
            model, tokenizer = cls._load_adapter(directory, config, remote, dtype, merge_adapters)
        model.to(dev)
        settings = PromptSettings.from_dict(config.get("prompt", {})) if config.get("prompt") else PromptSettings()
        log.info("loaded LLM from %s (%s)", directory, kind)
        return cls(model, tokenizer, settings, dev, source=str(directory))

    @staticmethod
    def _load_adapter(directory: Path, config: dict, remote: bool, dtype, merge: bool):
        from peft import PeftModel

        try:
            adapter_cfg = json.loads((directory / "adapter_config.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"{directory}/adapter_config.json: unreadable ({exc})") from None
        base = config.get("base_model") or adapter_cfg.get("base_model_name_or_path")
        if not base:
            raise ModelLoadError(f"{directory}: the adapter does not say which base model it belongs to "
                                 f"(no base_model in {LLM_CONFIG} or adapter_config.json)")
        base_path = Path(base)
        if not base_path.is_absolute() and not base_path.exists():
            base_path = directory / base
        model, tokenizer = load_base(base_path, trust_remote_code=remote, dtype=dtype)
        if (directory / "tokenizer_config.json").is_file():
            tokenizer = load_tokenizer(directory, remote)
        try:
            model = PeftModel.from_pretrained(model, str(directory), is_trainable=False)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"{directory}: cannot load the LoRA adapter ({type(exc).__name__}: {exc})") from None
        if merge:
            model = model.merge_and_unload()
        return model, tokenizer

    # ------------------------------------------------------------------------------ generation
    def token_texts(self) -> list[str]:
        """Each token's text alone (computed once per model: llm.spans reads it at every step)."""
        if self._token_texts is None:
            self._token_texts = token_texts(self.tokenizer)
        return self._token_texts

    @property
    def pad_id(self) -> int:
        """The token left padding fills with (the EOS where the tokenizer has no pad token)."""
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)

    @property
    def max_context(self) -> int:
        return int(self.settings.max_length)

    def generate(self, prompts: Sequence[str] | str, max_new_tokens: int = 64, batch_size: int = 8,
                 progress: bool = False, stop_unless_opens_with: str | None = None,
                 forced: Callable[[str], str] | None = None, no_repeat_ngram: int = 0,
                 span_values_of: Sequence[str] | None = None) -> list[str]:
        """Greedy continuations of raw prompts (the template is NOT applied). Prompts longer than
        max_context - max_new_tokens tokens keep their last tokens (logged); an empty prompt raises.
        stop_unless_opens_with: a continuation ends as soon as its text (leading spaces aside) can no
        longer open with this string (e.g. a caller that only reads tool calls).
        forced(text): the text that must follow a continuation's text so far ('' where the model
        chooses; llm.forcing.ToolCallGrammar), fed in without decoding steps where the decoding allows.
        no_repeat_ngram n > 0: a continuation never repeats one of its own n-grams (its prompt's may recur).
        span_values_of: per prompt, the utterance whose spans the values of its 'key：value；...' answer
        must be (llm.spans)."""
        import torch

        if isinstance(prompts, str):
            prompts = [prompts]
        if not prompts:
            return []
        tok = self.tokenizer
        limit = max(1, self.max_context - max_new_tokens)
        encoded = []
        for i, p in enumerate(prompts):
            if not isinstance(p, str) or not p.strip():
                raise PresalesError(f"prompt {i} is empty: nothing to generate from")
            ids = tok(p, add_special_tokens=True, verbose=False)["input_ids"]
            if len(ids) > limit:
                log.warning("prompt %d has %d tokens, over the context (%d) minus %d new tokens: "
                            "left-truncated to its last %d tokens", i, len(ids), self.max_context, max_new_tokens,
                            limit)
                ids = ids[-limit:]
            encoded.append(ids)
        pad = self.pad_id
        eos = tok.eos_token_id
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out: list[str] = [""] * len(encoded)
        batches = [order[i:i + batch_size] for i in range(0, len(order), max(1, batch_size))]
        bar = None
        if progress:
            bar = progress_bar(total=len(encoded), desc="generate", leave=False)
        lean = lean_decoder(self.model) if self.bare_decoding and self.device.type == "cpu" else None
        for batch in batches:
            stop_row = _opening_check(tok, stop_unless_opens_with) if stop_unless_opens_with else None
            force_row = _forcing(tok, forced) if forced is not None else None
            allowed_row = None
            if span_values_of is not None:
                allowed_row = SpanValues(tok, [span_values_of[i] for i in batch], self.token_texts(),
                                         [eos] if eos is not None else [])
            ids, mask = _left_padded([encoded[i] for i in batch], pad)
            width = ids.shape[1]
            if lean is not None:
                gen = lean.generate(ids.to(self.device), mask.to(self.device), max_new_tokens, eos, pad, stop_row,
                                    force_row, self.bf16_prefill, no_repeat_ngram, allowed_row)
            else:
                extra = {}
                if stop_row is not None:
                    from transformers import StoppingCriteriaList

                    extra["stopping_criteria"] = StoppingCriteriaList([_RowStop(stop_row, width)])
                processors = ([_NoRepeatInOutput(no_repeat_ngram, width)] if no_repeat_ngram > 0 else []) + \
                    ([_ForcedTokens(force_row, width)] if force_row is not None else []) + \
                    ([_AllowedTokens(allowed_row, width)] if allowed_row is not None else [])
                if processors:
                    from transformers import LogitsProcessorList

                    extra["logits_processor"] = LogitsProcessorList(processors)
                with torch.inference_mode(), autocast(self.device):
                    gen = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                              max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                              use_cache=True, pad_token_id=pad, eos_token_id=eos, **extra)
            for row, i in enumerate(batch):
                out[i] = tok.decode(gen[row, width:].tolist(), skip_special_tokens=True)
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        return out

    # ------------------------------------------------------------------------------ tasks
    def prompt_for(self, sample: TaskSample, items: Mapping[str, Item] | None = None, crs_prediction=None,
                   cuts: list | None = None) -> str:
        """The exact prompt of one sample, fitted to the context length (a cut is logged at INFO, or
        appended to `cuts` for one summary line per call)."""
        if sample.task == "understand" and not (sample.current and sample.current.text.strip()):
            raise PresalesError(f"sample {sample.key}: the current utterance is empty; nothing to understand")
        try:
            record, note = fit_record(sample, items or {}, self.tokenizer, self.settings, crs_prediction)
        except ValueError as exc:  # e.g. a recommendation sample without candidates
            raise PresalesError(str(exc)) from None
        if note:
            if cuts is None:
                log.info("sample %s over the context length (%d tokens): %s", sample.key, self.max_context, note)
            else:
                log.debug("sample %s over the context length: %s", sample.key, note)
                cuts.append((sample.key, note))
        return render_prompt(record, self.settings.template)

    def complete(self, samples: Sequence[TaskSample], items: Mapping[str, Item] | None = None,
                 crs_predictions: Mapping[str, object] | None = None, batch_size: int = 8,
                 progress: bool = False) -> list[str]:
        """Raw generated text for each sample (samples of several tasks may be mixed)."""
        samples = list(samples)
        out = [""] * len(samples)
        by_task: dict[str, list[int]] = {}
        for i, s in enumerate(samples):
            by_task.setdefault(s.task, []).append(i)
        for task, idx in by_task.items():
            prompts = self._task_prompts(task, [samples[i] for i in idx], items, crs_predictions)
            spans = [samples[i].current.text for i in idx] \
                if task == "understand" and self.settings.span_values else None
            texts = self.generate(prompts, self.settings.new_tokens(task), batch_size, progress,
                                  no_repeat_ngram=self.settings.no_repeat(task), span_values_of=spans)
            for i, t in zip(idx, texts):
                out[i] = t
        return out

    def _task_prompts(self, task: str, samples: Sequence[TaskSample], items: Mapping[str, Item] | None,
                      crs_predictions: Mapping[str, object] | None) -> list[str]:
        """The prompts of one task's samples; those cut to fit the context are summed up in one log line."""
        cuts: list = []
        prompts = [self.prompt_for(s, items, (crs_predictions or {}).get(s.key), cuts) for s in samples]
        if cuts:
            log.info("%s: %d of %d prompts over the context length (%d tokens) were cut from the left of the "
                     "dialogue, e.g. %s: %s", task, len(cuts), len(samples), self.max_context, *cuts[0])
        return prompts

    def _check_task(self, samples: Sequence[TaskSample], task: str) -> None:
        wrong = [s.key for s in samples if s.task != task]
        if wrong:
            raise PresalesError(f"{task}() got samples of another task: {wrong[:3]}")

    def understand(self, samples: Sequence[TaskSample], items: Mapping[str, Item] | None = None,
                   crs_predictions: Mapping[str, object] | None = None, batch_size: int = 8) -> list[list[str]]:
        """'key：value' tags of each sample's current utterance."""
        self._check_task(samples, "understand")
        stats = ParseStats()
        out = [parse_understand(t, stats) for t in self.complete(samples, items, crs_predictions, batch_size)]
        self._report(stats, "understand")
        return out

    def elicit(self, samples: Sequence[TaskSample], items: Mapping[str, Item] | None = None,
               crs_predictions: Mapping[str, object] | None = None, batch_size: int = 8) -> list[list[str]]:
        """Attribute keys to ask about next."""
        self._check_task(samples, "elicit")
        stats = ParseStats()
        out = [parse_elicit(t, stats) for t in self.complete(samples, items, crs_predictions, batch_size)]
        self._report(stats, "elicit")
        return out

    def recommend(self, samples: Sequence[TaskSample], items: Mapping[str, Item] | None = None,
                  crs_predictions: Mapping[str, object] | None = None, batch_size: int = 8) -> list[str]:
        """One item id per sample: the candidate (of at most 20, lettered A-T) whose letter scores highest
        (llm.letters: the model's letter probability and the fitted prior of the letter's position)."""
        self._check_task(samples, "recommend")
        return [self.lettered(s, crs_predictions)[i] for s, i in
                zip(samples, self.letter_choices(samples, items, crs_predictions, batch_size))]

    def letter_scores(self, samples: Sequence[TaskSample], items: Mapping[str, Item] | None = None,
                      crs_predictions: Mapping[str, object] | None = None, batch_size: int = 8,
                      progress: bool = False) -> list[list[float]]:
        """Per recommendation sample, the log-probability of each candidate's letter as the answer's first
        token, normalised over its candidates' letters (one forward pass, no generation)."""
        import torch

        from .letters import letter_token_ids

        samples = list(samples)
        if not samples:
            return []
        self._check_task(samples, "recommend")
        prompts = self._task_prompts("recommend", samples, items, crs_predictions)
        sizes = [len(self.lettered(s, crs_predictions)) for s in samples]
        letter_ids = letter_token_ids(self.tokenizer, max(sizes))
        encoded = [self.tokenizer(p, add_special_tokens=True, verbose=False)["input_ids"][-self.max_context:]
                   for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out: list[list[float]] = [[] for _ in samples]
        bar = progress_bar(total=len(encoded), desc="letters", leave=False) if progress else None
        for start in range(0, len(order), max(1, batch_size)):
            batch = order[start:start + max(1, batch_size)]
            ids, mask = _left_padded([encoded[i] for i in batch], self.pad_id)  # every prompt ends last
            positions = (mask.cumsum(-1) - 1).clamp(min=0)  # as generate() numbers a left-padded prompt
            inputs = dict(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                          position_ids=positions.to(self.device))
            with torch.inference_mode(), autocast(self.device):
                if plain_lm_head(self.model):  # the head at the last position only, not over the whole prompt
                    base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
                    hidden = base.base_model(**inputs).last_hidden_state[:, -1]
                    logits = base.get_output_embeddings()(hidden).float()
                else:
                    logits = self.model(**inputs).logits[:, -1].float()
            for row, i in enumerate(batch):
                out[i] = logits[row, letter_ids[:sizes[i]]].log_softmax(-1).tolist()
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        return out

    def letter_choices(self, samples: Sequence[TaskSample], items: Mapping[str, Item] | None = None,
                       crs_predictions: Mapping[str, object] | None = None, batch_size: int = 8,
                       progress: bool = False) -> list[int]:
        """The chosen letter's index of each recommendation sample (llm.letters.choose)."""
        from .letters import choose

        prior, weight = self.settings.recommend_prior, self.settings.recommend_prior_weight
        return [choose(scores, prior, weight)
                for scores in self.letter_scores(samples, items, crs_predictions, batch_size, progress)]

    def lettered(self, sample: TaskSample, crs_predictions: Mapping[str, object] | None) -> list[str]:
        """The candidates in the order its prompt lettered them (fit_record)."""
        from uneed.tasks.llm_format import lettered_candidates

        return lettered_candidates(sample, (crs_predictions or {}).get(sample.key), self.settings.candidate_popularity)

    def respond(self, samples: Sequence[TaskSample], items: Mapping[str, Item] | None = None,
                crs_predictions: Mapping[str, object] | None = None, batch_size: int = 8) -> list[str]:
        """A staff reply for each sample."""
        self._check_task(samples, "respond")
        stats = ParseStats()
        out = [parse_respond(t, stats) for t in self.complete(samples, items, crs_predictions, batch_size)]
        self._report(stats, "respond")
        return out

    def predict(self, samples: Sequence[TaskSample], items: Mapping[str, Item] | None = None,
                crs_predictions: Mapping[str, object] | None = None, batch_size: int = 8,
                progress: bool = False) -> list[dict]:
        """Prediction-file rows {key, task, prediction, raw}: text for understand/elicit/respond,
        [item_id] for recommend (raw: its letter) - what uneed.tasks.write_predictions writes."""
        from uneed.tasks import letters

        samples = list(samples)
        recs = [i for i, s in enumerate(samples) if s.task == "recommend"]
        others = [i for i, s in enumerate(samples) if s.task != "recommend"]
        texts = dict(zip(others, self.complete([samples[i] for i in others], items, crs_predictions, batch_size,
                                               progress)))
        chosen = dict(zip(recs, self.letter_choices([samples[i] for i in recs], items, crs_predictions, batch_size,
                                                    progress)))
        rows, stats = [], {t: ParseStats() for t in ("understand", "elicit", "respond")}
        for i, s in enumerate(samples):
            st = stats.setdefault(s.task, ParseStats())
            if s.task == "recommend":
                raw = letters(chosen[i] + 1)[-1]
                pred: object = [self.lettered(s, crs_predictions)[chosen[i]]]
            else:
                raw = texts[i]
                if s.task == "understand":
                    pred = format_tags(parse_understand(raw, st))
                elif s.task == "elicit":
                    pred = format_keys(parse_elicit(raw, st))
                else:
                    pred = parse_respond(raw, st)
            rows.append({"key": s.key, "task": s.task, "prediction": pred, "raw": raw})
        for task, st in stats.items():
            self._report(st, task)
        return rows

    @staticmethod
    def _report(stats: ParseStats, what: str) -> None:
        if stats.malformed:
            log.warning(stats.summary(what))
