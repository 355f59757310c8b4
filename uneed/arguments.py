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
    """Parse `argv` into an instance of the dataclass `cls`; --help prints every field."""
    parser = build_parser(cls, prog=prog)
    ns = vars(parser.parse_args(list(sys.argv[1:] if argv is None else argv)))
    values: dict[str, Any] = {}
    config = ns.pop("config", None)
    if config:
        values.update(load_yaml(config, cls))
    values.update(ns)
    return from_dict(cls, values)


def load_yaml(path: str | Path, cls: type) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ArgumentError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ArgumentError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ArgumentError(f"config file {path} must hold a mapping of argument names to values")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ArgumentError(f"config file {path}: unknown argument(s) {unknown}; known: {sorted(names)}")
    return data


def from_dict(cls: type[T], values: dict[str, Any]) -> T:
    names = {f.name for f in dataclasses.fields(cls)}
    missing = [f.name for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
               and f.name not in values]
    if missing:
        raise ArgumentError("missing required argument(s): " + ", ".join("--" + m.replace("_", "-") for m in missing))
    return cls(**{k: v for k, v in values.items() if k in names})


def save_yaml(obj: Any, path: str | Path) -> None:
    """Write a dataclass as YAML, so a run can be reproduced with --config."""
    data = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj)
    data = {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}
    Path(path).write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
