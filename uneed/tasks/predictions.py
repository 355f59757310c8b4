"""Prediction files: how one model's outputs reach the other model's inputs (sections 3.4 and 3.5).

JSON lines, one per sample: {"key": TaskSample.key, "task": ..., "prediction": ...}, where the
prediction is the model's text for understand / elicit / respond ('k：v；k2：v2', 'k；k2', a reply)
and, for recommend, a list of item ids, best first (an LLM's single choice is a list of one).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

from ..errors import PresalesError


class PredictionFileError(PresalesError, ValueError):
    pass


def write_predictions(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    n = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row in rows:
                if "key" not in row or "prediction" not in row:
                    raise PredictionFileError(f"prediction row needs 'key' and 'prediction': {row!r}")
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def read_predictions(path: str | os.PathLike) -> dict[str, object]:
    """key -> prediction. A malformed line raises PredictionFileError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise PredictionFileError(f"{path}: no such prediction file")
    out: dict[str, object] = {}
    with path.open(encoding="utf-8-sig") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PredictionFileError(f"{path}: line {line_no}: not JSON ({exc.msg})") from None
            except RecursionError:
                raise PredictionFileError(f"{path}: line {line_no}: JSON nested too deeply") from None
            except UnicodeDecodeError as exc:
                raise PredictionFileError(f"{path}: line {line_no}: not UTF-8 ({exc.reason})") from None
            if not isinstance(row, dict) or "key" not in row or "prediction" not in row:
                raise PredictionFileError(f"{path}: line {line_no}: needs fields 'key' and 'prediction'")
            out[str(row["key"])] = row["prediction"]
    return out


def load_crs_predictions(path: str | os.PathLike) -> dict[str, object]:
    """A prediction file, or every predictions_*.jsonl of a directory (keys carry the split)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("predictions_*.jsonl"))
        if not files:
            raise PredictionFileError(f"{path}: no predictions_*.jsonl files in this directory")
        out: dict[str, object] = {}
        for f in files:
            out.update(read_predictions(f))
        return out
    return read_predictions(path)
