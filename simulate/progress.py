"""What a user sees while a run runs: replications done, of how many, and when the rest will be done.

The clock of the estimate starts with the first replication, not with the run: kernel
compilation (done in the parent before any worker starts, :func:`simulate.runner.run`),
worker start-up and the directory checks are not in it.  The first batch to finish says
how long it computed (its worker seconds), so the clock starts when that batch started;
from then on the estimate is the time per replication so far times the replications left.

With a terminal (stderr a TTY) the progress is a tqdm bar, redrawn every second; without one, a line::

    simulate: progress: 1,200/4,000 replications (30%), 0:00:45 elapsed, ETA 0:01:45

is printed every ``interval`` seconds (10 by default) by a background thread, whether or
not a batch finished meanwhile, and a last one when the run ends, if any was printed.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "INTERVAL", "clock_text"]

INTERVAL = 10.0
"""Seconds between two progress lines without a terminal."""
BAR_REFRESH = 1.0
"""Seconds between two redraws of the bar while no batch finishes (its clock and estimate move on)."""


def clock_text(seconds: float | None) -> str:
    """Seconds as ``H:MM:SS`` (``?`` when unknown).

    Parameters
    ----------
    seconds : float or None
        A duration.

    Returns
    -------
    str
    """
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """Replications done of ``total``, shown on stderr: a tqdm bar on a terminal, else a line at an interval.

    Parameters
    ----------
    total : int
        Replications this run computes.
    quiet : bool
        Show nothing.
    interval : float
        Seconds between two lines without a terminal.
    stream : file, optional
        Where to write (default: ``sys.stderr``).
    tty : bool, optional
        Whether ``stream`` is a terminal (default: ``stream.isatty()``).
    clock : callable, optional
        Seconds of a monotonic clock (a test's fake).

    Notes
    -----
    Use as a context manager: the bar or the line thread starts on entry and stops on exit.
    """

    def __init__(self, total: int, *, quiet: bool = False, interval: float = INTERVAL, stream: TextIO | None = None,
                 tty: bool | None = None, clock: Callable[[], float] = time.monotonic):
        self.total = int(total)
        self.done = 0
        self.interval = float(interval)
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.mode = "off"
        if not quiet and self.total > 0:
            is_tty = self.stream.isatty() if tty is None else tty
            self.mode = "bar" if is_tty else "lines"
        self.started: float | None = None  # when the progress began (after the warm-up)
        self.origin: float | None = None  # when the first replication began
        self.lines_printed = 0
        self._bar = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- the estimate -------------------------------------------------------

    def update(self, n: int, seconds: float | None = None) -> None:
        """Count ``n`` more replications done, which took ``seconds`` to compute (a batch's worker time).

        Parameters
        ----------
        n : int
            Replications just finished.
        seconds : float, optional
            Their compute time; the first batch's places the start of the clock.
        """
        now = self.clock()
        with self._lock:
            if self.origin is None:
                took = seconds if seconds is not None and seconds >= 0 else 0.0
                self.origin = max(now - took, self.started if self.started is not None else -math.inf)
            self.done += n
        if self._bar is not None:
            self._bar.set_postfix_str(self._bar_postfix(now), refresh=False)
            self._bar.update(n)

    def eta(self, now: float | None = None) -> float | None:
        """Seconds until every replication is done, from the time per replication since the first; None before.

        Parameters
        ----------
        now : float, optional
            The clock's time (default: now).

        Returns
        -------
        float or None
        """
        now = self.clock() if now is None else now
        with self._lock:
            done, origin = self.done, self.origin
        if origin is None or done <= 0:
            return None
        if done >= self.total:
            return 0.0
        spent = max(now - origin, 0.0)
        return spent / done * (self.total - done)

    def rate(self, now: float | None = None) -> float | None:
        """Replications per second since the first began (None before the first is done)."""
        now = self.clock() if now is None else now
        if self.origin is None or self.done <= 0 or now <= self.origin:
            return None
        return self.done / (now - self.origin)

    def line(self, now: float | None = None) -> str:
        """The progress line printed without a terminal.

        Parameters
        ----------
        now : float, optional
            The clock's time (default: now).

        Returns
        -------
        str
        """
        now = self.clock() if now is None else now
        elapsed = now - self.started if self.started is not None else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (f"simulate: progress: {self.done:,}/{self.total:,} replications ({pct:.0f}%), "
                f"{clock_text(elapsed)} elapsed, ETA {clock_text(self.eta(now))}")

    def _bar_postfix(self, now: float) -> str:
        eta, r = self.eta(now), self.rate(now)
        text = "?" if eta is None else self._bar.format_interval(eta)  # as tqdm writes the elapsed time
        return f"ETA {text}" + (f", {r:,.1f} rep/s" if r is not None else "")

    # -- showing it ---------------------------------------------------------

    def __enter__(self) -> Progress:
        self.started = self.clock()
        if self.mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, unit="rep", desc="replications", file=self.stream,
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
                             postfix="ETA ?")
        if self.mode != "off":
            self._thread = threading.Thread(target=self._tick, name="simulate-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _print(self, text: str) -> None:
        with self._lock:
            self.lines_printed += 1
        print(text, file=self.stream, flush=True)

    def _tick(self) -> None:
        if self._bar is not None:
            while not self._stop.wait(BAR_REFRESH):
                self._bar.set_postfix_str(self._bar_postfix(self.clock()), refresh=False)
                self._bar.refresh()
            return
        while not self._stop.wait(self.interval):
            self._print(self.line())

    def close(self) -> None:
        """Stop the thread and the bar; without a terminal, a last line if any was printed."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            if self.mode == "lines" and self.lines_printed:
                self._print(self.line())
        if self._bar is not None:
            self._bar.close()
            self._bar = None
