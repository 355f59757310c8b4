"""Logging and progress for every command: on a terminal, progress bars; in a file (`cmd > log 2>&1`),
one line per event and no bar frames, so the log can be read and grepped line by line."""
from __future__ import annotations

import logging
import os
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def on_terminal() -> bool:
    return sys.stderr.isatty()


def setup_logging(level: int = logging.INFO) -> None:
    """INFO lines on stderr (configured once per process); off a terminal the libraries' own progress
    bars (transformers' weight loading and saving) are switched off as well."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format=FORMAT)
    if not on_terminal():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers reads it when imported
        if "transformers" in sys.modules:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs):
    """A tqdm bar that draws only on a terminal (tqdm's disable=None) and never when not `enabled`."""
    from tqdm import tqdm

    return tqdm(iterable, disable=None if enabled else True, **kwargs)
