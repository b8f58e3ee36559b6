"""Runtime dependencies are what the runtime imports.

Every module of the runtime (first_eval, first_train, the dashboard) is parsed, and each
third-party import must be declared in pyproject.toml's ``dependencies``. The one exception is an
optional extra (netcal): such an import must sit inside a function, so that importing the module
never needs it. Test-only and benchmark-only packages stay out of ``dependencies``.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = [ROOT / "first_eval", ROOT / "first_train", ROOT / "app" / "first_dashboard", ROOT / "app" / "main.py"]
LOCAL = {"first_eval", "first_train", "first_dashboard"}
# Import names whose distribution name differs and that packages_distributions() may not map
# when the package is absent from this environment.
ALIASES = {"sklearn": "scikit-learn", "yaml": "pyyaml"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(reqs: list[str]) -> set[str]:
    return {_norm(re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0]) for r in reqs}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _imports(path: Path) -> list[tuple[str, bool, int]]:
    """(top-level name, at module level?, line) of every absolute import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name.split(".")[0], not in_function, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                out.append((child.module.split(".")[0], not in_function, child.lineno))
            visit(child, inside)

    visit(tree, False)
    return out


def _runtime_files() -> list[Path]:
    files = []
    for root in RUNTIME:
        files += [root] if root.is_file() else sorted(root.rglob("*.py"))
    return files


@functools.lru_cache(maxsize=1)
def _packages() -> dict[str, list[str]]:
    return metadata.packages_distributions()  # scans every installed distribution: once


def _distribution(import_name: str) -> str:
    dists = _packages().get(import_name)
    if dists:
        return _norm(dists[0])
    return _norm(ALIASES.get(import_name, import_name))


def test_every_runtime_import_is_a_declared_dependency():
    project = _project()
    declared = _requirement_names(project["dependencies"])
    extras = {name: _requirement_names(reqs) for name, reqs in project["optional-dependencies"].items()
              if name != "dev"}
    optional = set().union(*extras.values()) if extras else set()
    problems = []
    for path in _runtime_files():
        for name, module_level, line in _imports(path):
            if name in sys.stdlib_module_names or name in LOCAL or name == "__future__":
                continue
            dist = _distribution(name)
            where = f"{path.relative_to(ROOT)}:{line}"
            if dist in declared:
                continue
            if dist in optional and not module_level:
                continue  # an optional extra, imported lazily
            problems.append(f"{where}: imports {name} ({dist}), not in pyproject dependencies"
                            + (" (an optional extra may only be imported inside a function)" if dist in optional
                               else ""))
    assert not problems, "\n".join(problems)


def test_no_dependency_is_declared_that_the_runtime_never_imports():
    """Each base dependency is imported by the runtime, or is named here with the reason."""
    indirect = {
        "pyarrow": "pandas' Parquet engine (predictions.parquet)",
        "torch": "imported by name; listed first, pinned",
    }
    imported = {_distribution(name) for path in _runtime_files() for name, _, _ in _imports(path)}
    unused = [d for d in _requirement_names(_project()["dependencies"]) if d not in imported and d not in indirect]
    assert not unused, f"declared but never imported by the runtime: {unused}"


def test_test_and_benchmark_references_are_not_runtime_dependencies():
    declared = _requirement_names(_project()["dependencies"])
    for name in ("netcal", "relplot", "pytest", "playwright", "lm-eval", "uncertainty-calibration"):
        assert name not in declared, name
    assert "netcal" in _requirement_names(_project()["optional-dependencies"]["netcal"])
