"""Fault injection for the durability tests: kill this process at a named point.

A long job must survive ``kill -9`` anywhere. The tests prove it by killing a real run at chosen
points — mid-scoring, mid-training, between the metrics files, mid-publishing — and resuming.
:func:`crash_point` marks such a point; it does nothing unless ``$FIRST_CRASH_AT`` names it.

``FIRST_CRASH_AT=NAME`` kills at the first time ``NAME`` is reached, ``NAME#N`` at the N-th time
(counted per process). The kill is ``SIGKILL``: no ``finally`` block, no atexit handler, no
flush runs — exactly what a power cut or the OOM killer leaves behind.

Points: ``score-batch`` (after each scored batch), ``train-step`` (after each optimizer step),
``metrics`` (the predictions table of a run written, its metrics not yet),
``publish`` (a finished run directory moved in, the previous one not yet removed).
"""

from __future__ import annotations

import os
import signal

__all__ = ["CRASH_ENV", "crash_point"]

CRASH_ENV = "FIRST_CRASH_AT"
_reached: dict[str, int] = {}


def crash_point(name: str) -> None:
    """SIGKILL this process if ``$FIRST_CRASH_AT`` is ``name`` (or ``name#N`` and this is the N-th time)."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted or not wanted.startswith(name):
        return
    point, _, nth = wanted.partition("#")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == (int(nth) if nth.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)
