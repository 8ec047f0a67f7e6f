"""The summary's one kernel: Neumaier's compensated summation, carried across batches."""

from numba import njit

__all__ = ["neumaier_add"]


@njit(cache=True)
def neumaier_add(values, state):  # pragma: no cover - compiled
    """Add ``values`` in order to the compensated sum ``state = [sum, compensation]`` (in place).

    Unlike Kahan's, Neumaier's update keeps the small term whichever of the two is larger,
    so ``state[0] + state[1]`` is the correctly rounded sum in more cases; the state carries
    from one batch to the next, so the result does not depend on where batches are cut.
    """
    s = state[0]
    c = state[1]
    for v in values:
        t = s + v
        if abs(s) >= abs(v):
            c += (s - t) + v
        else:
            c += (v - t) + s
        s = t
    state[0] = s
    state[1] = c
