"""An offline, Chinese-capable character tokenizer for the embedded models (no hub download).

One token per character. The vocabulary is the 3,755 level-1 hanzi of GB2312 (the most frequent
Chinese characters; generated from Python's own gb2312 codec, so nothing is downloaded), GB2312's
punctuation rows, printable ASCII, and every character of the training texts; special tokens are
added whole. Saved in Hugging Face format, it loads back with `AutoTokenizer.from_pretrained`.
"""
from __future__ import annotations

from typing import Iterable

PAD, UNK, BOS, EOS, MASK = "<pad>", "<unk>", "<s>", "</s>", "<mask>"
BASE_SPECIALS = [PAD, UNK, BOS, EOS, MASK]


def gb2312_chars(level2: bool = False) -> list[str]:
    """GB2312 symbols (rows 1-9), level-1 hanzi (rows 16-55) and optionally level-2 hanzi (56-87)."""
    rows = list(range(1, 10)) + list(range(16, 56)) + (list(range(56, 88)) if level2 else [])
    chars = []
    for row in rows:
        for cell in range(1, 95):
            try:
                ch = bytes([0xA0 + row, 0xA0 + cell]).decode("gb2312")
            except UnicodeDecodeError:
                continue
            chars.append(ch)
    return chars


def base_chars(level2: bool = False) -> list[str]:
    ascii_chars = [chr(c) for c in range(32, 127)] + ["\n", "\t"]
    fullwidth = [chr(c) for c in range(0xFF01, 0xFF5F)]  # ！＂＃ … ～, common in shop chat
    return list(dict.fromkeys(ascii_chars + fullwidth + gb2312_chars(level2)))


def build_char_tokenizer(texts: Iterable[str], special_tokens: Iterable[str] = (), level2: bool = False,
                         model_max_length: int = 1024, padding_side: str = "right",
                         truncation_side: str = "left"):
    """A `PreTrainedTokenizerFast` over base characters + the characters of `texts`.

    truncation_side='left' by default: a dialogue context that is too long loses its oldest turns.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = dict.fromkeys(base_chars(level2))
    for text in texts:
        chars.update(dict.fromkeys(text))
    extra = [t for t in special_tokens if t not in BASE_SPECIALS]
    vocab = {tok: i for i, tok in enumerate(BASE_SPECIALS + extra)}
    for ch in chars:
        if ch not in vocab and (not ch.isspace() or ch in "\n "):
            vocab[ch] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Every character is its own pre-token (whitespace included: newlines matter in prompts).
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"(?m)."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS, mask_token=MASK,
        model_max_length=model_max_length, padding_side=padding_side, truncation_side=truncation_side,
    )
    if extra:
        fast.add_special_tokens({"additional_special_tokens": extra})
    return fast


def unknown_rate(tokenizer, texts: Iterable[str]) -> float:
    """Share of non-space characters that map to the unknown token."""
    unk_id = tokenizer.unk_token_id
    total = unknown = 0
    for text in texts:
        for ch in text:
            if ch.isspace():
                continue
            total += 1
            unknown += tokenizer.convert_tokens_to_ids(ch) == unk_id
    return unknown / total if total else 0.0
