import os
import shutil
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "uneed-samples"
if not SAMPLES.is_dir():  # CI lays shared/ beside the clone
    SAMPLES = Path(os.environ.get("UNEED_SAMPLES", "../shared/uneed-samples")).resolve()


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    if not SAMPLES.is_dir():
        pytest.fail(f"the real U-NEED samples are expected at {SAMPLES}")
    return SAMPLES


@pytest.fixture()
def samples_copy(tmp_path, samples_dir) -> Path:
    """A writable copy of the real samples, to break on purpose."""
    dst = tmp_path / "uneed"
    shutil.copytree(samples_dir, dst)
    for p in dst.rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    return dst


@pytest.fixture(scope="session")
def tiny_corpus_dir(tmp_path_factory) -> Path:
    """The embedded corpus at tiny scale, generated once per test session."""
    from uneed.synth import synthesize

    out = tmp_path_factory.mktemp("tiny")
    synthesize(out, scale="tiny", seed=0, progress=False)
    return out
