"""An exclusive lock on a run directory, held for the whole run.

The lock is an OS file lock (``flock``) on ``DIR/.lock``: the kernel releases it when
the process that holds it ends, however it ends (SIGKILL included), so a killed run
never leaves a stale lock behind.  The holder writes its PID into the file so that a
second run can say who holds the directory, and empties it before it lets the lock
go; a second run that finds the lock held waits up to :data:`PID_WAIT` seconds for the
PID of a live holder (the holder writes it just after it takes the lock).  The file
itself stays (removing it would race with a run that has just opened it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

from .errors import RunError

__all__ = ["LOCK_NAME", "DirectoryBusy", "DirectoryLock", "describe_os_error"]

LOCK_NAME = ".lock"
PID_WAIT = 2.0
"""Seconds a second run waits for the holder's PID to appear in the lock file (for its message)."""


class DirectoryBusy(RunError):
    """Another process holds the run directory's lock."""


def describe_os_error(exc: OSError, path: Path | str | None = None) -> str:
    """One line for an OSError a user can fix (no such directory, a file in the way, permissions, disk full)."""
    where = exc.filename if exc.filename is not None else path
    code = exc.errno
    if code == errno.ENOSPC:
        why = "no space left on device (disk full)"
    elif code == errno.EDQUOT:
        why = "disk quota exceeded"
    elif code in (errno.EACCES, errno.EPERM):
        why = "permission denied"
    elif code == errno.EROFS:
        why = "read-only file system"
    elif code == errno.ENOTDIR:
        why = "a part of the path is a file, not a directory"
    elif code == errno.EEXIST:
        why = "exists and is not a directory"
    elif code == errno.ENOENT:
        why = "no such file or directory"
    else:
        why = exc.strerror or str(exc)
    return f"{where}: {why}" if where is not None else why


class DirectoryLock:
    """``with DirectoryLock(path):`` creates ``path`` if needed and holds its lock.

    Raises
    ------
    DirectoryBusy
        Another process holds the lock (one line naming its PID).
    RunError
        The directory cannot be created or the lock file not opened (one line).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.fd: int | None = None
        self.note: str | None = None  # set when the file system cannot lock

    def acquire(self) -> DirectoryLock:
        path = self.path
        try:
            if path.exists() and not path.is_dir():
                raise RunError(f"{path}: is a file, not a directory; choose another --out")
            path.mkdir(parents=True, exist_ok=True)
            fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except RunError:
            raise
        except OSError as exc:
            raise RunError(describe_os_error(exc, path) + "; choose another --out") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    holder = _holder(fd)
                    os.close(fd)
                    who = f"PID {holder}" if holder else "a process that has not written its PID yet"
                    raise DirectoryBusy(f"{path}: another run ({who}) holds this directory; wait for it to end "
                                        "or choose another --out") from None
                # a file system without locks (some network file systems): run, but say so
                self.note = f"{path}: the file system cannot lock ({exc.strerror}); do not start two runs here at once"
        try:  # written, then cut to its length: the file is never empty while held
            text = f"{os.getpid()}\n".encode()
            os.pwrite(fd, text, 0)
            os.ftruncate(fd, len(text))
        except OSError:
            pass  # the PID is only for the message of a second run
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            try:
                with contextlib.suppress(OSError):  # no stale PID for the next run's message
                    os.ftruncate(self.fd, 0)
                if fcntl is not None:
                    fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _holder(fd: int, wait: float | None = None) -> int | None:
    """The PID of the live process holding the lock, waiting up to ``wait`` seconds for it to write it; or None."""
    deadline = time.monotonic() + (PID_WAIT if wait is None else wait)
    while True:
        pid = _read_pid(fd)
        if pid is not None and _alive(pid):
            return pid
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
