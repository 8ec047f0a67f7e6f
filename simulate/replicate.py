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

import numpy as np
from scipy import special

from .dgp import N_STREAMS, plan
from .estimators import ESTIMATORS, PRIMARY_SE, SE_TYPES, STATUS_NAMES, nonlinearity_p, primary_df
from .kernels import estimators_nb as nb
from .kernels import rng_nb
from .kernels.replicate_nb import replicate_batch
from .scenario import Scenario

__all__ = ["ROW_COLUMNS", "replication_seed", "replication_states", "run_replications", "estimators_for",
           "DIRECT_EFFECT"]

DIRECT_EFFECT = "direct_effect"
"""Mediator name of the between-site intercept row (the mean direct effect of one unit of T)."""

# name -> numpy dtype; the order is the column order of every part file
ROW_COLUMNS: dict[str, str] = {
    "cell": "int32",  # grid cell index
    "rep": "int64",  # replication index
    "estimator": "str",
    "mediator": "str",
    "estimate": "float64",
    "std_error": "float64",  # the SE behind the CI and p-value (see estimators.PRIMARY_SE)
    "se_conventional": "float64",
    "se_robust": "float64",  # HC0
    "se_hc1": "float64",
    "se_cluster": "float64",
    "se_many_instrument": "float64",
    "conf_low": "float64",
    "conf_high": "float64",
    "p_value": "float64",
    "status": "str",  # "ok" or the failure
    "first_stage_f": "float64",  # per mediator
    "conditional_f": "float64",  # Sanderson-Windmeijer, per mediator
    "sigma_min": "float64",  # smallest singular value of the compliance matrix
    "overid_stat": "float64",
    "overid_p": "float64",
    "nonlinearity_stat": "float64",
    "nonlinearity_p": "float64",
    "sample_ate": "float64",  # mean Delta_p over the persons drawn
    "sample_late": "float64",  # mean Delta_p over the compliers drawn (binary mediators)
    "sample_compliance_weighted": "float64",  # sum Gamma Delta / sum Gamma over the persons drawn
    "seed": "int64",  # the run seed (entropy)
    "cell_key": "int64",  # spawn key: SeedSequence(seed, spawn_key=(cell_key, rep)) replays the replication
}

_SE_INDEX = {name: SE_TYPES.index(kind) for name, kind in
             (("se_conventional", "conventional"), ("se_robust", "hc0"), ("se_hc1", "hc1"),
              ("se_cluster", "cluster"), ("se_many_instrument", "many_instrument"))}


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


def estimators_for(P: int) -> tuple[str, ...]:
    """The estimators that apply with P mediators (the pooled Wald estimator needs P = 1)."""
    return tuple(e for e in ESTIMATORS if not (e == "wald" and P > 1))


_SE_COLUMNS = (("se_conventional", "conventional"), ("se_robust", "hc0"), ("se_hc1", "hc1"),
               ("se_cluster", "cluster"), ("se_many_instrument", "many_instrument"))
_PRIMARY = np.array([SE_TYPES.index(PRIMARY_SE[e]) for e in ESTIMATORS])
_STATUS = np.array([STATUS_NAMES[k] for k in sorted(STATUS_NAMES)], dtype=object)


def _batch_arrays(sc: Scenario, states: np.ndarray):
    return replicate_batch(states, plan(sc).kernel(), 1.0)


def _columns(sc: Scenario, out, level: float) -> dict[str, np.ndarray]:
    """Rows of a batch from the kernel's arrays: (R reps) x (kept estimators x P + 1 direct-effect row)."""
    est, se, status, diag, fs, sw, sample = out
    R, E, P = est.shape
    keep = np.array([e in estimators_for(P) for e in ESTIMATORS])
    K = sc.n_sites
    df = primary_df(K, P)  # (E,)
    q = special.stdtrit(df, 0.5 + level / 2.0)[None, :, None]
    std = np.take_along_axis(se, _PRIMARY[None, :, None, None].repeat(R, 0).repeat(P, 3), axis=2)[:, :, 0, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        pv = 2.0 * special.stdtr(df[None, :, None], -np.abs(est / std))
        # the between-site intercept: mean direct effect, site sandwich SE, t(K - P - 1)
        b, s = diag[:, nb.D_DIRECT], diag[:, nb.D_DIRECT_SE_HC0]
        dfd = K - P - 1
        qd = special.stdtrit(dfd, 0.5 + level / 2.0) if dfd > 0 else np.nan
        ok = (s > 0) & np.isfinite(s)
        d_lo = np.where(ok, b - qd * s, np.nan)
        d_hi = np.where(ok, b + qd * s, np.nan)
        d_p = np.where(ok, 2.0 * special.stdtr(dfd, -np.abs(b / s)) if dfd > 0 else np.nan, np.nan)
        sdf = diag[:, nb.D_SARGAN_DF]
        overid_p = np.where(sdf > 0, special.chdtrc(sdf, diag[:, nb.D_SARGAN]), np.nan)
        nl_p = nonlinearity_p(diag[:, nb.D_NONLINEAR], diag[:, nb.D_NONLINEAR_DF], K, P)

    def rows(a, extra):
        """(R, E, P) -> (R, kept*P + 1) with the direct-effect row's value ``extra`` (R,) last."""
        kept = a[:, keep, :].reshape(R, -1)
        return np.concatenate([kept, np.asarray(extra, float).reshape(R, 1) * np.ones((R, 1))], axis=1).reshape(-1)

    nan = np.full(R, np.nan)
    col: dict[str, np.ndarray] = {}
    col["estimate"] = rows(est, b)
    col["std_error"] = rows(std, s)
    extras = {"se_conventional": diag[:, nb.D_DIRECT_SE_CONVENTIONAL], "se_robust": s,
              "se_hc1": diag[:, nb.D_DIRECT_SE_HC1]}
    for name, kind in _SE_COLUMNS:
        col[name] = rows(se[:, :, SE_TYPES.index(kind), :], extras.get(name, nan))
    col["conf_low"] = rows(est - q * std, d_lo)
    col["conf_high"] = rows(est + q * std, d_hi)
    col["p_value"] = rows(pv, d_p)
    st = _STATUS[status]  # (R, E)
    ib = ESTIMATORS.index("between_intercept")
    col["status"] = np.concatenate([np.repeat(st[:, keep], P, axis=1), st[:, ib:ib + 1]], axis=1).reshape(-1)
    tile = lambda a: rows(np.repeat(a[:, None, :], E, axis=1), nan)  # noqa: E731  per mediator, every estimator
    col["first_stage_f"] = tile(fs)
    col["conditional_f"] = tile(sw)
    per_rep = {"sigma_min": diag[:, nb.D_SIGMA_MIN], "overid_stat": diag[:, nb.D_SARGAN], "overid_p": overid_p,
               "nonlinearity_stat": diag[:, nb.D_NONLINEAR], "nonlinearity_p": nl_p}
    n_per = int(keep.sum()) * P + 1
    for name, v in per_rep.items():
        col[name] = np.repeat(v, n_per)
    col["sample_ate"] = tile(sample[:, 0, :])
    col["sample_compliance_weighted"] = tile(sample[:, 1, :])
    col["sample_late"] = tile(sample[:, 2, :])
    return col


def _failed_rows(P: int, message: str) -> dict:
    """The rows of a replication that raised: NaN everywhere, the error as the status."""
    n = len(estimators_for(P)) * P + 1
    out = {col: np.full(n, np.nan) for col, kind in ROW_COLUMNS.items() if kind == "float64"}
    out["status"] = np.array([f"error: {message}"[:200]] * n, dtype=object)
    return out


def run_replications(sc: Scenario, cell: int, cell_key: int, seed: int, reps, level: float = 0.95) -> dict:
    """Rows of replications ``reps`` (an iterable of ints) of one grid cell, column-wise.

    Returns a dict ``column -> numpy array`` with the columns of :data:`ROW_COLUMNS`.
    """
    P = sc.n_mediators
    kept = estimators_for(P)
    names = list(sc.mediator_names)
    per_rep_estimator = np.array([e for e in kept for _ in range(P)] + ["between_intercept"], dtype=object)
    per_rep_mediator = np.array(names * len(kept) + [DIRECT_EFFECT], dtype=object)
    n_per = len(kept) * P + 1
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
    out["estimator"] = np.tile(per_rep_estimator, R)
    out["mediator"] = np.tile(per_rep_mediator, R)
    out.update(data)
    out["seed"] = np.full(R * n_per, seed, np.int64)
    out["cell_key"] = np.full(R * n_per, cell_key, np.int64)
    return {col: out[col] for col in ROW_COLUMNS}
