"""How tags, needs and contexts are written as text, and read back; one place for both directions.

The authors write an understanding output as '性别：男；品类：洗面奶' and an asked attribute without
value as '年龄：'. Parsing never raises: it returns what parses and the pieces it could not read.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

TAG_SEP = "；"
KV_SEP = "："
# Separators a model might produce instead of the canonical ones (llm.spans reads answers by them too).
TAG_SEPARATORS = "；;\n"
KV_SEPARATORS = "：:"
_SPLIT_RE = re.compile(f"[{TAG_SEPARATORS}]+")
_KV_RE = re.compile(f"[{KV_SEPARATORS}]")


def format_tags(tags: Iterable[str]) -> str:
    return TAG_SEP.join(tags)


def parse_tags(text: str) -> tuple[list[str], list[str]]:
    """'k：v；k2：' -> (['k：v', 'k2：'], unparsed pieces). Half-width ':' and ';' are accepted."""
    tags, bad = [], []
    for piece in _SPLIT_RE.split(text or ""):
        piece = piece.strip()
        if not piece:
            continue
        parts = _KV_RE.split(piece, maxsplit=1)
        if len(parts) != 2 or not parts[0].strip():
            bad.append(piece)
            continue
        tag = f"{parts[0].strip()}{KV_SEP}{parts[1].strip()}"
        if tag not in tags:
            tags.append(tag)
    return tags, bad


def format_keys(keys: Iterable[str]) -> str:
    return TAG_SEP.join(keys)


def parse_keys(text: str) -> tuple[list[str], list[str]]:
    """'价位；品牌' -> ['价位', '品牌']; a piece with a value ('价位：高') keeps its key only."""
    keys, bad = [], []
    for piece in _SPLIT_RE.split(text or ""):
        piece = piece.strip()
        if not piece:
            continue
        key = _KV_RE.split(piece, maxsplit=1)[0].strip()
        if not key:
            bad.append(piece)
        elif key not in keys:
            keys.append(key)
    return keys, bad


def group_pairs(pairs: Sequence[tuple[str, str]]) -> str:
    """[('品类','洗衣机'), ('功能需求','不要烘干'), ('功能需求','功能简单')] -> '品类：洗衣机、功能需求：不要烘干、功能简单'
    (appendix F, table 8). A key without values is written 'key：'."""
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        values = grouped.setdefault(key, [])
        if value:
            values.append(value)
    return "、".join(f"{k}{KV_SEP}{'、'.join(v)}" for k, v in grouped.items())


def split_tag(tag: str) -> tuple[str, str]:
    key, _, value = tag.partition(KV_SEP)
    return key, value


def letters(n: int) -> list[str]:
    """Candidate labels A, B, ... (the authors use A-T for 20 candidates)."""
    if n > 26:
        raise ValueError(f"at most 26 lettered candidates, got {n}")
    return [chr(ord("A") + i) for i in range(n)]
