"""Worker processes that die with their parent.

A loky worker is a child of the run's process.  Should that process be killed
(SIGKILL: no chance to shut its pool down), the workers would live on, computing
and holding the run's standard output and error, so that ``simulate run ... | cat``
never returned.  :func:`die_with_parent` runs first in every worker (the pool's
initializer) and makes sure they do not outlive it:

* on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker the
  moment its parent ends;
* everywhere, a daemon thread that polls ``os.getppid()`` and kills the worker once
  it changes (the worker was re-parented), within :data:`POLL_SECONDS`, as soon as
  the worker's own code lets the thread run.

Once the workers are gone, loky's resource trackers see the end of their pipe and
exit too.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

__all__ = ["die_with_parent", "POLL_SECONDS"]

POLL_SECONDS = 0.25
PR_SET_PDEATHSIG = 1
_installed = False


def die_with_parent(parent: int | None = None) -> None:
    """Tie this process's life to its parent's (idempotent).

    ``parent`` is the PID the parent had when it started the pool (default: the
    current parent); a worker whose parent is already another process exits at once.
    """
    global _installed
    if _installed:
        return
    _installed = True
    if parent is None:
        parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except Exception:  # no libc prctl: the watcher alone
            pass
    if os.getppid() != parent:  # the parent ended before prctl took effect
        os._exit(1)

    def watch():
        while True:
            time.sleep(POLL_SECONDS)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="simulate-lifeline", daemon=True).start()
