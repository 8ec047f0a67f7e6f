"""The one error handler of the ``simulate`` command.

:func:`run_command` runs a parsed command (``args.func``) and turns whatever it raises
into an exit code and at most one line on stderr:

- a :class:`~simulate.errors.SimulateError` (every stage's user-facing errors subclass it):
  its message, after the command's ``error_prefix`` if it has one; exit code 2;
- Ctrl-C: "simulate: interrupted", 130; a closed pipe (``simulate draw ... | head``): 0;
- a file that cannot be read or written, memory, a TOML file nested too deeply: one line, 2;
- anything else is a bug: "simulate: internal error: ..." and exit code 1.

numpy's RuntimeWarnings are counted, not printed.
"""

from __future__ import annotations

import contextlib
import os
import sys

from .. import __version__
from ..errors import SimulateError
from ._common import MAX_MESSAGE

__all__ = ["run_command", "user_errors", "one_line", "say"]


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that are the user's to fix (exit code 2): the one base class.

    Returns
    -------
    tuple of type
        ``(SimulateError,)``: every stage's user-facing error class subclasses it.
    """
    return (SimulateError,)


def one_line(msg: str) -> str:
    r"""A message on one line: newlines shown as ``\n``, at most MAX_MESSAGE characters.

    Parameters
    ----------
    msg
        Any message.

    Returns
    -------
    str
        The message on one line.
    """
    msg = str(msg).replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r").strip()
    return msg if len(msg) <= MAX_MESSAGE else msg[:MAX_MESSAGE] + f" ... [{len(msg):,} characters]"


def say(msg: str) -> None:
    """Print one line on stderr (nothing if stderr is gone).

    Parameters
    ----------
    msg
        The message (made one line by :func:`one_line`).
    """
    with contextlib.suppress(OSError, ValueError):
        print(one_line(msg), file=sys.stderr, flush=True)


def _from_toml(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if "tomllib" in tb.tb_frame.f_code.co_filename or "tomli" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _input_name(args) -> str:
    for name in ("file", "design", "directory", "name"):
        value = getattr(args, name, None)
        if isinstance(value, str):
            return value
    return "the input"


def run_command(args) -> int:
    """Run ``args.func(args)`` under the one error handler; returns the exit code.

    Parameters
    ----------
    args
        The parsed arguments: ``func`` (the command) and optionally ``error_prefix`` (put
        before a user error's message, e.g. ``"simulate analyze: error: "``).

    Returns
    -------
    int
        0 (or the command's own code), 2 for a user error, 130 for Ctrl-C, 1 for a bug.
    """
    from ..runner import _counting_warnings

    counter = [0]
    try:
        with _counting_warnings(counter):
            code = int(args.func(args) or 0)
        if counter[0]:
            say(f"simulate: note: {counter[0]:,} numerical warning(s) from numpy (overflow or invalid values, "
                "usually from extreme inputs) were counted and not printed")
        return code
    except user_errors() as exc:
        say(f"{getattr(args, 'error_prefix', '')}{exc}")
        return 2
    except KeyboardInterrupt:
        say("simulate: interrupted")
        return 130
    except BrokenPipeError:  # the reader went away (simulate draw ... | head)
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0
    except RecursionError as exc:
        if _from_toml(exc):
            say(f"{_input_name(args)}: nested too deeply to read (more than {sys.getrecursionlimit()} levels "
                "of tables or arrays)")
            return 2
        return _internal(exc)
    except MemoryError:
        say("simulate: out of memory; use smaller inputs (or for a run fewer --jobs or a smaller --chunk, "
            "then --resume)")
        return 2
    except OSError as exc:  # a path, a permission, a full disk
        from .._lock import describe_os_error

        say(describe_os_error(exc))
        return 2
    except Exception as exc:  # never a traceback for the user
        return _internal(exc)


def _internal(exc: BaseException) -> int:
    say(f"simulate: internal error: {exc.__class__.__name__}: {exc} (a bug: please report it with the command "
        f"line and the output of `simulate --version`, {__version__})")
    return 1
