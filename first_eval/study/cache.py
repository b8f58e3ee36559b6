"""Content-addressed stage cache: every stage of a study is keyed by a hash of its inputs.

A stage's output lives in ``$FIRST_HOME/stages/<stage>-<key>/``. The directory is complete when
its ``DONE`` marker exists (written last, atomically); a re-run with nothing changed finds the
marker and skips the stage, a change of any input gives a new key, and a killed stage is picked
up again (training stages resume from their own checkpoints inside the directory).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from first_eval.fileio import write_json_atomic
from first_eval.zoo import first_home

DONE = "DONE"


def content_hash(obj: Any) -> str:
    """A 16-hex-digit SHA-256 of ``obj`` as canonical JSON (sorted keys)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_digest(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (16 hex digits)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Stage:
    """One cached stage: ``name``, ``key`` (content hash of its inputs) and its directory."""

    name: str
    key: str
    path: Path

    @property
    def done(self) -> bool:
        return (self.path / DONE).is_file()

    def mark_done(self, summary: dict[str, Any] | None = None) -> None:
        write_json_atomic(self.path / DONE, summary or {})

    def summary(self) -> dict[str, Any]:
        return json.loads((self.path / DONE).read_text()) if self.done else {}


def stage(name: str, inputs: dict[str, Any], *, root: Path | None = None) -> Stage:
    """The cache slot for stage ``name`` with these ``inputs`` (created, not yet done)."""
    key = content_hash({"stage": name, **inputs})
    path = (root or first_home() / "stages") / f"{name}-{key}"
    path.mkdir(parents=True, exist_ok=True)
    inputs_file = path / "inputs.json"
    if not inputs_file.exists():
        write_json_atomic(inputs_file, {"stage": name, **inputs})
    return Stage(name=name, key=key, path=path)
