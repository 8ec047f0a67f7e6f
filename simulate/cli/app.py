"""The parser of the ``simulate`` command and :func:`main`."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from . import cache, data, runs, scenarios, sensitivity, stress
from .handler import run_command

__all__ = ["main", "parser", "OneLineParser"]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit code 2).

    argparse prints the usage and then the error; here the line names the problem and
    points at ``--help`` (which is argparse's, unchanged).
    """

    def error(self, message: str):
        """Print ``PROG: error: MESSAGE (see PROG --help)`` on stderr and exit with code 2.

        Parameters
        ----------
        message
            argparse's description of the problem.
        """
        message = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    """The parser of every subcommand (each sets ``func``, and ``error_prefix`` where it has one).

    Returns
    -------
    argparse.ArgumentParser
        The ``simulate`` parser.
    """
    ap = OneLineParser(prog="simulate", description="A Monte Carlo laboratory for multisite, "
                       "multi-mediator instrumental variables (MSMM-IV).")
    ap.add_argument("--version", action="version", version=f"simulate {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    scenarios.add_commands(sub)  # validate, truth, draw, list, show
    runs.add_commands(sub)  # run, summarize, plot
    data.add_commands(sub)  # analyze, calibrate
    stress.add_commands(sub)  # stress-test
    cache.add_commands(sub)  # cache --prune
    sensitivity.add_commands(sub)  # sensitivity, data
    return ap


def main(argv: list[str] | None = None) -> int:
    """The ``simulate`` command: parse ``argv`` (default ``sys.argv[1:]``), run, return the exit code.

    Parameters
    ----------
    argv
        The arguments after ``simulate``.

    Returns
    -------
    int
        0 on success, 2 for a user error, 130 for Ctrl-C, 1 for a bug (see :mod:`simulate.cli.handler`).
    """
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    return run_command(args)
