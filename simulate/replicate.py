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
"""

from __future__ import annotations

import numpy as np

from .dgp import Plan, draw, plan
from .estimators import ESTIMATORS, SE_TYPES, STATUS_NAMES, diagnostic_values, direct_effect_inference, \
    estimate_arrays, primary_inference
from .scenario import Scenario

__all__ = ["ROW_COLUMNS", "replication_seed", "run_replications", "estimators_for", "DIRECT_EFFECT"]

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


def _rows_of(sc: Scenario, pl: Plan, cell: int, cell_key: int, seed: int, rep: int, level: float) -> dict:
    trial = draw(sc, replication_seed(seed, cell_key, rep), pl)
    arrays = estimate_arrays(trial.site, trial.treatment, trial.mediators, trial.outcome, sc.n_sites, sc.arms)
    P = sc.n_mediators
    E = len(ESTIMATORS)
    se_p, lo, hi, pv = primary_inference(arrays, level)
    diag = diagnostic_values(arrays)
    samp = trial.sample_estimands()
    # estimator x mediator rows, then one direct-effect row (between_intercept)
    n = E * P + 1
    out: dict[str, np.ndarray] = {}
    out["estimate"] = np.append(arrays.estimate.reshape(-1), diag["direct_effect"])
    out["std_error"] = np.append(se_p.reshape(-1), diag["direct_effect_se_hc0"])
    for col, k in _SE_INDEX.items():
        extra = {"se_conventional": diag["direct_effect_se_conventional"], "se_robust": diag["direct_effect_se_hc0"],
                 "se_hc1": diag["direct_effect_se_hc1"]}.get(col, np.nan)
        out[col] = np.append(arrays.se[:, k, :].reshape(-1), extra)
    b, s, d_lo, d_hi, d_p = direct_effect_inference(diag, P, level)
    out["conf_low"] = np.append(lo.reshape(-1), d_lo)
    out["conf_high"] = np.append(hi.reshape(-1), d_hi)
    out["p_value"] = np.append(pv.reshape(-1), d_p)
    status = [STATUS_NAMES[int(c)] for c in arrays.status]
    ib = ESTIMATORS.index("between_intercept")
    out["status"] = np.array([status[e] for e in range(E) for _ in range(P)] + [status[ib]], dtype=object)
    out["first_stage_f"] = np.append(np.tile(arrays.first_stage_f, E), np.nan)
    out["conditional_f"] = np.append(np.tile(arrays.conditional_f, E), np.nan)
    for key in ("sigma_min", "overid_stat", "overid_p", "nonlinearity_stat", "nonlinearity_p"):
        out[key] = np.full(n, diag[key])
    out["sample_ate"] = np.append(np.tile(samp["ate"], E), np.nan)
    out["sample_late"] = np.append(np.tile(samp["late"], E), np.nan)
    out["sample_compliance_weighted"] = np.append(np.tile(samp["compliance_weighted"], E), np.nan)
    mask = np.append(np.repeat([e in estimators_for(P) for e in ESTIMATORS], P), True)
    return {k: v[mask] for k, v in out.items()}


def estimators_for(P: int) -> tuple[str, ...]:
    """The estimators that apply with P mediators (the pooled Wald estimator needs P = 1)."""
    return tuple(e for e in ESTIMATORS if not (e == "wald" and P > 1))


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
    pl = plan(sc)
    P = sc.n_mediators
    kept = estimators_for(P)
    names = list(sc.mediator_names)
    per_rep_estimator = np.array([e for e in kept for _ in range(P)] + ["between_intercept"], dtype=object)
    per_rep_mediator = np.array(names * len(kept) + [DIRECT_EFFECT], dtype=object)
    n_per = len(kept) * P + 1
    reps = list(reps)
    chunks = []
    for r in reps:
        try:
            chunks.append(_rows_of(sc, pl, cell, cell_key, seed, r, level))
        except Exception as exc:  # a failed replication is a row with its status, never the end of a run
            chunks.append(_failed_rows(P, f"{exc.__class__.__name__}: {exc}"))
    out: dict[str, np.ndarray] = {}
    R = len(reps)
    out["cell"] = np.full(R * n_per, cell, np.int32)
    out["rep"] = np.repeat(np.array(reps, np.int64), n_per)
    out["estimator"] = np.tile(per_rep_estimator, R)
    out["mediator"] = np.tile(per_rep_mediator, R)
    for col in ROW_COLUMNS:
        if col in out or col in ("seed", "cell_key"):
            continue
        out[col] = np.concatenate([c[col] for c in chunks]) if chunks else np.empty(0)
    out["seed"] = np.full(R * n_per, seed, np.int64)
    out["cell_key"] = np.full(R * n_per, cell_key, np.int64)
    return {col: out[col] for col in ROW_COLUMNS}

