"""Understanding answers whose values are spans of the utterance (copy-constrained decoding).

In U-NEED every annotated value is a verbatim span of its utterance (all of the real samples). The
embedded LLM learns the answer format 'key：value；key：value' and where a value starts, but a third of
the values it wrote on its own were not spans: '短袖' for the utterance's '短靴', '2000以内' for
'2000之内', '老公' for '老妈' (README, the LLM). `SpanValues` restricts the next token, inside a value,
to those that keep the value a span of the utterance, plus the ones that end it (the tag separator, a
new line, the end of the sequence). The model still chooses the keys, which tags to write, where each
value starts and where it ends; only values that could not be copied are ruled out.
"""
from __future__ import annotations

import re
from typing import Sequence

from uneed.tasks.text import KV_SEPARATORS, TAG_SEPARATORS

# the answer read as uneed.tasks.text parses it
_TAG_END = re.compile(f"[{TAG_SEPARATORS}]")
_KEY_END = re.compile(f"[{KV_SEPARATORS}]")
_TAG_END_TOKENS = frozenset(TAG_SEPARATORS)  # tokens that are exactly one separator (not a substring test)


def token_texts(tokenizer) -> list[str]:
    """Each token id's text, decoded alone (special tokens: '')."""
    special = set(tokenizer.all_special_ids)
    return ["" if i in special else tokenizer.decode([i]) for i in range(len(tokenizer))]


class SpanValues:
    """allowed(row, new_ids): the token ids that may follow a row's answer so far, or None where the
    model chooses freely (in a key). Rows are the utterances given, in order."""

    def __init__(self, tokenizer, utterances: Sequence[str], vocab: Sequence[str], end_ids: Sequence[int] = ()):
        self.tokenizer = tokenizer
        self.utterances = list(utterances)
        self.vocab = vocab
        self.ends = sorted({i for i, t in enumerate(vocab) if t in _TAG_END_TOKENS} | set(end_ids))
        # per row, the tokens that occur in its utterance at all (the only ones a value can take)
        self.inside = [[i for i, t in enumerate(vocab) if t and t in u] for u in self.utterances]

    def __call__(self, row: int, new_ids: Sequence[int]) -> list[int] | None:
        answer = self.tokenizer.decode(list(new_ids), skip_special_tokens=True)
        tag = _TAG_END.split(answer)[-1]
        parts = _KEY_END.split(tag, maxsplit=1)
        if len(parts) < 2:
            return None  # in a key (or between tags)
        value, utterance = parts[1].lstrip(), self.utterances[row]
        return [i for i in self.inside[row] if value + self.vocab[i] in utterance] + self.ends
