"""Script arguments as dataclasses (TRL style): defaults in the dataclass, a YAML file over them,
command-line flags over both. `parse_args(Args, argv)` is the only parser the scripts use.

    presales train crs --data DIR --out RUN --config configs/crs_small.yaml --epochs 3
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

from .errors import PresalesError

T = TypeVar("T")


class ArgumentError(PresalesError, ValueError):
    """A bad flag, value or config file; the message says which."""


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(type to parse with, is_list) for int, float, str, bool, Optional[...] and list[...]."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0])
    if origin in (list, tuple, typing.List):
        inner = typing.get_args(tp)[0] if typing.get_args(tp) else str
        return inner, True
    return tp, False


def _to_bool(text: str) -> bool:
    low = str(text).lower()
    if low in ("1", "true", "yes", "y", "on"):
        return True
    if low in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def build_parser(cls: type, prog: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description or (cls.__doc__ or "").strip(),
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", help="YAML file of argument values (flags given here override it)")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        base, is_list = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        kwargs: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=f"{help_text} (default: {default})")
        if base is bool:
            kwargs.update(type=_to_bool, nargs="?", const=True, metavar="BOOL")
        elif is_list:
            kwargs.update(type=base, nargs="*")
        else:
            kwargs.update(type=base)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        if required:
            kwargs["help"] = f"{help_text} (required)"
        parser.add_argument(flag, **kwargs)
    return parser


def parse_args(cls: type[T], argv: Sequence[str] | None = None, prog: str | None = None) -> T:
    """Parse `argv` into an instance of the dataclass `cls`; --help prints every field. Every value, from
    the config file or a flag, is converted to its field's type and range-checked (`check_values`)."""
    parser = build_parser(cls, prog=prog)
    ns = vars(parser.parse_args(list(sys.argv[1:] if argv is None else argv)))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    config = ns.pop("config", None)
    if config:
        loaded = load_yaml(config, cls)
        values.update(loaded)
        sources.update({k: f"config file {config}: {k}" for k in loaded})
    values.update(ns)
    sources.update({k: "--" + k.replace("_", "-") for k in ns})
    return from_dict(cls, values, sources)


def load_yaml(path: str | Path, cls: type) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ArgumentError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except yaml.YAMLError as exc:
        raise ArgumentError(f"config file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    except UnicodeDecodeError as exc:
        raise ArgumentError(f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not isinstance(data, dict):
        raise ArgumentError(f"config file {path} must hold a mapping of argument names to values")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - names)
    if unknown:
        raise ArgumentError(f"config file {path}: unknown argument(s) {unknown}; known: {sorted(names)}")
    return data


def from_dict(cls: type[T], values: dict[str, Any], sources: dict[str, str] | None = None) -> T:
    names = {f.name for f in dataclasses.fields(cls)}
    missing = [f.name for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
               and f.name not in values]
    if missing:
        raise ArgumentError("missing required argument(s): " + ", ".join("--" + m.replace("_", "-") for m in missing))
    hints = typing.get_type_hints(cls)
    sources = sources or {}
    converted = {}
    for name, value in values.items():
        if name in names:
            where = sources.get(name, name)
            converted[name] = check_value(name, convert(hints[name], value, where), where)
    return cls(**converted)


# --------------------------------------------------------------------------- types and ranges
def _optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _scalar(base: Any, value: Any, where: str) -> Any:
    if base is bool:
        if isinstance(value, bool):
            return value
        try:
            return _to_bool(value) if isinstance(value, (str, int)) else _fail(where, "true or false", value)
        except argparse.ArgumentTypeError:
            _fail(where, "true or false", value)
    if base is int:
        if isinstance(value, bool):
            _fail(where, "an integer", value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        _fail(where, "an integer", value)
    if base is float:
        if isinstance(value, bool):
            _fail(where, "a number", value)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 3e-3 (no dot) as a string
            try:
                number = float(value.strip())
            except ValueError:
                _fail(where, "a number", value)
            return number
        _fail(where, "a number", value)
    if base is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        _fail(where, "a string", value)
    return value


def _fail(where: str, expected: str, value: Any) -> typing.NoReturn:
    raise ArgumentError(f"{where}: expected {expected}, got {value!r}")


def convert(tp: Any, value: Any, where: str) -> Any:
    """`value` as the field type `tp` (int, float, bool, str, Optional[...], list[...]); ArgumentError naming
    `where` when it cannot be."""
    if value is None:
        if _optional(tp):
            return None
        raise ArgumentError(f"{where}: a value is required")
    base, is_list = _base_type(tp)
    if is_list:
        if not isinstance(value, (list, tuple)):
            raise ArgumentError(f"{where}: expected a list (e.g. [a, b]), got {value!r}")
        return [_scalar(base, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (list, tuple, dict)):
        raise ArgumentError(f"{where}: expected a single value, got {value!r}")
    return _scalar(base, value, where)


SPLIT_NAMES = ("train", "valid", "test")


def check_value(name: str, value: Any, where: str) -> Any:
    """Range rules by the naming conventions every script's arguments follow (one place for all of them)."""
    import math

    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, list):
        if name.endswith("splits"):
            bad = [v for v in value if v not in SPLIT_NAMES]
            if bad:
                raise ArgumentError(f"{where}: unknown split(s) {bad}; choose from {list(SPLIT_NAMES)}")
        return value
    if name == "split" and value not in SPLIT_NAMES:
        raise ArgumentError(f"{where}: unknown split {value!r}; choose from {list(SPLIT_NAMES)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ArgumentError(f"{where}: must be a finite number, got {value!r}")
    if not isinstance(value, (int, float)):
        return value
    positive = (name == "lr" or name.endswith("_lr") or name.endswith("batch_size") or name in POSITIVE)
    if positive and value <= 0:
        raise ArgumentError(f"{where}: must be greater than 0, got {value!r}")
    if name in UNIT_INTERVAL or name.endswith("_ratio") or name.endswith("_share") or name.endswith("dropout"):
        if not 0 <= value <= (0.999 if name.endswith("dropout") else 1):
            raise ArgumentError(f"{where}: must be between 0 and 1, got {value!r}")
    elif name not in SIGNED and value < 0:
        raise ArgumentError(f"{where}: must not be negative, got {value!r}")
    return value


# Fields that must be > 0 beyond the *lr / *batch_size names (lora_r may be 0: full fine-tuning in `train llm`);
# fields in [0, 1]; fields that may be negative.
POSITIVE = {"block_size", "lora_alpha", "d_model", "encoder_layers", "decoder_layers", "item_dim",
            "max_source_len", "max_target_len", "attention_heads", "ffn_dim", "max_position", "num_beams",
            "max_behaviours", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "max_position_embeddings", "ivf_nprobe", "hnsw_m", "hnsw_ef_search"}
UNIT_INTERVAL = {"min_lr_ratio", "decide_share"}
SIGNED = {"predict_train"}  # -1: all


def save_yaml(obj: Any, path: str | Path) -> None:
    """Write a dataclass as YAML, so a run can be reproduced with --config."""
    data = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj)
    data = {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}
    Path(path).write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
