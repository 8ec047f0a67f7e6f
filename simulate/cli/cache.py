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
    from .. import kernels

    prune = getattr(kernels, "prune_cache", None)
    if prune is None:  # TODO(lead): drop this guard once simulate.kernels.prune_cache() is merged
        raise UsageError("cache --prune: this version of simulate.kernels has no prune_cache()")
    removed = prune()
    if isinstance(removed, int) and not isinstance(removed, bool):
        print(f"removed {removed} stale kernel cache folder(s)")
    elif isinstance(removed, (list, tuple, set)):
        print(f"removed {len(removed)} stale kernel cache folder(s)")
        for path in removed:
            print(f"  {path}")
    else:
        print("kernel cache pruned")
    return 0
