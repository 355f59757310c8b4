"""Validation of U-NEED files: every problem becomes an `Issue` naming file, sid, seq_no and field.

Errors make a dialogue (or a CSV row) invalid; warnings are reported and the data is kept.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

from pydantic import ValidationError

from .errors import PresalesError
from .schema import Dialogue

ERROR = "error"
WARNING = "warning"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # the release's times: 2022-09-18 14:03:28
TIME_FORMAT_NAME = "YYYY-MM-DD HH:MM:SS"


def canonical_time(text: str) -> str | None:
    """The time in the release's format (so that times compare as strings), or None when `text` is not a
    local date-time (ISO forms such as 2022-09-18T14:03:28 or a date alone are read too)."""
    try:
        value = datetime.fromisoformat(str(text).strip())
    except ValueError:
        return None
    return None if value.tzinfo is not None else value.strftime(TIME_FORMAT)


def bad_time_message(text: str) -> str:
    return f"time {text!r} is not a date-time in the format {TIME_FORMAT_NAME}"


@dataclass(frozen=True)
class Issue:
    file: str
    message: str
    field: str = ""
    sid: str | None = None
    seq_no: int | None = None
    line: int | None = None
    severity: str = ERROR

    def __str__(self) -> str:
        where = [self.file]
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.sid is not None:
            where.append(f"sid={self.sid}")
        if self.seq_no is not None:
            where.append(f"seq_no={self.seq_no}")
        if self.field:
            where.append(f"field={self.field}")
        return f"{self.severity}: {' '.join(where)}: {self.message}"


@dataclass
class ValidationReport:
    issues: list[Issue] = field(default_factory=list)
    skipped_dialogues: list[tuple[str, str]] = field(default_factory=list)  # (file, sid)
    skipped_rows: list[tuple[str, int]] = field(default_factory=list)  # (file, line)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == ERROR]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def extend(self, issues: Iterable[Issue]) -> None:
        self.issues.extend(issues)

    def summary(self, limit: int = 20) -> str:
        lines = [str(i) for i in self.errors[:limit]]
        if len(self.errors) > limit:
            lines.append(f"... and {len(self.errors) - limit} more errors")
        return "\n".join(lines + self.warning_summary())

    def warning_summary(self) -> list[str]:
        """Warnings grouped by kind (the text before the first colon), most frequent first."""
        kinds = Counter(i.message.split(":")[0] for i in self.warnings)
        return [f"warning x{n}: {kind}" for kind, n in kinds.most_common()]


class CorpusError(PresalesError):
    """Raised when a corpus directory fails validation; carries the full report."""

    def __init__(self, report: ValidationReport, headline: str = "corpus failed validation"):
        self.report = report
        super().__init__(f"{headline}\n{report.summary()}")


def _seq_no_at(raw: dict, index: Any) -> int | None:
    try:
        value = raw["dialogue"][index].get("seq_no")
        return value if isinstance(value, int) else None
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


def parse_dialogue(raw: Any, file: str, index: int) -> tuple[Dialogue | None, list[Issue]]:
    """Schema-check one raw dialogue object; on failure return the issues, field by field."""
    sid = raw.get("sid") if isinstance(raw, dict) else None
    sid = str(sid) if sid is not None else f"#{index}"
    if not isinstance(raw, dict):
        return None, [Issue(file, "a dialogue must be a JSON object", field=f"[{index}]", sid=sid)]
    try:
        return Dialogue.model_validate(raw), []
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            loc = err["loc"]
            seq_no = _seq_no_at(raw, loc[1]) if len(loc) > 1 and loc[0] == "dialogue" else None
            field_name = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc)
            field_name = field_name.replace(".[", "[")
            issues.append(Issue(file, err["msg"], field=field_name, sid=sid, seq_no=seq_no))
        return None, issues


def check_dialogue(d: Dialogue, file: str, known_items: set[str] | None) -> list[Issue]:
    """Cross-field rules: spans, seq_no order, recommended ids and their candidates."""
    issues: list[Issue] = []
    previous = None
    for t_index, turn in enumerate(d.dialogue):
        where = dict(sid=d.sid, seq_no=turn.seq_no)
        if previous is not None and turn.seq_no <= previous:
            issues.append(Issue(file, f"seq_no {turn.seq_no} does not increase (previous {previous})",
                                field=f"dialogue[{t_index}].seq_no", **where))
        previous = turn.seq_no
        if canonical_time(turn.time) is None:
            issues.append(Issue(file, bad_time_message(turn.time), field=f"dialogue[{t_index}].time", **where))
        text = turn.send_content
        for a_index, attr in enumerate(turn.attributes):
            fname = f"dialogue[{t_index}].attributes[{a_index}]"
            if attr.value == "":
                if (attr.start, attr.exclusive_end) != (-1, -1):
                    issues.append(Issue(file, f"empty value needs start/exclusive_end -1/-1, got "
                                              f"{attr.start}/{attr.exclusive_end}", field=fname, **where))
            elif not (0 <= attr.start < attr.exclusive_end <= len(text)):
                issues.append(Issue(file, f"span {attr.start}:{attr.exclusive_end} is outside the "
                                          f"{len(text)}-character send_content", field=fname, **where))
            elif text[attr.start:attr.exclusive_end] != attr.value:
                issues.append(Issue(file, f"span {attr.start}:{attr.exclusive_end} reads "
                                          f"{text[attr.start:attr.exclusive_end]!r}, not value {attr.value!r}",
                                    field=fname, **where))
        cands = turn.rec_item_candidates
        if cands and len(cands) != len(turn.rec_item_id):
            issues.append(Issue(file, f"{len(cands)} candidate lists for {len(turn.rec_item_id)} "
                                      "recommended items", field=f"dialogue[{t_index}].rec_item_candidates",
                                **where))
        for k, item_id in enumerate(turn.rec_item_id):
            if known_items is not None and item_id not in known_items:
                issues.append(Issue(file, "recommended item not in item_kg.txt: "
                                          f"{item_id}", field=f"dialogue[{t_index}].rec_item_id[{k}]",
                                    severity=WARNING, **where))
            if cands and k < len(cands) and cands[k] and item_id not in cands[k]:
                issues.append(Issue(file, "candidate list lacks its recommended item (rebuilt): "
                                          f"{item_id}", field=f"dialogue[{t_index}].rec_item_candidates[{k}]",
                                    severity=WARNING, **where))
        for k, info in enumerate(turn.rec_item_info):
            if "@" not in info:
                issues.append(Issue(file, "rec_item_info entry is not 'id@一级类目': "
                                          f"{info!r}", field=f"dialogue[{t_index}].rec_item_info[{k}]",
                                    severity=WARNING, **where))
    return issues
