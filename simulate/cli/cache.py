"""``simulate cache --prune``: delete the compiled-kernel cache folders of other kernel sources."""

from __future__ import annotations

from ._common import UsageError

__all__ = ["add_commands", "cmd_cache"]


def add_commands(sub) -> None:
    """Register ``cache`` on an argparse subparsers object.

    Parameters
    ----------
    sub
        The object ``ArgumentParser.add_subparsers`` returned.
    """
    p = sub.add_parser("cache", help="housekeeping of the compiled kernels' cache (--prune)",
                       description="The compiled Numba kernels are cached on disk, one folder per version of "
                                   "the kernel sources; --prune deletes the folders of other versions.")
    p.add_argument("--prune", action="store_true", help="delete the cache folders of other kernel sources")
    p.set_defaults(func=cmd_cache)


def cmd_cache(args) -> int:
    """``simulate cache --prune``: :func:`simulate.kernels.prune_cache`, and what it removed."""
    if not args.prune:
        raise UsageError("cache: nothing to do; give --prune to delete stale kernel cache folders")
    from ..kernels import prune_cache

    removed = prune_cache()
    print(f"removed {len(removed)} stale kernel cache folder(s)")
    for path in removed:
        print(f"  {path}")
    return 0
