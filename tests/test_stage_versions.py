"""A cached stage's code may not change while its format version stays the same.

Every stage key holds the stage kind's format version (:data:`first_eval.digest.STAGE_VERSIONS`), so
a result computed by old code is never served once the number is bumped. This test is what makes
someone bump it: it records, per stage kind, a digest of the code the stage runs — the modules its
entry points import, transitively, within this project, as ASTs without docstrings (comments and
formatting do not count) — in ``tests/stage_code.lock.json``, and fails when that code changes.

When it fails, decide: if the change can alter what the stage computes, bump the stage's number in
``first_eval/digest.py``; either way, re-record with

    .venv/bin/python tests/test_stage_versions.py --update

Modules whose effect already reaches the keys by content (datasets: their items are digested) or
that never change a result (errors, file writing, locks, hashing, the study runner, the CLIs) are
left out. The AST differs between Python minor versions; the lock is recorded on the project's
Python (3.11).
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = Path(__file__).with_name("stage_code.lock.json")

ENTRY_POINTS = {
    "score": ("first_eval.scorer", "first_eval.prompts", "first_eval.predictions", "first_eval.zoo"),
    "finetune": ("first_train.finetune",),
    "extract": ("first_train.extract",),
    "calibrate": ("first_train.calibrate",),
    "distill": ("first_train.distill",),
    "posthoc": ("first_eval.calibrators",),
    "heldout": ("first_train.calibrate", "first_eval.arms"),
    "knowledge": ("first_eval.knowledge", "first_eval.prompts", "first_eval.zoo"),
    "metrics": ("first_eval.results", "first_eval.arms", "first_eval.predictions"),
}
NOT_RESULTS = ("first_eval.data", "first_eval.errors", "first_eval.fileio", "first_eval.faults", "first_eval.locks",
               "first_eval.digest", "first_eval.study", "first_eval.cli", "first_train.cli", "first_train.commands")
PACKAGES = ("first_eval", "first_train")


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _excluded(name: str) -> bool:
    return any(name == x or name.startswith(x + ".") for x in NOT_RESULTS)


def _imports(name: str, tree: ast.AST, is_package: bool) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".")
                base = parts[: len(parts) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return {m for m in found if m.split(".")[0] in PACKAGES}


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def stage_code(stage: str) -> tuple[str, list[str]]:
    """(digest, modules) of the code stage kind ``stage`` runs."""
    seen: dict[str, str] = {}
    todo = list(ENTRY_POINTS[stage])
    while todo:
        name = todo.pop()
        if name in seen or _excluded(name):
            continue
        path = _module_file(name)
        if path is None:
            continue  # `from pkg import function`: not a module
        tree = ast.parse(path.read_text(encoding="utf-8"))
        todo.extend(_imports(name, tree, path.name == "__init__.py"))
        seen[name] = ast.dump(_strip_docstrings(tree), include_attributes=False)
        parent = name.rpartition(".")[0]  # importing a submodule runs its package's __init__
        if parent:
            todo.append(parent)
    digest = hashlib.sha256(json.dumps(sorted(seen.items())).encode()).hexdigest()[:16]
    return digest, sorted(seen)


def current() -> dict[str, dict]:
    from first_eval.digest import STAGE_VERSIONS

    out = {}
    for stage in ENTRY_POINTS:
        digest, modules = stage_code(stage)
        out[stage] = {"version": STAGE_VERSIONS[stage], "code": digest, "modules": modules}
    return out


def test_every_stage_kind_is_locked():
    from first_eval.digest import STAGE_VERSIONS

    assert set(ENTRY_POINTS) == set(STAGE_VERSIONS)


def test_stage_code_changes_come_with_a_version_decision():
    locked = json.loads(LOCK.read_text())
    problems = []
    for stage, now in current().items():
        was = locked.get(stage)
        if was is None:
            problems.append(f"{stage}: not in {LOCK.name}")
        elif now["code"] != was["code"] and now["version"] == was["version"]:
            changed = sorted(set(now["modules"]) ^ set(was["modules"])) or now["modules"]
            problems.append(f"{stage}: the code it runs changed (among {', '.join(changed)}) but "
                            f"STAGE_VERSIONS[{stage!r}] is still {now['version']}: bump it if results can change")
        elif now != was:
            problems.append(f"{stage}: the lock is out of date")
    assert not problems, ("\n".join(problems) + "\nthen re-record: .venv/bin/python tests/test_stage_versions.py --update")


def test_a_change_to_a_stage_module_changes_its_code_digest(tmp_path, monkeypatch):
    """The walker itself: a real edit to a module a stage imports moves the digest; a docstring does not."""
    package = tmp_path / "first_eval"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "knowledge.py").write_text('"""doc"""\nfrom first_eval import helper\n')
    (package / "helper.py").write_text('"""doc"""\nX = 1\n')
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    before, modules = stage_code("knowledge")
    assert modules == ["first_eval", "first_eval.helper", "first_eval.knowledge"]
    (package / "helper.py").write_text('"""another docstring"""\n# a comment\nX = 1\n')
    assert stage_code("knowledge")[0] == before
    (package / "helper.py").write_text('"""doc"""\nX = 2\n')
    assert stage_code("knowledge")[0] != before


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_stage_versions.py --update")
    sys.path.insert(0, str(ROOT))
    LOCK.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")
    print(f"recorded {LOCK}")
