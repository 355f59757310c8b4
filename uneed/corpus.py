"""Reading and writing a directory in the U-NEED release format.

    DIR/{train,valid,test}_dialogue.json   list of dialogues
    DIR/item_kg.txt                         CSV item_id_encrypt,seller_id_encrypt,relation_name,value
    DIR/user_action.txt                     CSV seller_id_encrypt,user_id_encrypt,item_id_encrypt,actime,action_id
"""
from __future__ import annotations

import bisect
import csv
import json
import logging
import os
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from .candidates import fill_missing_candidates
from .schema import ACTION_HEADER, KG_HEADER, SPLITS, Dialogue
from .validate import (ERROR, WARNING, CorpusError, Issue, ValidationReport, bad_time_message, canonical_time,
                       check_dialogue, parse_dialogue)

log = logging.getLogger(__name__)

CATEGORY_RELATION = "一级类目"
LEAF_RELATION = "叶子类目"
# Attribute names of the dialogues that the item knowledge spells as another relation.
RELATION_ALIASES = {"价位": "价格区间", "价格": "价格区间", "品类": LEAF_RELATION}
MAX_UTTERANCE_CHARS = 2000  # longer utterances are cut at load time (a warning names each)
# Corpus-level problems that stop a load unless the caller allows them (training flags --allow-...).
ALLOW_NO_VALID = "no-valid"  # train without a validation split (the last epoch is kept)
ALLOW_NO_ITEM_KG = "no-item-kg"  # train without item knowledge


@dataclass
class Item:
    item_id: str
    seller_id: str
    knowledge: dict[str, list[str]] = field(default_factory=dict)  # relation -> values, file order

    @property
    def category(self) -> str:
        """The 一级类目 code, or '' when the item has none."""
        values = self.knowledge.get(CATEGORY_RELATION)
        return values[0] if values else ""

    @property
    def leaf(self) -> str:
        """The leaf category (叶子类目, e.g. 热水器), or '' when the item's knowledge names none."""
        values = self.knowledge.get(LEAF_RELATION)
        return values[0] if values else ""

    def text(self, max_relations: int | None = None) -> str:
        """Knowledge as the authors write it for LLMs: '价格区间是高，材质是冰丝、棉质，类目是保暖套装'."""
        parts = []
        leaf = None
        for relation, values in self.knowledge.items():
            if relation == CATEGORY_RELATION:
                continue  # a numeric code, no help to a reader
            if relation == LEAF_RELATION:
                leaf = "、".join(values)
                continue
            parts.append(f"{relation}是{'、'.join(values)}")
        if max_relations is not None:
            parts = parts[:max_relations]
        if leaf:
            parts.append(f"类目是{leaf}")
        return "，".join(parts)


@dataclass
class Corpus:
    """A loaded U-NEED-format directory: dialogues by split, item knowledge, behaviours by user."""

    dialogues: dict[str, list[Dialogue]]
    items: dict[str, Item]
    # user_id -> (times sorted ascending, item ids in the same order)
    behaviours: dict[str, tuple[list[str], list[str]]]
    report: ValidationReport = field(default_factory=ValidationReport)
    root: Path | None = None

    def split(self, name: str) -> list[Dialogue]:
        return self.dialogues.get(name, [])

    def all_dialogues(self) -> Iterator[tuple[str, Dialogue]]:
        for split in SPLITS:
            for d in self.dialogues.get(split, []):
                yield split, d

    @property
    def domains(self) -> list[str]:
        seen = {d.domain for _, d in self.all_dialogues()}
        return sorted(seen)

    def user_behaviours(self, user_id: str, before: str | None = None, limit: int = 50) -> list[str]:
        """Item ids the user acted on (strictly before `before`, a 'YYYY-MM-DD HH:MM:SS' time), latest last."""
        times, items = self.behaviours.get(user_id, ([], []))
        if before:
            when = canonical_time(before)
            if when is None:
                raise CorpusError(ValidationReport([Issue("dialogue", bad_time_message(before))]), "bad time")
            before = when
        end = bisect.bisect_left(times, before) if before else len(times)
        return items[max(0, end - limit):end]

    def catalog(self) -> list[str]:
        """All item ids, in a stable order (the row order of item_kg.txt)."""
        return list(self.items)

    def item_domains(self) -> dict[str, str]:
        """item id -> the domain (美妆行业, ...) it belongs to, for the items that can be placed.

        item_kg.txt names no domain, so it is read off the dialogues: an item recommended in a dialogue
        of domain D is in D; an item never recommended takes the majority domain of the recommended items
        of its 一级类目, else of its seller's dialogues and recommended items; otherwise it stays unplaced."""
        own: dict[str, Counter] = defaultdict(Counter)
        by_code: dict[str, Counter] = defaultdict(Counter)
        by_seller: dict[str, Counter] = defaultdict(Counter)
        for _split, d in self.all_dialogues():
            by_seller[d.sellerid][d.domain] += 1
            for turn in d.dialogue:
                for item_id in turn.rec_item_id:
                    own[item_id][d.domain] += 1
                    item = self.items.get(item_id)
                    if item is not None:
                        if item.category:
                            by_code[item.category][d.domain] += 1
                        by_seller[item.seller_id][d.domain] += 1
        out = {}
        for item_id, item in self.items.items():
            for votes in (own.get(item_id), by_code.get(item.category), by_seller.get(item.seller_id)):
                if votes:
                    out[item_id] = votes.most_common(1)[0][0]
                    break
        return out


def _check_header(path: Path, header: list[str], expected: tuple[str, ...]) -> None:
    if tuple(h.strip() for h in header) != expected:
        raise CorpusError(ValidationReport([Issue(path.name, f"header is {header}, expected {list(expected)}",
                                                  line=1)]), f"{path}: bad CSV header")


def _read_csv(path: Path, expected: tuple[str, ...], report: ValidationReport) -> Iterator[tuple[int, list[str]]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        _check_header(path, header, expected)
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(expected) or not all(row[:3]):
                report.issues.append(Issue(path.name, f"expected {len(expected)} non-empty columns, got {row!r}",
                                           field=",".join(expected), line=line))
                report.skipped_rows.append((path.name, line))
                continue
            yield line, row


def load_items(path: Path, report: ValidationReport) -> dict[str, Item]:
    items: dict[str, Item] = {}
    for line, (item_id, seller_id, relation, value) in _read_csv(path, KG_HEADER, report):
        item = items.get(item_id)
        if item is None:
            item = items[item_id] = Item(item_id, seller_id)
        elif item.seller_id != seller_id:
            report.issues.append(Issue(path.name, f"item {item_id} listed under sellers {item.seller_id} and "
                                                  f"{seller_id}", field="seller_id_encrypt", line=line,
                                       severity=WARNING))
        item.knowledge.setdefault(relation, []).append(value)
    return items


def load_behaviours(path: Path, report: ValidationReport) -> dict[str, tuple[list[str], list[str]]]:
    by_user: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for line, (_seller, user_id, item_id, actime, _action) in _read_csv(path, ACTION_HEADER, report):
        when = canonical_time(actime)  # compared as times: a malformed one would fall in the wrong window
        if when is None:
            report.issues.append(Issue(path.name, bad_time_message(actime), field="actime", line=line))
            report.skipped_rows.append((path.name, line))
            continue
        by_user[user_id].append((when, item_id))
    out = {}
    for user, acts in by_user.items():
        acts.sort()
        out[user] = ([t for t, _ in acts], [i for _, i in acts])
    return out


def load_dialogue_file(path: Path, report: ValidationReport, known_items: set[str] | None,
                       max_utterance_chars: int = MAX_UTTERANCE_CHARS) -> list[Dialogue]:
    """Parse and check one dialogue file; invalid dialogues are reported and left out. A UTF-8 BOM is
    accepted; utterances over `max_utterance_chars` are cut (with the annotations that fall outside)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except RecursionError:
        report.issues.append(Issue(path.name, "JSON nested too deeply to read (a dialogue file is a list of "
                                              "dialogue objects)"))
        return []
    except json.JSONDecodeError as exc:
        report.issues.append(Issue(path.name, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                                   line=exc.lineno))
        return []
    except UnicodeDecodeError as exc:
        report.issues.append(Issue(path.name, f"not UTF-8 text: {exc}"))
        return []
    if not isinstance(raw, list):
        report.issues.append(Issue(path.name, "the file must hold a JSON list of dialogues"))
        return []
    dialogues = []
    for index, obj in enumerate(raw):
        try:
            dialogue, issues = parse_dialogue(obj, path.name, index)
        except RecursionError:
            dialogue, issues = None, [Issue(path.name, "nested too deeply", field=f"[{index}]", sid=f"#{index}")]
        if dialogue is not None:
            issues = cut_long_utterances(dialogue, path.name, max_utterance_chars)
            issues += check_dialogue(dialogue, path.name, known_items)
        report.extend(issues)
        if dialogue is None or any(i.severity == ERROR for i in issues):
            sid = dialogue.sid if dialogue is not None else issues[0].sid
            report.skipped_dialogues.append((path.name, str(sid)))
            continue
        dialogues.append(dialogue)
    return dialogues


def cut_long_utterances(d: Dialogue, file: str, limit: int) -> list[Issue]:
    """Cut each send_content to `limit` characters, dropping the annotated spans that end past the cut."""
    issues = []
    for t_index, turn in enumerate(d.dialogue):
        if limit and len(turn.send_content) > limit:
            issues.append(Issue(file, f"utterance cut to {limit} characters: it had {len(turn.send_content)}",
                                field=f"dialogue[{t_index}].send_content", sid=d.sid, seq_no=turn.seq_no,
                                severity=WARNING))
            turn.send_content = turn.send_content[:limit]
            turn.attributes = [a for a in turn.attributes if a.exclusive_end <= limit]
    return issues


def _drop_duplicate_sids(dialogues: dict[str, list[Dialogue]], report: ValidationReport) -> None:
    """A sid names one dialogue: predictions are keyed by it. Later duplicates are errors."""
    seen: dict[str, str] = {}
    for split in SPLITS:
        kept = []
        for d in dialogues.get(split, []):
            if d.sid in seen:
                report.issues.append(Issue(f"{split}_dialogue.json", f"duplicate sid (also in "
                                                                     f"{seen[d.sid]}_dialogue.json)",
                                           field="sid", sid=d.sid))
                report.skipped_dialogues.append((f"{split}_dialogue.json", d.sid))
                continue
            seen[d.sid] = split
            kept.append(d)
        if split in dialogues:
            dialogues[split] = kept


def _corpus_problems(root: Path, dialogues: dict[str, list[Dialogue]], items: dict, allow: set[str],
                     report: ValidationReport) -> list[Issue]:
    """What makes a directory unfit to train on, whatever the single dialogues say (a split whose
    dialogues are all invalid is left to the errors that say why)."""
    problems = []
    skipped = {file for file, _ in report.skipped_dialogues}
    # a file that could not be read at all (broken JSON, not UTF-8, not a list): its own error says why
    unreadable = {i.file: i for i in report.issues if i.severity == ERROR and i.sid is None and not i.field}
    for split in ("train", "valid"):
        if split == "valid" and ALLOW_NO_VALID in allow:
            continue
        file = f"{split}_dialogue.json"
        if split not in dialogues:
            problems.append(Issue(file, "missing split file"))
        elif file in unreadable:
            problems.append(unreadable[file])
        elif not dialogues[split] and file not in skipped:
            problems.append(Issue(file, "the split holds no dialogue"))
    if not items and ALLOW_NO_ITEM_KG not in allow:
        problems.append(Issue("item_kg.txt", "no item knowledge (the file is empty or holds only its header)"))
    return problems


def load_corpus(root: str | os.PathLike, skip_invalid: bool = False, candidate_seed: int = 42,
                build_candidates: bool = True, allow: Iterable[str] = (), require_splits: bool = True,
                max_utterance_chars: int = MAX_UTTERANCE_CHARS) -> Corpus:
    """Load a U-NEED-format directory.

    With skip_invalid=False any error raises `CorpusError` (its report names file, sid, seq_no, field);
    with skip_invalid=True the invalid dialogues and rows are left out and listed in `corpus.report`.
    Whatever skip_invalid says, a missing or empty train or valid split and empty item knowledge raise
    `CorpusError` unless `allow` names them (ALLOW_NO_VALID, ALLOW_NO_ITEM_KG) or `require_splits` is
    False (for readers that need the items only). Missing `rec_item_candidates` are built as the authors
    did (see `uneed.candidates`).
    """
    allow = set(allow)
    root = Path(root)
    report = ValidationReport()
    if not root.is_dir():
        raise CorpusError(ValidationReport([Issue(str(root), "no such directory")]), "cannot load the corpus")
    missing = [name for name in ("item_kg.txt", "user_action.txt") if not (root / name).is_file()]
    split_files = {s: root / f"{s}_dialogue.json" for s in SPLITS if (root / f"{s}_dialogue.json").is_file()}
    if not split_files:
        missing.append("{train,valid,test}_dialogue.json")
    if missing:
        rep = ValidationReport([Issue(str(root / m), "missing file") for m in missing])
        raise CorpusError(rep, f"{root} is not a U-NEED directory")
    for split in SPLITS:
        if split not in split_files:
            report.issues.append(Issue(f"{split}_dialogue.json", "missing split file: treated as empty",
                                       severity=WARNING))

    items = load_items(root / "item_kg.txt", report)
    behaviours = load_behaviours(root / "user_action.txt", report)
    known = set(items)
    dialogues = {s: load_dialogue_file(p, report, known, max_utterance_chars) for s, p in split_files.items()}
    _drop_duplicate_sids(dialogues, report)
    if require_splits:
        problems = _corpus_problems(root, dialogues, items, allow, report)
        if problems:
            report.issues.extend(p for p in problems if p not in report.issues)
            raise CorpusError(report, f"{root} cannot be trained on: " + "; ".join(
                f"{p.file}: {p.message}" for p in problems) + " (see --allow-no-valid / --allow-no-item-kg)")

    if report.errors and not skip_invalid:
        raise CorpusError(report, f"{root}: {len(report.errors)} validation errors")
    corpus = Corpus(dialogues=dialogues, items=items, behaviours=behaviours, report=report, root=root)
    if build_candidates:
        fill_missing_candidates(corpus, seed=candidate_seed)
    return corpus


# ----------------------------------------------------------------------------------------- writing
def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same directory so no half-written file is ever left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            write(fh)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; data files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_dialogues(path: Path, dialogues: Iterable[Dialogue | dict]) -> None:
    data = [d.model_dump(exclude_none=True) if isinstance(d, Dialogue) else d for d in dialogues]
    _atomic_write(Path(path), lambda fh: json.dump(data, fh, ensure_ascii=False, indent=4))


def write_csv(path: Path, header: tuple[str, ...], rows: Iterable[Iterable[str]]) -> None:
    def write(fh):
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)

    _atomic_write(Path(path), write)


def write_items(path: Path, rows: Iterable[tuple[str, str, str, str]]) -> None:
    write_csv(path, KG_HEADER, rows)


def write_behaviours(path: Path, rows: Iterable[tuple[str, str, str, str, str]]) -> None:
    write_csv(path, ACTION_HEADER, rows)
