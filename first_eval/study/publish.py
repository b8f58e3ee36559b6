"""Putting a finished run directory in place in one step, so that no file of an earlier run
survives beside the new one and a reader never sees half of either.

The run is written into a hidden sibling ``.NAME.partial``; :func:`publish` then replaces ``NAME``
with it whole: on Linux by ``renameat2(RENAME_EXCHANGE)``, which swaps the two directories
atomically (a reader sees the old run or the new one, never neither), elsewhere by moving the
old run aside to ``.NAME.old``, renaming the new one in, and only then removing the old one.
:func:`recover` undoes a publish cut short between those two renames (the old run is put back).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
from pathlib import Path

from first_eval.faults import crash_point
from first_eval.fileio import fsync_dir, fsync_tree

__all__ = ["aside_path", "publish", "recover", "staging_path"]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def staging_path(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def aside_path(out: Path) -> Path:
    return out.parent / f".{out.name}.old"


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directory entries (Linux ``renameat2``); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def recover(out: Path) -> None:
    """Tidy after a publish that was killed: put the old run back if the new one never arrived,
    and remove what a finished publish left behind."""
    aside = aside_path(out)
    if aside.exists():
        if out.exists():
            shutil.rmtree(aside)
        else:
            os.replace(aside, out)
        fsync_dir(out.parent)


def publish(work: Path, out: Path) -> None:
    """Replace ``out`` (if any) by the finished directory ``work``, whole and durably."""
    fsync_tree(work)
    if not out.exists():
        os.replace(work, out)
        fsync_dir(out.parent)
        return
    if _exchange(work, out):  # ``work`` now holds the previous run
        fsync_dir(out.parent)
        crash_point("publish")
        shutil.rmtree(work)
        return
    aside = aside_path(out)
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(out, aside)
    crash_point("publish")
    os.replace(work, out)
    fsync_dir(out.parent)
    shutil.rmtree(aside)
