"""The ``simulate`` command.

One module per command group, one error handler for all of them:

- :mod:`~simulate.cli.app`: the parser (every subcommand's arguments) and :func:`main`;
- :mod:`~simulate.cli.handler`: the one error handler.  Every failure the user can cause
  or fix (a :class:`~simulate.errors.SimulateError`, whatever its stage) is one line on
  stderr and exit code 2 (130 for Ctrl-C); an unexpected failure (a bug) is one line,
  "internal error", and exit code 1; never a traceback.  A usage error (a missing or
  unknown argument) is one line too, exit code 2; ``--help`` is argparse's;
- :mod:`~simulate.cli.scenarios`: ``validate``, ``truth``, ``draw``, ``list``, ``show``;
- :mod:`~simulate.cli.runs`: ``run``, ``summarize``, ``plot``;
- :mod:`~simulate.cli.data`: ``analyze`` and ``calibrate`` (real data);
- :mod:`~simulate.cli.stress`: ``stress-test``;
- :mod:`~simulate.cli.cache`: ``cache --prune``.

The work is done by the stage modules (:mod:`simulate.runner`, :mod:`simulate.analyze`, ...);
the command modules only read arguments, call them and print.
"""

from __future__ import annotations

from ._common import MAX_MESSAGE, MAX_SEED, MAX_TRUTH_SITES, MIN_TRUTH_SITES, SCENARIO_DIR, UsageError
from .app import main, parser
from .handler import run_command, user_errors

__all__ = ["main", "parser", "run_command", "user_errors", "UsageError", "SCENARIO_DIR", "MAX_SEED",
           "MIN_TRUTH_SITES", "MAX_TRUTH_SITES", "MAX_MESSAGE"]
