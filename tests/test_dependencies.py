"""pyproject.toml declares what the code imports, and nothing it does not: a package that arrives only
through another one (click through typer, scipy through nothing at all) breaks a fresh install the day
that other one changes."""
from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from presales.imports import ROOT, project_modules, project_packages

tomllib = pytest.importorskip("tomllib")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> tuple[set[str], set[str]]:
    """(the dependencies, the optional ones of every extra), by distribution name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def names(specs):
        return {normalise(re.match(r"[A-Za-z0-9_.\-]+", s).group(0)) for s in specs}

    return names(project["dependencies"]), names(s for extra in project["optional-dependencies"].values()
                                               for s in extra)


def third_party_imports(files) -> set[str]:
    """Dotted names of the modules imported (any depth, inside functions too) that are neither the
    standard library nor the project."""
    own = set(project_packages()) | {"tests", "bench", "_common", "bench_checkpoint_shapes", "conftest", "servers"}
    out = set()
    for path in files:
        for node in ast.walk(ast.parse(Path(path).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            out.update(n for n in names if n.split(".")[0] not in sys.stdlib_module_names | own)
    return out


def _distribution_modules() -> dict[str, set[str]]:
    """distribution -> the dotted module names its installed files provide."""
    out: dict[str, set[str]] = {}
    for dist in metadata.distributions():
        mods = out.setdefault(normalise(dist.metadata["Name"]), set())
        for f in dist.files or []:
            if f.suffix in (".py", ".so", ".pyd") and ".." not in f.parts and not f.parts[0].endswith("-info"):
                parts = list(f.with_suffix("").parts)
                parts[-1] = parts[-1].split(".")[0]  # _C.cpython-311-x86_64-linux-gnu -> _C
                if parts[-1] == "__init__":
                    parts.pop()
                mods.add(".".join(parts))
    return out


def providers(module: str, dist_modules: dict[str, set[str]]) -> set[str]:
    """The distributions that hold `module` (for a namespace package such as langgraph, the one that
    holds langgraph.checkpoint.sqlite, not every langgraph-*)."""
    parts = module.split(".")
    for depth in range(len(parts), 0, -1):
        prefix = ".".join(parts[:depth])
        found = {d for d, mods in dist_modules.items() if prefix in mods}
        if found:
            return found
    return set()


def package_files():
    return [p for name in project_packages() for p in sorted((ROOT / name).rglob("*.py"))]


def test_every_imported_package_is_declared():
    deps, optional = declared()
    dist_modules = _distribution_modules()
    missing = []
    for module in sorted(third_party_imports(package_files())):
        found = providers(module, dist_modules)
        if not found & deps and not (module.split(".")[0] == "faiss" and found & optional):
            missing.append(f"{module} (from {', '.join(sorted(found)) or 'nothing installed'})")
    for module in sorted(third_party_imports(sorted((ROOT / "tests").glob("*.py")))):
        found = providers(module, dist_modules)
        if not found & (deps | optional):
            missing.append(f"{module} in tests (from {', '.join(sorted(found)) or 'nothing installed'})")
    assert not missing, "imported but not declared in pyproject.toml: " + "; ".join(missing)


def test_every_declared_package_is_imported():
    deps, optional = declared()
    dist_modules = _distribution_modules()
    used = {d for m in third_party_imports(package_files()) for d in providers(m, dist_modules)}
    used_in_tests = {d for m in third_party_imports(sorted((ROOT / "tests").glob("*.py")))
                     for d in providers(m, dist_modules)}
    unused = sorted(deps - used) + sorted(d for d in optional - used - used_in_tests if not d.startswith("faiss"))
    assert not unused, "declared in pyproject.toml but imported nowhere: " + ", ".join(unused)


def test_every_module_imports():
    """What .ci/run does right after the install in a new environment, here in the test environment."""
    import importlib

    modules = project_modules()
    assert "crs.catalog" in modules and "presales.cli" in modules
    for name in modules:
        importlib.import_module(name)
