"""An inter-process lock that says who holds it and survives its holder's death.

Two studies sharing one ``$FIRST_HOME`` must not compute the same stage at once: the second waits
for the first, then reuses its result. :class:`ProcessLock` is that guard, one lock file per
stage:

- exclusion comes from ``flock(2)`` on the lock file, which the kernel releases when the holder
  exits in any way, ``kill -9`` included — so a killed run never blocks the next one;
- the file records its holder (``pid``, ``host``, the process's start time and what it is
  doing), so a waiter can say whom it waits for, and a lock still held by a *dead* process (a
  forked child that inherited the descriptor and outlived it) is detected and broken: the stale
  file is unlinked and a fresh one taken;
- the holder unlinks the file when it is done; a waiter that locked a file already unlinked
  notices (the path no longer names its inode) and tries again.

This relies on ``flock`` working on the cache's file system, as it does on local disks; on a
network file system whose ``flock`` is a no-op, two hosts are not guarded against each other.

Example
-------
>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "stage.lock"
>>> with ProcessLock(path, what="an example"):
...     path.exists()
True
>>> path.exists()
False
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ProcessLock", "lock_owner"]

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 of proc(5), counted after "(comm)"


def _alive(owner: dict[str, Any]) -> bool:
    """Whether the process recorded in ``owner`` still runs (on this host)."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    started = owner.get("process_start")
    return started is None or _process_start(pid) in (None, started)


def lock_owner(path: str | os.PathLike) -> dict[str, Any] | None:
    """The holder recorded in a lock file (``pid``, ``host``, ``since``, ``what``), or None."""
    try:
        owner = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def describe(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "another process"
    return f"pid {owner.get('pid')} on {owner.get('host')} (since {owner.get('since', '?')})"


class ProcessLock:
    """Hold ``path`` exclusively among processes while the ``with`` block runs.

    Parameters
    ----------
    path : path-like
        The lock file (created; removed on release).
    what : str, default=""
        What the holder does, recorded for waiters' messages.
    poll : float, default=0.5
        Seconds between attempts while another process holds the lock.
    on_wait : callable ``(message: str) -> None``, optional
        Told once when this process starts waiting, and once per stale lock broken.
    """

    def __init__(self, path: str | os.PathLike, *, what: str = "", poll: float = 0.5,
                 on_wait: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.what = what
        self.poll = poll
        self.on_wait = on_wait or (lambda message: None)
        self._fd: int | None = None
        self._suspect: dict[str, Any] | None = None

    def _try_once(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the holder we waited for unlinked this file: lock the new one
            os.close(fd)
            return False
        previous = os.read(fd, 1 << 16)
        if previous:
            try:
                owner = json.loads(previous)
            except ValueError:
                owner = None
            self.on_wait(f"took over the lock of {describe(owner)}, which ended without releasing it")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
              "since": _dt.datetime.now().isoformat(timespec="seconds"), "what": self.what}
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(me).encode())
        os.fsync(fd)
        self._fd = fd
        return True

    def _break_if_stale(self) -> bool:
        """Unlink a lock file still held although its recorded holder is dead (seen twice, one
        poll apart, so a live process that has just taken over a dead one's file and not yet
        written itself into it is never mistaken for it)."""
        owner = lock_owner(self.path)
        stale = bool(owner) and owner.get("host") == socket.gethostname() and not _alive(owner)
        suspect, self._suspect = self._suspect, (owner if stale else None)
        if stale and owner == suspect:
            self._suspect = None
            self.on_wait(f"broke a stale lock: {describe(owner)} no longer runs")
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            return True
        return False

    def acquire(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        told = False
        while not self._try_once():
            if self._break_if_stale():
                continue
            if not told:
                self.on_wait(f"waiting for {describe(lock_owner(self.path))}, which is computing "
                             f"{(lock_owner(self.path) or {}).get('what') or self.path.name}")
                told = True
            time.sleep(self.poll)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> ProcessLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
