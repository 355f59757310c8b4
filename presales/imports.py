"""Import every module of the project, one by one.

    python -m presales.imports

CI runs it in a new virtual environment right after the install (.ci/run): a module that imports a
package pyproject.toml does not declare fails here, with the module and the missing package named,
before any test runs."""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def project_packages() -> list[str]:
    """The top-level packages of the checkout (every directory with an __init__.py, tests aside)."""
    return sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests")


def project_modules() -> list[str]:
    out = []
    for name in project_packages():
        out.append(name)
        out += [m.name for m in pkgutil.walk_packages([str(ROOT / name)], prefix=f"{name}.")]
    return out


def main() -> int:
    modules = project_modules()
    failed = 0
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # every failure is reported, not only the first
            failed += 1
            print(f"error: cannot import {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
    print(f"imported {len(modules) - failed} of {len(modules)} modules")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
