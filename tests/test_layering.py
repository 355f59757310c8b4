"""The layering the README states, read from the source: which package may import which, no import
cycles, and the concepts that must live in one place (model-load error, autocast, relation aliases,
speaker and act names).

Every import counts, also one inside a function (it runs when the function does); an import under
`if TYPE_CHECKING:` does not (it never runs)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Data flows one way: uneed -> crs, llm -> tools -> agent -> eval. training fits crs and llm (and the
# controller, from agent's traces); nothing but the command line imports training.
LOWER = {
    "uneed": set(),
    "crs": {"uneed"},
    "llm": {"uneed"},
    "tools": {"uneed", "crs", "llm"},
    "agent": {"uneed", "crs", "llm", "tools"},
    "training": {"uneed", "crs", "llm", "tools", "agent"},
    "eval": {"uneed", "crs", "llm", "tools", "agent"},
    "server": {"uneed", "crs", "llm", "tools", "agent", "eval"},  # the HTTP server
}
TOP = "presales"  # the command line: it may import every package


def project_packages() -> list[str]:
    return sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_files() -> dict[str, Path]:
    return {module_name(f): f for pkg in project_packages() for f in sorted((ROOT / pkg).rglob("*.py"))}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The project modules that `name` imports (a `from pkg import sub` of a submodule names the submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a non-module attribute
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def test_every_package_has_a_place_in_the_layering():
    assert set(project_packages()) <= set(LOWER) | {TOP}, "a new package needs its row in LOWER"


def test_packages_import_only_lower_packages():
    wrong = []
    for name, targets in import_graph().items():
        pkg = name.split(".")[0]
        if pkg == TOP:
            continue
        for target in sorted(targets):
            other = target.split(".")[0]
            if other != pkg and other not in LOWER[pkg]:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph = import_graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_a_wrong_import_and_a_cycle(tmp_path):
    """The checks above can fail: a function-level import counts, a TYPE_CHECKING one does not."""
    src = tmp_path / "crs" / "x.py"
    src.parent.mkdir()
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from agent import state\n"
                   "def f():\n    from training.runtime import set_seed\n", encoding="utf-8")
    modules = {"crs.x", "agent.state", "training.runtime", "training"}
    assert imports_of("crs.x", src, modules) == {"training.runtime"}


def _definitions(pattern: str) -> list[str]:
    rx = re.compile(pattern, re.M)
    return [f"{module_name(p)}" for p in module_files().values() if rx.search(p.read_text(encoding="utf-8"))]


def test_one_model_load_error_one_autocast_one_alias_table():
    assert _definitions(r"^class ModelLoadError\b") == ["uneed.errors"]
    assert _definitions(r"^\s*def _?autocast\b") == ["uneed.device"]
    assert _definitions(r"\{\s*\"价位\"\s*:") == ["uneed.corpus"]
    from crs.model import ModelLoadError as CRSError
    from llm.model import ModelLoadError as LLMError

    assert CRSError is LLMError


def test_speaker_and_act_names_come_from_the_schema():
    names = {"用户", "客服", "用户需求", "系统提问", "用户回答", "系统推荐", "系统解释", "用户反馈"}
    found = [f"{name}:{node.lineno} {node.value!r}" for name, path in module_files().items() if name != "uneed.schema"
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Constant) and node.value in names]
    assert not found, "speaker/act literals outside uneed/schema.py: " + ", ".join(found)
