"""What the benchmark scripts share: their common options, thread set-up, and the corpus they time on
(made when missing)."""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def bench_parser(doc: str, data: bool = True, device: bool = True) -> argparse.ArgumentParser:
    """A parser with the options every benchmark takes: --threads (default $BENCH_THREADS, 0: the
    libraries' default) and, when asked for, --data and --device."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if data:
        ap.add_argument("--data", default="data/small", help="U-NEED-format corpus (made when missing)")
    if device:
        ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "0")),
                    help="torch and FAISS threads (0: their default)")
    return ap


def set_threads(threads: int) -> None:
    """Pin torch's and FAISS's CPU threads (0 leaves them as they are); quiet the Hugging Face bars."""
    if threads:
        import faiss
        import torch

        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def bench_data(path: str) -> Path:
    """`path` if it holds a U-NEED-format corpus, else the small embedded corpus written to a temp dir."""
    data = Path(path)
    if (data / "train_dialogue.json").is_file():
        return data
    from uneed.synth import synthesize

    data = Path(tempfile.mkdtemp()) / "small"
    synthesize(data, scale="small", seed=0, progress=False)
    return data
