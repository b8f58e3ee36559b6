"""Layers point down (STYLE.md 13): a static check of every import in the three packages.

Every ``.py`` file of ``first_eval/``, ``first_train/`` and ``app/`` is parsed and walked; every
import counts, wherever it is (module level, inside a function, under ``if TYPE_CHECKING``):
``import x``, ``from x import y`` (also as ``x.y``), relative imports (resolved against the
file's package) and ``importlib.import_module("x")`` / ``__import__("x")`` with a literal or
f-string name. A failure names ``file:line`` and the import.

The layers, top to bottom: ``app/`` (the dashboard); the CLI (``first_eval/cli/``) and the
study runner (``first_eval/study/``); ``first_train``; the analysis core (the rest of
``first_eval``); the NumPy-only metrics core (``first_eval/calibration/``, ``bootstrap.py``,
``results.py``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("first_eval", "first_train", "app")


@dataclass(frozen=True)
class Rule:
    key: str
    says: str
    files: tuple[str, ...]      # path prefixes (relative to the repository) the rule applies to
    exempt: tuple[str, ...]     # path prefixes within ``files`` it does not apply to
    forbidden: tuple[str, ...]  # modules that may not be imported, nor anything below them


#: The rules, one line each.
RULES = (
    Rule("a", "first_train never imports the study runner or the CLI",
         ("first_train/",), (), ("first_eval.study", "first_eval.cli")),
    Rule("b-cli", "nothing in first_eval but the CLI imports the CLI (not the study runner either)",
         ("first_eval/",), ("first_eval/cli/",), ("first_eval.cli",)),
    Rule("b-study", "nothing in first_eval but the study runner and the CLI imports the study runner",
         ("first_eval/",), ("first_eval/study/", "first_eval/cli/"), ("first_eval.study",)),
    Rule("c", "the analysis core never imports first_train",
         ("first_eval/",), ("first_eval/cli/", "first_eval/study/"), ("first_train",)),
    Rule("d", "no library imports the dashboard",
         ("first_eval/", "first_train/"), (), ("app", "first_dashboard")),
    Rule("e", "the metrics core is NumPy-only: no torch, no transformers",
         ("first_eval/calibration/", "first_eval/bootstrap.py", "first_eval/results.py"), (),
         ("torch", "transformers")),
)


# --------------------------------------------------------------------------- the walker
@dataclass(frozen=True)
class Import:
    line: int
    text: str                  # the import as written (unparsed), for the failure message
    modules: tuple[str, ...]   # every module it may import: "x" and, for from x import y, "x.y"


def module_name(rel: str) -> str:
    """Dotted name of a file given relative to the repository (``app/`` is its own sys.path root)."""
    parts = list(Path(rel).with_suffix("").parts)
    if parts[0] == "app":
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(module: str | None, level: int, package: str) -> str:
    if not level:
        return module or ""
    base = package.split(".") if package else []
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _dynamic_name(node: ast.Call) -> str | None:
    """The module of ``importlib.import_module("x")``/``__import__("x")`` (an f-string's literal head)."""
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        head = str(arg.values[0].value)
        return head.rstrip(".") if head.endswith(".") else head.rsplit(".", 1)[0]
    return None


def imports_of(source: str, module: str, *, is_package: bool = False) -> list[Import]:
    """Every import in ``source`` (of the module ``module``), wherever it appears."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.append(Import(node.lineno, ast.unparse(node), tuple(a.name for a in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, package)
            subs = tuple(f"{base}.{a.name}" if base else a.name for a in node.names if a.name != "*")
            found.append(Import(node.lineno, ast.unparse(node), (base, *subs) if base else subs))
        elif isinstance(node, ast.Call) and (name := _dynamic_name(node)):
            found.append(Import(node.lineno, ast.unparse(node), (name,)))
    return sorted(found, key=lambda i: i.line)


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _applies(rule: Rule, rel: str) -> bool:
    return rel.startswith(rule.files) and not rel.startswith(rule.exempt)


def violations(rule: Rule, rel: str, found: list[Import]) -> list[str]:
    """``file:line: import`` for every import of ``found`` (in the file ``rel``) that ``rule`` forbids."""
    if not _applies(rule, rel):
        return []
    return [f"{rel}:{imp.line}: {imp.text}" for imp in found
            if any(_under(m, f) for m in imp.modules for f in rule.forbidden)]


def _python_files() -> dict[str, list[Import]]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if "__pycache__" in rel:
                continue
            out[rel] = imports_of(path.read_text(encoding="utf-8"), module_name(rel),
                                  is_package=path.name == "__init__.py")
    return out


@pytest.fixture(scope="module")
def files() -> dict[str, list[Import]]:
    return _python_files()


# --------------------------------------------------------------------------- the rules
@pytest.mark.parametrize("rule", RULES, ids=[r.key for r in RULES])
def test_layers_point_down(rule, files):
    bad = [v for rel, found in files.items() for v in violations(rule, rel, found)]
    assert not bad, f"rule ({rule.key}) {rule.says}; forbidden imports:\n  " + "\n  ".join(bad)


def test_every_package_is_walked(files):
    for pkg in PACKAGES:
        assert any(rel.startswith(pkg + "/") for rel in files), pkg
    for rule in RULES:  # a rule whose files all moved away would pass silently
        assert any(_applies(rule, rel) for rel in files), rule.key


# --------------------------------------------------------------------------- the walker itself
SOURCE = '''
import numpy as np

def late():
    if True:
        from first_eval.study.cache import content_hash
    import first_eval.cli.metrics as m
    from first_eval import cli
    from ..study import runner
    from . import errors
    importlib.import_module(f"first_eval.cli.{name}")
'''


def test_walker_finds_imports_inside_functions_relative_and_dynamic():
    found = imports_of(SOURCE, "first_eval.calibration.metrics")
    assert [(i.line, i.modules) for i in found] == [
        (2, ("numpy",)),
        (6, ("first_eval.study.cache", "first_eval.study.cache.content_hash")),
        (7, ("first_eval.cli.metrics",)),
        (8, ("first_eval", "first_eval.cli")),
        (9, ("first_eval.study", "first_eval.study.runner")),
        (10, ("first_eval.calibration", "first_eval.calibration.errors")),
        (11, ("first_eval.cli",)),
    ]


def test_walker_reports_a_forbidden_import_inside_a_function():
    rule_a = next(r for r in RULES if r.key == "a")
    found = imports_of(SOURCE, "first_train.finetune")
    assert violations(rule_a, "first_train/finetune.py", found) == [
        "first_train/finetune.py:6: from first_eval.study.cache import content_hash",
        "first_train/finetune.py:7: import first_eval.cli.metrics as m",
        "first_train/finetune.py:8: from first_eval import cli",
        "first_train/finetune.py:11: importlib.import_module(f'first_eval.cli.{name}')",
    ]  # line 9 is `study.runner` from first_train/finetune.py: above the top package, not first_eval
    assert violations(rule_a, "first_eval/zoo.py", found) == []  # rule (a) is first_train's only


def test_relative_imports_resolve_against_the_package():
    assert module_name("first_eval/cli/__init__.py") == "first_eval.cli"
    assert module_name("app/first_dashboard/views/items.py") == "first_dashboard.views.items"
    init = imports_of("from . import metrics\nfrom .. import errors\n", "first_eval.cli", is_package=True)
    assert [i.modules[-1] for i in init] == ["first_eval.cli.metrics", "first_eval.errors"]
    rule_e = next(r for r in RULES if r.key == "e")
    torchy = imports_of("def f():\n    import torch.nn\n", "first_eval.calibration.smooth")
    assert violations(rule_e, "first_eval/calibration/smooth.py", torchy) == [
        "first_eval/calibration/smooth.py:2: import torch.nn"]
    assert violations(rule_e, "first_eval/scorer.py", torchy) == []
    assert not violations(rule_e, "first_eval/results.py", imports_of("import torchvision_like\n", "x"))
