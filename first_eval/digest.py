"""Content digests: what identifies a cached result's inputs (below the study runner and ``first_train``).

A cached result may be served only while its inputs still produce it, so every cache key is built
from the *content* of what the computation reads, never from names, sizes or modification times
(the rule DVC and HF ``datasets``' fingerprints follow):

- :func:`content_hash` — a JSON-able value (a recipe, a config): canonical JSON, SHA-256;
- :func:`file_digest` — a file's bytes;
- :func:`items_digest` — a dataset as the computation sees it: the loaded items (ids, questions,
  options, labels, subjects, splits), so editing a JSONL answer or changing the code that builds
  a built-in dataset changes it, and re-formatting a file without changing an item does not;
- :func:`model_digest` — a model spec's weights: a local directory by the bytes of the files that
  loading reads (safetensors, config, tokenizer), the built-in model by its GGUF file's bytes;
- :func:`code_version` — the package version and a per-stage format version
  (:data:`STAGE_VERSIONS`) that a developer bumps when a stage's computation changes.

Hashing a 540 MB model takes about half a second, so file digests are memoized in
``$FIRST_HOME/digests`` under the file's ``(device, inode, size, mtime, ctime)``: a file that is
rewritten, replaced or copied gets a new stat and is hashed again (git's index does the same);
an unchanged file is never re-read.

Example
-------
>>> content_hash({"b": 1, "a": [1, 2]}) == content_hash({"a": [1, 2], "b": 1})
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "STAGE_VERSIONS",
    "code_version",
    "content_hash",
    "dir_digest",
    "file_digest",
    "items_digest",
    "model_digest",
]

DIGEST_HEX = 16

STAGE_VERSIONS: dict[str, int] = {
    "score": 1,       # first_eval.scorer, prompts, zoo: a model's predictions on a dataset
    "finetune": 3,    # first_train.finetune, trainer, data, losses (ce); 2-3: fused AdamW, new options
    "extract": 1,     # first_train.extract, store: a teacher's top-k
    "calibrate": 1,   # first_train.calibrate, reshape: the re-shaping temperature c
    "distill": 3,     # first_train.distill, trainer, losses, reshape; 2-3: fused AdamW, new options
    "posthoc": 2,     # first_eval.calibrators: post-hoc calibration; 2: fitted on validation or cross-fitted
    "heldout": 1,     # first_train.calibrate, first_eval.arms: the re-shaped teacher against the raw one on test
    "knowledge": 1,   # first_eval.knowledge: top-k mass of a model's next-token distributions
    "metrics": 3,     # first_eval.results, arms, calibration, bootstrap: a study's metric rows and paired tests; 2: AURC exact to 4e-14; 3: arms (seeds), Holm
}
"""Format version of each stage kind. Bump a stage's number in the same commit as any change to
what it computes; every cached result of that kind is then recomputed. ``tests/test_stage_versions.py``
fails when the code a stage runs changes while its number stays the same."""

# Files of a model directory that loading does not read (bookkeeping of the tools that wrote it).
_NOT_WEIGHTS = frozenset({"first_train.json", ".first-train-run.json", "first-conversion.json",
                          "first-source.json", "DONE", "inputs.json", "README.md"})
_NOT_WEIGHT_DIRS = frozenset({"checkpoints", "resume"})
_memo: dict[tuple, str] = {}


def _package_version() -> str:
    from first_eval import __version__

    return __version__


def content_hash(obj: Any) -> str:
    """A 16-hex-digit SHA-256 of ``obj`` as canonical JSON (sorted keys, compact separators)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:DIGEST_HEX]


def code_version(*stages: str) -> dict[str, Any]:
    """``{"package": <version>, "<stage>": <format version>, …}`` for the stage kinds named."""
    unknown = [s for s in stages if s not in STAGE_VERSIONS]
    if unknown:
        raise KeyError(f"Expected a stage kind in {sorted(STAGE_VERSIONS)}, got {unknown[0]!r}")
    return {"package": _package_version(), **{s: STAGE_VERSIONS[s] for s in stages}}


# --------------------------------------------------------------------------- files


def _stat_key(path: Path) -> tuple:
    st = os.stat(path)
    return (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _memo_file(real: Path) -> Path:
    from first_eval.zoo import first_home

    name = hashlib.sha256(str(real).encode()).hexdigest()[:24]
    return first_home() / "digests" / f"{name}.json"


def file_digest(path: str | os.PathLike, *, memo: bool = True) -> str:
    """SHA-256 (16 hex digits) of a file's bytes.

    Parameters
    ----------
    path : path-like
    memo : bool, default=True
        Reuse a digest recorded for this very file (same device, inode, size, mtime and ctime),
        in this process or in ``$FIRST_HOME/digests``; any change to the file re-hashes it.
    """
    real = Path(os.path.realpath(path))
    key = _stat_key(real)
    if memo and key in _memo:
        return _memo[key]
    record = _memo_file(real) if memo else None
    if record is not None:
        try:
            saved = json.loads(record.read_text())
            if tuple(saved.get("stat", ())) == key[1:] and saved.get("path") == key[0]:
                _memo[key] = saved["sha256"]
                return saved["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    h = hashlib.sha256()
    with open(real, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    digest = h.hexdigest()[:DIGEST_HEX]
    if _stat_key(real) != key:  # changed while being read: do not remember a torn digest
        return digest
    _memo[key] = digest
    if record is not None:
        from first_eval.fileio import write_json_atomic

        try:
            write_json_atomic(record, {"path": key[0], "stat": list(key[1:]), "sha256": digest})
        except OSError:
            pass  # a read-only cache only costs a re-hash next time
    return digest


def dir_digest(root: str | os.PathLike, *, skip_names: Iterable[str] = (),
               skip_dirs: Iterable[str] = ()) -> str:
    """Digest of a directory: every file's relative path and bytes (hidden entries left out)."""
    root = Path(root)
    skip_names, skip_dirs = set(skip_names), set(skip_dirs)
    entries = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip_dirs and not d.startswith("."))
        for name in sorted(files):
            if name in skip_names or name.startswith("."):
                continue
            path = Path(directory) / name
            entries.append([path.relative_to(root).as_posix(), file_digest(path)])
    return content_hash(sorted(entries))


# --------------------------------------------------------------------------- datasets and models


def items_digest(items: Iterable[Any]) -> str:
    """Digest of a sequence of dataset items (dataclasses such as :class:`first_eval.data.Item`), in order."""
    return content_hash([list(dataclasses.astuple(it)) if dataclasses.is_dataclass(it) else it for it in items])


def model_digest(spec: str) -> str:
    """What identifies a model spec's weights, for cache keys.

    - a local directory (a ``first-train`` output, a checkpoint, any HF directory): the bytes of
      every file loading reads — ``*.safetensors``, ``config.json``, the tokenizer files — so a
      copy with other weights never collides, and a re-trained model with bit-identical weights
      is recognized as the same; its ``checkpoints/``, optimizer ``resume/`` state and the
      trainer's bookkeeping are left out;
    - ``smollm2-135m`` and ``.gguf`` files: the GGUF file's bytes (plus the conversion's version);
    - a hub id: the id itself (a hub model is not on disk to hash).

    A ``:layers=`` selection is kept as a suffix: a student is its base's weights and the layers.
    """
    from first_eval.zoo import CONVERSION_VERSION, resolve

    ms = resolve(spec)
    suffix = "" if ms.layers is None else ":layers=" + ",".join(map(str, ms.layers))
    if ms.kind in ("smollm2", "gguf"):
        return f"gguf:{file_digest(ms.path)}:v{CONVERSION_VERSION}{suffix}"
    if ms.kind == "local":
        return "dir:" + dir_digest(ms.path, skip_names=_NOT_WEIGHTS, skip_dirs=_NOT_WEIGHT_DIRS) + suffix
    return f"hub:{ms.path}{suffix}"
