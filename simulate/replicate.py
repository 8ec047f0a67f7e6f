"""One replication -> tidy rows: draw, estimate, record the sample estimands and the seed.

The row format is the one contract between the stages after estimation: one row
per replication x estimator x mediator, columns :data:`ROW_COLUMNS`.  A batch of
replications is returned column-wise (a dict of numpy arrays) so that the runner
can write it to Parquet without a per-row Python loop.

Seeds: replication ``rep`` of grid cell ``cell`` draws from
``SeedSequence(seed, spawn_key=(cell_key, rep))`` where ``cell_key`` is 0 for every
cell when random numbers are common across grid cells (the default) and
``cell + 1`` otherwise.  The data, and so every row, are a pure function of
(scenario, seed, cell_key, rep) and the code version.

A batch goes through one call of the fused kernel
(:func:`simulate.kernels.replicate_nb.replicate_batch`: draw, sufficient statistics,
every estimator), and its rows are assembled with array operations.  Should the batch
call fail, each replication is retried alone, and one that still fails becomes rows
with the error as their status: never the end of a run.
"""

from __future__ import annotations

import functools

import numpy as np

from .dgp import N_STREAMS, plan
from .estimators import (
    DIRECT_EFFECT,
    SIMULATION_COLUMNS,
    RowPlan,
    estimate_columns,
    estimators_for,
    row_plan,
)
from .estimators.rows import ERROR_STATUS_CODE
from .kernels import rng_nb
from .kernels.replicate_nb import replicate_batch
from .scenario import Scenario

__all__ = ["ROW_COLUMNS", "replication_seed", "replication_states", "run_replications", "estimators_for",
           "DIRECT_EFFECT"]

ROW_COLUMNS: dict[str, str] = SIMULATION_COLUMNS
"""Column name -> numpy dtype of every row; the order is the column order of every part file.

The one row schema, :data:`simulate.estimators.rows.COLUMNS`, says what each column means."""


def replication_seed(seed: int, cell_key: int, rep: int) -> np.random.SeedSequence:
    """The seed of one replication (see the module docstring)."""
    return np.random.SeedSequence(int(seed), spawn_key=(int(cell_key), int(rep)))


def replication_states(seed: int, cell_key: int, reps) -> np.ndarray:
    """The (R, 6, 4) stream states of replications ``reps``, in one kernel call.

    Equal to ``np.stack([dgp.streams(replication_seed(seed, cell_key, r)) for r in reps])``
    (numpy's SeedSequence, ported to :func:`simulate.kernels.rng_nb.seed_sequence_words`;
    a test checks the two agree), without the ~20 us that numpy's object costs per replication.
    """
    seed, cell_key = int(seed), int(cell_key)
    reps = np.asarray(reps, np.int64).reshape(-1)
    if seed < 0 or cell_key < 0 or (reps < 0).any():
        raise ValueError("seed, cell key and replication numbers must be non-negative")
    words = []
    x = seed
    while True:  # the seed's 32-bit words, little end first, as SeedSequence coerces an int
        words.append(x & 0xFFFFFFFF)
        x >>= 32
        if not x:
            break
    return rng_nb.replication_states(np.array(words, np.int64), cell_key, reps, N_STREAMS)


def _batch_arrays(sc: Scenario, states: np.ndarray):
    return replicate_batch(states, plan(sc).kernel(), 1.0)


@functools.lru_cache(maxsize=64)
def _plan(P: int, names: tuple[str, ...]) -> RowPlan:
    """The row plan of one replication (simulation order: the direct-effect row last); read only."""
    return row_plan(list(names), estimators_for(P), direct_effect="last")


def _columns(sc: Scenario, out, level: float) -> dict[str, np.ndarray]:
    """Rows of a batch from the kernel's arrays: (R reps) x (kept estimators x P + 1 direct-effect row)."""
    est, se, status, diag, fs, sw, sample = out
    R, E, P = est.shape
    layout = _plan(P, tuple(sc.mediator_names))
    col = estimate_columns(est, se, status, diag, fs, sw, layout, sc.n_sites, level,
                           ar_null=np.asarray(sc.site.effect_mean, float))  # the AR tests at the true mean effects
    tile = lambda a: np.where(layout.column >= 0, a[:, np.maximum(layout.column, 0)], np.nan).reshape(-1)  # noqa: E731
    col["sample_ate"] = tile(sample[:, 0, :])
    col["sample_compliance_weighted"] = tile(sample[:, 1, :])
    col["sample_late"] = tile(sample[:, 2, :])
    return {k: v for k, v in col.items() if k in ROW_COLUMNS}


def _failed_rows(P: int, message: str) -> dict:
    """The rows of a replication that raised: NaN everywhere, the error as the status."""
    n = len(estimators_for(P)) * P + 1
    out = {col: np.full(n, np.nan) for col, kind in ROW_COLUMNS.items() if kind == "float64"}
    for col in ("ar_set_kind", "ar_cluster_set_kind", "jar_set_kind"):
        out[col] = np.full(n, "not_computed", dtype=object)
    out["status"] = np.array([f"error: {message}"[:200]] * n, dtype=object)
    out["status_code"] = np.full(n, ERROR_STATUS_CODE, np.int64)
    return out


def run_replications(sc: Scenario, cell: int, cell_key: int, seed: int, reps, level: float = 0.95) -> dict:
    """Rows of replications ``reps`` (an iterable of ints) of one grid cell, column-wise.

    Returns a dict ``column -> numpy array`` with the columns of :data:`ROW_COLUMNS`.
    """
    P = sc.n_mediators
    layout = _plan(P, tuple(sc.mediator_names))
    n_per = len(layout.row)
    reps = [int(r) for r in reps]
    R = len(reps)
    states = replication_states(seed, cell_key, reps)
    try:
        data = _columns(sc, _batch_arrays(sc, states), level)
    except Exception:  # retry one by one; a replication that still fails is rows with its status
        parts = []
        for i in range(R):
            try:
                parts.append(_columns(sc, _batch_arrays(sc, states[i:i + 1]), level))
            except Exception as exc:
                parts.append(_failed_rows(P, f"{exc.__class__.__name__}: {exc}"))
        data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else \
            _columns(sc, _batch_arrays(sc, states), level)
    out: dict[str, np.ndarray] = {}
    out["cell"] = np.full(R * n_per, cell, np.int32)
    out["rep"] = np.repeat(np.array(reps, np.int64), n_per)
    out["estimator"] = np.tile(layout.estimator, R)
    out["mediator"] = np.tile(layout.mediator, R)
    out["se_type"] = np.tile(layout.se_type, R)
    out.update(data)
    out["seed"] = np.full(R * n_per, seed, np.int64)
    out["cell_key"] = np.full(R * n_per, cell_key, np.int64)
    return {col: out[col] for col in ROW_COLUMNS}
