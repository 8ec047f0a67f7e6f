"""The one base class of every error a user can cause or fix.

The ``simulate`` command's one error handler (:func:`simulate.cli.handler.run_command`)
prints an error of this class as one line on stderr and exits with code 2; anything
else is an internal error (a bug, exit code 1).  A new stage's user-facing error only
has to subclass it.  The message of a ``SimulateError`` is one line.
"""

from __future__ import annotations

__all__ = ["SimulateError", "RunError"]


class SimulateError(ValueError):
    """An error the user can cause or fix (a bad input, a busy or damaged run directory, a full disk, ...).

    Subclasses ``ValueError`` so that code catching ``ValueError`` keeps working.
    """


class RunError(SimulateError):
    """A run that cannot start, resume or finish; the message is one line (see :mod:`simulate.runner`)."""
