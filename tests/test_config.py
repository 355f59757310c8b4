"""Config values are checked up front: converted to the field's type, range-checked, one line naming the
key and the file; every model field of the CRS and the LLM can be set from a config file."""
import dataclasses
from pathlib import Path

import pytest

from training.controller import ControllerTrainArgs
from crs.config import CRSConfig
from llm.model import EmbeddedSize
from training.crs import CRSTrainArgs, model_config
from training.crs import main as train_crs
from training.llm import LLMTrainArgs
from training.llm_base import LLMBaseArgs
from uneed.arguments import ArgumentError, parse_args


def parse(cls, tmp_path, text: str, *flags: str):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text, encoding="utf-8")
    return parse_args(cls, ["--data", "d", "--out", "o", "--config", str(cfg), *flags])


def test_yaml_1_1_exponents_numeric_strings_and_booleans_are_converted(tmp_path):
    args = parse(CRSTrainArgs, tmp_path, "lr: 3e-3\nrec_lr: '1e-4'\nd_model: \"64\"\nattention_heads: 2\n"
                                         "copy_mechanism: no\nbehaviour_pointer: 'false'\nepochs: 2.0\n")
    assert args.lr == pytest.approx(0.003) and isinstance(args.lr, float)
    assert args.rec_lr == pytest.approx(1e-4)
    assert args.d_model == 64 and isinstance(args.d_model, int)
    assert args.copy_mechanism is False and args.behaviour_pointer is False
    assert args.epochs == 2 and isinstance(args.epochs, int)
    config = model_config(args)
    assert (config.d_model, config.copy_mechanism, config.behaviour_pointer) == (64, False, False)


@pytest.mark.parametrize("text,words", [
    ("epochs: three", ["epochs", "expected an integer", "'three'"]),
    ("batch_size: 0", ["batch_size", "greater than 0"]),
    ("lr: -1", ["lr", "greater than 0"]),
    ("lr: .inf", ["lr", "finite"]),
    ("predict_splits: test", ["predict_splits", "expected a list"]),
    ("predict_splits: [valid, tests]", ["predict_splits", "unknown split", "tests"]),
    ("dropout: 1.5", ["dropout", "between 0 and 1"]),
    ("d_model: [64]", ["d_model", "single value"]),
    ("copy_mechanism: maybe", ["copy_mechanism", "true or false"]),
    ("seed: -3", ["seed", "negative"]),
])
def test_bad_values_are_one_line_naming_the_key_and_the_file(tmp_path, capsys, text, words):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text + "\n", encoding="utf-8")
    rc = train_crs(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--config", str(cfg)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert str(cfg) in err[0] and all(w in err[0] for w in words), err[0]
    assert not (tmp_path / "run").exists()


def test_flags_are_checked_too():
    with pytest.raises(ArgumentError, match="--lr: must be greater than 0"):
        parse_args(LLMTrainArgs, ["--data", "d", "--out", "o", "--lr", "0"])
    with pytest.raises(ArgumentError, match="--decide-share: must be between 0 and 1"):
        parse_args(ControllerTrainArgs, ["--data", "d", "--out", "o", "--decide-share", "2"])


def test_a_config_with_a_bom_is_read(tmp_path):
    cfg = tmp_path / "bom.yaml"
    cfg.write_bytes("\ufeffepochs: 3\n".encode("utf-8"))
    assert parse_args(CRSTrainArgs, ["--data", "d", "--out", "o", "--config", str(cfg)]).epochs == 3


def test_every_model_field_is_settable_from_the_config_file(tmp_path):
    # use_llm follows --llm-predictions; valueless_threshold is chosen on valid after training, and
    # touching_span_log_prob counted in the train tags
    crs_fields = {f.name for f in dataclasses.fields(CRSConfig)} - {"use_llm", "max_new_tokens", "valueless_threshold",
                                                                    "touching_span_log_prob"}
    assert crs_fields <= {f.name for f in dataclasses.fields(CRSTrainArgs)}
    llm_fields = {f.name for f in dataclasses.fields(EmbeddedSize)}
    assert llm_fields <= {f.name for f in dataclasses.fields(LLMBaseArgs)}
    args = parse(CRSTrainArgs, tmp_path, "preset: tiny\nffn_dim: 96\nmax_behaviours: 7\nnum_beams: 2\n"
                                         "copy_mechanism: false\nitem_init: random\nhnsw_m: 8\n")
    config = model_config(args)
    assert (config.ffn_dim, config.max_behaviours, config.num_beams, config.copy_mechanism, config.item_init,
            config.hnsw_m) == (96, 7, 2, False, "random", 8)


def test_llm_size_fields_reach_the_model():
    from llm.model import build_embedded_model, build_tokenizer

    model = build_embedded_model(build_tokenizer(["你好，亲"]), "tiny", num_hidden_layers=1, hidden_size=32,
                                 intermediate_size=48)
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.intermediate_size) == (1, 32, 48)


def test_every_shipped_config_parses_and_the_gpu_profile_has_real_sizes():
    """configs/*.yaml load into their training's arguments (PROFILE=gpu's cannot be run here: they must
    at least parse), and the GPU profile's models are of the sizes it promises."""
    from dataclasses import asdict

    from crs.config import preset
    from llm.model import EMBEDDED_SIZES
    from training.controller import ControllerTrainArgs
    from training.crs import CRSTrainArgs, model_config
    from training.llm import LLMTrainArgs
    from training.llm_base import LLMBaseArgs
    from uneed.arguments import parse_args

    kinds = {"crs": CRSTrainArgs, "llm_base": LLMBaseArgs, "llm_lora": LLMTrainArgs, "controller": ControllerTrainArgs}
    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    CONFIGS = configs[0].parent
    assert {c.stem for c in configs} >= {"crs_gpu", "llm_base_gpu", "llm_lora_gpu", "controller_gpu"}
    for cfg in configs:
        kind = next(k for k in sorted(kinds, key=len, reverse=True) if cfg.stem.startswith(k))
        args = parse_args(kinds[kind], ["--data", "d", "--out", "o", "--config", str(cfg)], prog="x")
        if kind == "crs":
            model_config(args)
    crs = model_config(parse_args(CRSTrainArgs, ["--data", "d", "--out", "o", "--config", str(CONFIGS / "crs_gpu.yaml")]))
    assert (crs.d_model, crs.encoder_layers, crs.decoder_layers, crs.ffn_dim) == (768, 6, 6, 3072)
    assert crs != preset("default")
    base = parse_args(LLMBaseArgs, ["--data", "d", "--out", "o", "--config", str(CONFIGS / "llm_base_gpu.yaml")])
    s = asdict(EMBEDDED_SIZES[base.size])
    layer = 2 * s["hidden_size"] ** 2 + 2 * s["hidden_size"] * s["hidden_size"] // s["num_attention_heads"] * \
        s["num_key_value_heads"] + 3 * s["hidden_size"] * s["intermediate_size"]
    assert 100e6 < layer * s["num_hidden_layers"] < 500e6  # the body alone, before the embeddings
