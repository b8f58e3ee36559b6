"""Content-addressed stage cache: every stage of a study is keyed by a digest of what determines it.

A stage's output lives in ``$FIRST_HOME/stages/<stage>-<key>/``. The key is a content hash of the
stage's inputs as the caller describes them — content digests of its data and models
(:mod:`first_eval.digest`), its recipe, its seed — plus the package version and the format
version of the stage kind (:data:`first_eval.digest.STAGE_VERSIONS`). So a change to any input or
to the code's declared version gives a new key, and the same inputs give the same key on every run.

The directory is complete when its ``DONE`` marker exists (written last, after every file in the
directory has been flushed to disk). :meth:`Stage.ensure` computes a missing stage under a lock
file held while it computes (:class:`first_eval.locks.ProcessLock`): a second process that
wants the same stage waits, then finds ``DONE`` and reuses it; a stage whose process was killed is
picked up again (training stages resume from their own checkpoints inside the directory).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from first_eval.digest import code_version, content_hash
from first_eval.fileio import fsync_tree, write_json_atomic
from first_eval.locks import ProcessLock

__all__ = ["DONE", "STAGE_KINDS", "Stage", "stage", "stage_key"]

DONE = "DONE"
INPUTS = "inputs.json"
LOCK = ".lock"

STAGE_KINDS: dict[str, tuple[str, ...]] = {"store": ("extract", "calibrate")}
"""Stages that run the code of several stage kinds (a store is extracted, then calibrated)."""


def stage_key(name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(key, record)``: the 16-hex-digit key of stage ``name`` and the record it hashes."""
    record = {"stage": name, "code": code_version(*STAGE_KINDS.get(name, (name,))), **inputs}
    return content_hash(record), record


@dataclass(frozen=True)
class Stage:
    """One cached stage: ``name``, ``key`` (content hash of its inputs) and its directory."""

    name: str
    key: str
    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def done(self) -> bool:
        return (self.path / DONE).is_file()

    def mark_done(self, summary: dict[str, Any] | None = None) -> None:
        fsync_tree(self.path)  # everything the marker vouches for is on disk before the marker
        write_json_atomic(self.path / DONE, summary or {})

    def summary(self) -> dict[str, Any]:
        return json.loads((self.path / DONE).read_text()) if self.done else {}

    def lock(self, *, on_wait: Callable[[str], None] | None = None) -> ProcessLock:
        return ProcessLock(self.path / LOCK, what=f"stage {self.id}", on_wait=on_wait)

    def ensure(self, compute: Callable[[Stage], dict[str, Any] | None], *,
               on_wait: Callable[[str], None] | None = None) -> bool:
        """Compute this stage unless it is done; return whether it was computed here.

        ``compute(stage)`` writes the stage's files into :attr:`path` and returns the summary
        stored in ``DONE``. It runs under the stage's lock, so two processes never compute one
        stage at once; the one that waited finds the other's result and returns ``False``.
        """
        if self.done:
            return False
        with self.lock(on_wait=on_wait):
            if self.done:
                return False
            self.mark_done(compute(self))
        return True


def stage(name: str, inputs: dict[str, Any], *, root: Path | None = None) -> Stage:
    """The cache slot for stage ``name`` with these ``inputs`` (created, not yet done)."""
    from first_eval.zoo import first_home

    key, record = stage_key(name, inputs)
    path = (root or first_home() / "stages") / f"{name}-{key}"
    path.mkdir(parents=True, exist_ok=True)
    if not (path / INPUTS).exists():
        write_json_atomic(path / INPUTS, record)
    return Stage(name=name, key=key, path=path)
