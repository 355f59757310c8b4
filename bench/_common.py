"""What the benchmark scripts share: the corpus they time on (made when missing)."""
from __future__ import annotations

import tempfile
from pathlib import Path


def bench_data(path: str) -> Path:
    """`path` if it holds a U-NEED-format corpus, else the small embedded corpus written to a temp dir."""
    data = Path(path)
    if (data / "train_dialogue.json").is_file():
        return data
    from uneed.synth import synthesize

    data = Path(tempfile.mkdtemp()) / "small"
    synthesize(data, scale="small", seed=0, progress=False)
    return data
