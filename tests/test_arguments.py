"""Script arguments: the dataclass defaults, a config file over them, flags over both; the run's saved
config.yaml reproduces the run."""
import dataclasses

import pytest
import yaml

from training.llm import LLMTrainArgs
from uneed.arguments import ArgumentError, parse_args, save_yaml

REQUIRED = ["--data", "d", "--out", "o"]


def test_defaults_then_config_file_then_flags(tmp_path):
    defaults = parse_args(LLMTrainArgs, REQUIRED)
    assert (defaults.epochs, defaults.lr, defaults.batch_size, defaults.tasks) == (2, 2e-3, 8, LLMTrainArgs(
        "d", "o").tasks)
    config = tmp_path / "c.yaml"
    config.write_text("epochs: 5\nlr: 0.01\ntasks: [understand]\nmerge: true\n", encoding="utf-8")
    from_file = parse_args(LLMTrainArgs, [*REQUIRED, "--config", str(config)])
    assert (from_file.epochs, from_file.lr, from_file.tasks, from_file.merge) == (5, 0.01, ["understand"], True)
    assert from_file.batch_size == defaults.batch_size  # what the file does not name keeps its default
    flags = parse_args(LLMTrainArgs, [*REQUIRED, "--config", str(config), "--epochs", "7", "--tasks", "elicit",
                                      "respond", "--merge", "false"])
    assert (flags.epochs, flags.lr, flags.tasks, flags.merge) == (7, 0.01, ["elicit", "respond"], False)
    # flag order does not matter: a flag before --config still wins over the file
    assert parse_args(LLMTrainArgs, ["--epochs", "7", "--config", str(config), *REQUIRED]).epochs == 7


def test_saved_config_reproduces_the_arguments(tmp_path):
    args = parse_args(LLMTrainArgs, [*REQUIRED, "--epochs", "3", "--tasks", "recommend", "--bf16", "true"])
    save_yaml(args, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))["epochs"] == 3
    again = parse_args(LLMTrainArgs, ["--config", str(tmp_path / "config.yaml")])
    assert dataclasses.asdict(again) == dataclasses.asdict(args)


def test_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nepoch: 3\n", encoding="utf-8")
    with pytest.raises(ArgumentError, match=r"bad\.yaml: unknown argument\(s\) \['epoch'\]"):
        parse_args(LLMTrainArgs, [*REQUIRED, "--config", str(bad)])
    with pytest.raises(ArgumentError, match="does not exist"):
        parse_args(LLMTrainArgs, [*REQUIRED, "--config", str(tmp_path / "missing.yaml")])
    with pytest.raises(ArgumentError, match="missing required argument"):
        parse_args(LLMTrainArgs, ["--data", "d"])
