"""Suite-wide set-up: compile the kernels once, in the process that starts the run.

With ``pytest -n N`` (pytest-xdist, the default in ``pyproject.toml``) every worker would
otherwise compile the Numba kernels itself, all at once, on a cold cache. The controller
compiles them first (``simulate.warmup.warm_up``), so the workers load them from the cache.
"""

import sys


def pytest_configure(config):
    """Warm the Numba cache in the controller (or in the only process, without xdist)."""
    if hasattr(config, "workerinput"):  # an xdist worker: the controller has warmed the cache
        return
    if config.getoption("collectonly", False):
        return
    from simulate.warmup import warm_up

    seconds = warm_up(continuous=True, binary=True)
    if seconds is not None:
        print(f"conftest: compiled the kernels in {seconds:.0f} s (first run only)", file=sys.stderr)
