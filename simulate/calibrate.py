r"""Calibrate a scenario from a real multisite trial, net of sampling error.

``simulate calibrate FILE.csv --site COL --treatment COL --mediator COL [--mediator
COL ...] --outcome COL [--name NAME] > scenario.toml`` writes a runnable scenario
(TOML on standard output) whose sites, arms, mediators and outcome mirror the study.

Notation
--------
Sites s = 1..K, arms t = 0..L (sorted treatment labels; the smallest is the control
arm 0), cells (s, t) with n_st persons, cell means vbar_st and within-cell covariance
S_st (divisor n_st - 1) of v = (Y, M_1..M_P).  Per site and contrast t >= 1:

    pi_pst  = Mbar_pst - Mbar_ps0          (site ITT of arm t on M_p, "compliance")
    rho_st  = Ybar_st  - Ybar_s0           (site ITT of arm t on Y)
    V_st    = S_st / n_st + S_s0 / n_s0    (their sampling covariance)

Method of moments, everything net of sampling error
---------------------------------------------------
1. **Dose profile** (assumption iii's g_p(t) = t + c_p t (t - 1)): least squares of the
   mean ITT over sites, pibar_pt = a_p t + b_p t (t - 1), gives c_p = b_p / a_p
   (c_p = 0 with a binary treatment).
2. **Compliance per unit dose**: gamma_ps = sum_t w_pt pi_pst with
   w_pt = g_p(t) / sum_t' g_p(t')^2 (the projection on the profile; gamma_ps = pi_ps1
   with two arms).  Its sampling covariance is
   C_s[p, q] = sum_t w_pt w_qt S_st[p, q] / n_st + (sum_t w_pt)(sum_t w_qt) S_s0[p, q] / n_s0.
   Then, sites weighted equally (the scenario draws sites i.i.d. whatever their size),

       E[gamma]   = mean_s gamma_s
       Cov(gamma) = cov_s(gamma_s) - mean_s C_s                 (between minus sampling)

   SDs are sqrt(max(diag, 0)); the correlation matrix is clipped to the nearest
   positive semi-definite matrix by eigenvalue clipping (a comment line says so).
   The same is reported per arm contrast for (pi_1t, ..., pi_Pt, rho_t): means, net
   SDs and net correlations (comment lines of the output).
3. **Effects** (assumption ii holds by default): the between-site regression through the
   origin of rho_st on pi_st, stacked over sites and contrasts, corrected for the
   errors in the regressors,

       effect_mean = (sum X X' - sum V_MM)^{-1} (sum X rho - sum V_MY)

   (X_st = pi_st; V_MM, V_MY blocks of V_st).  The intercept version adds the regressor t
   (the direct effect enters as kappa_s t) and estimates the mean direct effect; it is
   written as a comment, or used for the scenario with ``--direct-effect``.
4. **Effect heterogeneity**: residuals r_st = rho_st - effect_mean' pi_st (minus kappa t
   with ``--direct-effect``) have, net of sampling,
   tau^2 = sum r^2 / (N - k) - mean_st a' V_st a with a = (1, -effect_mean) and N the
   number of (site, contrast) pairs, k the number of coefficients.  With site effects
   delta_ps independent of gamma and a common between-site SD,
   tau^2 = sd(delta)^2 sum_p E[pi_p^2], so
   sd(delta) = sqrt(max(tau^2, 0) / (mean_st sum_p pi_pst^2 - mean_st sum_p V_st[pp])).
   The simulated site ITT effects on Y then match the study's in mean and variance.
5. **Persons**: pooled within-cell covariances S_t = sum_s (n_st - 1) S_st / sum_s (n_st - 1).
   In the control arm the model has M = M(0) and Y = Y(0) + delta_s' M(0), so
   mediator SDs and correlations are those of S_0[M, M]; Cov(M(0), Y(0)) =
   S_0[M, Y] - S_0[M, M] effect_mean; Var(Y(0)) = S_0[Y, Y] - 2 effect_mean' S_0[M, Y]
   + effect_mean' S_0[M, M] effect_mean - sd(delta)^2 tr S_0[M, M]; ``confounding`` is
   corr(M_p(0), Y(0)).  The person-level compliance SD is
   sqrt(max(0, sum_t N_t (S_t[pp] - S_0[pp]) / g_p(t)^2 / sum_t N_t)).  Person-level effect
   SDs and the within-site correlation (vii.a) are not identified from cell moments and
   are left at 0, as is the between-site compliance-effect correlation (ix).
6. **Baselines**: the between-site covariance B of the control means, net of sampling,
   gives E[M(0)], E[Y(0)] = Ybar_0 - effect_mean' Mbar_0, mediator_baseline_sd =
   sqrt(B_pp) and outcome_baseline_sd^2 = B_YY - effect_mean' B_MM effect_mean
   - sd(delta)^2 sum_p (E[M_p]^2 + B_pp) (clipped at 0).

Design: the actual site sizes (``n_per_site`` list, or one number when all equal), the
pooled arm shares (per-site shares with a binary treatment), complete randomization.
A 0/1 mediator is calibrated as a continuous one (its linear moments are matched).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .analyze import AnalysisError, _label, _numeric, _ordered_codes, add_data_arguments, read_csv
from .estimators import cell_statistics

__all__ = ["Calibration", "CalibrationError", "calibrate", "calibrate_statistics", "to_toml",
           "add_subcommand", "run"]


class CalibrationError(AnalysisError):
    """Data that cannot be calibrated (missing column, NaN, a one-arm site...)."""


@dataclass(frozen=True)
class Calibration:
    """Calibrated site- and person-level moments of a multisite trial.

    Per-mediator values are tuples of length P; ``contrast_*`` arrays are per arm
    contrast t = 1..L over the components (pi_1..pi_P, rho) (ITT on each mediator,
    then on Y).
    """

    mediators: tuple[str, ...]
    outcome: str
    site_labels: tuple[str, ...]
    arm_labels: tuple[str, ...]
    n_per_site: tuple[int, ...]
    arm_shares: tuple[float, ...]  # pooled, arms 0..L
    site_share: tuple[float, ...]  # per site share treated (binary treatment); () otherwise
    curvature: tuple[float, ...]
    compliance_mean: tuple[float, ...]
    compliance_mean_se: tuple[float, ...]  # sd_s(gamma_s) / sqrt(K)
    compliance_sd: tuple[float, ...]
    compliance_correlation: tuple[tuple[float, ...], ...]
    effect_mean: tuple[float, ...]  # through the origin (or with intercept, see direct_effect)
    effect_mean_se: tuple[float, ...]  # site-clustered sandwich SE of effect_mean
    effect_sd: float
    direct_effect: bool  # True: effect_mean and direct_effect_mean from the intercept version
    direct_effect_mean: float  # intercept version's mean direct effect (always estimated when possible)
    effect_mean_origin: tuple[float, ...]
    effect_mean_intercept: tuple[float, ...]
    residual_variance: float  # tau^2, net of sampling
    mediator_mean: tuple[float, ...]
    mediator_sd: tuple[float, ...]
    mediator_correlation: tuple[tuple[float, ...], ...]
    mediator_baseline_sd: tuple[float, ...]
    outcome_mean: float
    outcome_sd: float
    outcome_baseline_sd: float
    confounding: tuple[float, ...]
    person_compliance_sd: tuple[float, ...]
    contrast_mean: tuple[tuple[float, ...], ...]  # (L, P + 1)
    contrast_sd: tuple[tuple[float, ...], ...]  # (L, P + 1), net of sampling
    contrast_correlation: tuple[tuple[tuple[float, ...], ...], ...]  # (L, P + 1, P + 1), net, clipped
    notes: tuple[str, ...] = field(default=())

    @property
    def n_sites(self) -> int:
        return len(self.n_per_site)

    @property
    def arms(self) -> int:
        return len(self.arm_shares)


# ---------------------------------------------------------------------------
# Numerics (arrays only)
# ---------------------------------------------------------------------------


def nearest_correlation(C: np.ndarray) -> tuple[np.ndarray, bool]:
    """Clip a symmetric matrix with unit diagonal to a PSD correlation matrix.

    Eigenvalues below zero are set to zero and the result rescaled to a unit
    diagonal, R = D^{-1/2} V max(Lambda, 0) V' D^{-1/2}.  Returns (R, clipped).
    """
    C = 0.5 * (C + C.T)
    lam, V = np.linalg.eigh(C)
    if lam.min() >= -1e-12:
        return np.clip(C, -1.0, 1.0), False
    R = (V * np.clip(lam, 0.0, None)) @ V.T
    d = np.sqrt(np.clip(np.diag(R), 1e-300, None))
    R = R / np.outer(d, d)
    np.fill_diagonal(R, 1.0)
    # a tiny shrink so that round-off cannot leave an eigenvalue below zero
    R = 0.999999 * R + 0.000001 * np.eye(len(R))
    return np.clip(R, -1.0, 1.0), True


def _net_moments(x: np.ndarray, sampling: np.ndarray, names: Sequence[str], what: str, notes: list):
    """Mean, net SDs and clipped net correlations of site rows x (K, d) given per-site sampling covs (K, d, d)."""
    K, d = x.shape
    mean = x.mean(axis=0)
    between = np.cov(x, rowvar=False, ddof=1).reshape(d, d) if K > 1 else np.zeros((d, d))
    net = between - sampling.mean(axis=0)
    var = np.diag(net).copy()
    sd = np.sqrt(np.clip(var, 0.0, None))
    for j in range(d):
        if var[j] <= 0:
            notes.append(f"{what}: the between-site variance of {names[j]} ({between[j, j]:.4g}) does not exceed "
                         f"its mean sampling variance ({sampling[:, j, j].mean():.4g}); its SD is set to 0")
    R = np.eye(d)
    pos = sd > 0
    if pos.sum() >= 2:
        idx = np.flatnonzero(pos)
        sub = net[np.ix_(idx, idx)] / np.outer(sd[idx], sd[idx])
        np.fill_diagonal(sub, 1.0)
        sub_r, clipped = nearest_correlation(sub)
        if clipped:
            raw = np.clip(sub, -9.99, 9.99)
            notes.append(f"{what}: the net correlation matrix of ({', '.join(names[j] for j in idx)}) was not positive "
                         f"semi-definite (smallest eigenvalue {np.linalg.eigvalsh(raw).min():.3g}); clipped to the "
                         "nearest one by eigenvalue clipping")
        R[np.ix_(idx, idx)] = sub_r
    return mean, sd, R


def calibrate_statistics(count: np.ndarray, mean: np.ndarray, cross: np.ndarray, *, mediators: Sequence[str],
                         outcome: str = "Y", site_labels: Sequence[str] | None = None,
                         arm_labels: Sequence[str] | None = None, direct_effect: bool = False) -> Calibration:
    """Calibrate from cell-level sufficient statistics (see the module docstring for the formulas).

    Parameters
    ----------
    count : int array (K, A)
        n_st, every entry >= 2.
    mean : float array (K, A, Q)
        Cell means of v = (Y, M_1..M_P), Q = P + 1.
    cross : float array (K, A, Q, Q)
        Centred within-cell cross-products W_st = sum_i (v_i - vbar_st)(v_i - vbar_st)'.
    mediators, outcome : names
    direct_effect : bool
        Use the intercept version of the between-site regression for the effects and
        the mean direct effect (assumption ii may fail); default: exclusion holds.

    Returns
    -------
    Calibration
    """
    count = np.asarray(count, np.int64)
    K, A, Q = mean.shape
    P = Q - 1
    L = A - 1
    notes: list[str] = []
    n = count.astype(float)
    S = cross / (n - 1.0)[:, :, None, None]  # within-cell covariances
    SE = S / n[:, :, None, None]  # sampling covariance of the cell means
    # ITT contrasts, (K, L, Q) over (Y, M); reorder to (M, Y) for reporting
    itt = mean[:, 1:, :] - mean[:, :1, :]
    V = SE[:, 1:] + SE[:, :1]  # (K, L, Q, Q)
    pi = itt[:, :, 1:]  # (K, L, P)
    rho = itt[:, :, 0]  # (K, L)
    t = np.arange(1, A, dtype=float)

    # 1. dose profile
    curvature = np.zeros(P)
    if L >= 2:
        X = np.column_stack([t, t * (t - 1.0)])
        pibar = pi.mean(axis=0)  # (L, P)
        for p in range(P):
            (a, b), *_ = np.linalg.lstsq(X, pibar[:, p], rcond=None)
            if abs(a) > 1e-8 * max(1.0, np.abs(pibar[:, p]).max()):
                curvature[p] = b / a
            else:
                notes.append(f"curvature of {mediators[p]}: the arm-1 ITT is ~0, so the dose profile is not "
                             "identified; curvature set to 0")
    g = t[None, :] + curvature[:, None] * t[None, :] * (t[None, :] - 1.0)  # (P, L)
    for p in range(P):
        if np.all(np.abs(g[p]) < 1e-12):
            g[p] = t
    w = g / (g ** 2).sum(axis=1, keepdims=True)  # (P, L)

    # 2. compliance per unit dose, and its sampling covariance
    gamma = np.einsum("pl,klp->kp", w, pi)
    Smm_t = SE[:, 1:, 1:, 1:]  # (K, L, P, P): S_st/n_st on M
    Smm_0 = SE[:, 0, 1:, 1:]  # (K, P, P)
    C = np.einsum("pl,ql,klpq->kpq", w, w, Smm_t) + np.einsum("p,q,kpq->kpq", w.sum(1), w.sum(1), Smm_0)
    comp_mean, comp_sd, comp_R = _net_moments(gamma, C, [f"compliance of {m}" for m in mediators],
                                              "compliance", notes)

    # per contrast: (pi_1..P, rho) moments, net of sampling
    order = list(range(1, Q)) + [0]
    c_mean, c_sd, c_R = [], [], []
    for j in range(L):
        xj = itt[:, j, order]
        Vj = V[:, j][:, order][:, :, order]
        names = [f"ITT on {m}" for m in mediators] + [f"ITT on {outcome}"]
        m_, s_, R_ = _net_moments(xj, Vj, names, f"contrast {arm_labels[j + 1] if arm_labels else j + 1}", notes)
        c_mean.append(tuple(m_))
        c_sd.append(tuple(s_))
        c_R.append(tuple(tuple(r) for r in R_))

    # 3. effects: errors-in-variables corrected between-site regressions
    X = pi.reshape(K * L, P)
    y = rho.reshape(K * L)
    Vmm = V[:, :, 1:, 1:].reshape(K * L, P, P)
    Vmy = V[:, :, 1:, 0].reshape(K * L, P)
    tt = np.tile(t, K)
    A0 = X.T @ X - Vmm.sum(axis=0)
    b0 = X.T @ y - Vmy.sum(axis=0)
    N = K * L
    if N < P:
        raise CalibrationError(f"{K} site(s) x {L} contrast(s) give {N} site effects for {P} mediators; "
                               "the effects are not identified")
    try:
        eff_origin = np.linalg.solve(A0, b0)
        if not np.all(np.isfinite(eff_origin)) or np.linalg.eigvalsh(A0).min() <= 0:
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        eff_origin = np.linalg.lstsq(X, y, rcond=None)[0]
        notes.append("effects: the compliance moment matrix net of sampling error is not positive definite "
                     "(weak compliance variation); the uncorrected between-site regression is used")
    kappa = math.nan
    eff_int = np.full(P, np.nan)
    if N > P + 1:
        Z = np.column_stack([tt, X])
        A1 = Z.T @ Z
        A1[1:, 1:] -= Vmm.sum(axis=0)
        b1 = Z.T @ y
        b1[1:] -= Vmy.sum(axis=0)
        try:
            sol = np.linalg.solve(A1, b1)
            if np.linalg.eigvalsh(A1).min() > 0:
                kappa, eff_int = float(sol[0]), sol[1:]
        except np.linalg.LinAlgError:
            pass
    if direct_effect:
        if not np.isfinite(kappa):
            raise CalibrationError(f"--direct-effect: the intercept version of the between-site regression is not "
                                   f"identified with {N} site effects for {P} mediators")
        eff, k_used = eff_int, kappa
    else:
        eff, k_used = eff_origin, 0.0

    # 4. effect heterogeneity
    resid = y - X @ eff - k_used * tt
    # site-clustered sandwich: A^{-1} (sum_s g_s g_s') A^{-1}, g_s = sum_t z_st r_st
    Zc = np.column_stack([tt, X]) if direct_effect else X
    Am = A1 if direct_effect else A0
    score = (Zc * resid[:, None]).reshape(K, L, -1).sum(axis=1)
    try:
        Ainv = np.linalg.inv(Am)
        eff_se = np.sqrt(np.clip(np.diag(Ainv @ (score.T @ score) @ Ainv), 0.0, None))[-P:]
    except np.linalg.LinAlgError:
        eff_se = np.full(P, np.nan)
    a = np.concatenate([[1.0], -eff])  # on (Y, M)
    Vflat = V.reshape(K * L, Q, Q)
    samp = np.einsum("i,kij,j->k", a, Vflat, a)
    n_coef = P + (1 if direct_effect else 0)
    tau2 = float((resid ** 2).sum() / max(N - n_coef, 1) - samp.mean())
    pi2 = float((X ** 2).sum(axis=1).mean() - np.trace(Vmm, axis1=1, axis2=2).mean())
    if tau2 <= 0 or pi2 <= 0:
        effect_sd = 0.0
        notes.append(f"effect SD: the residual between-site variance of the ITT on {outcome} net of sampling "
                     f"({tau2:.4g}) is not positive; effect_sd set to 0")
    else:
        effect_sd = math.sqrt(tau2 / pi2)

    # 5. persons (pooled within-cell covariances)
    dof = (n - 1.0).sum(axis=0)  # (A,)
    Sp = cross.sum(axis=0) / dof[:, None, None]  # (A, Q, Q)
    S0 = Sp[0]
    Smm, Smy, Syy = S0[1:, 1:], S0[1:, 0], S0[0, 0]
    med_sd = np.sqrt(np.clip(np.diag(Smm), 0.0, None))
    Dm = np.where(med_sd > 0, med_sd, 1.0)
    med_R = Smm / np.outer(Dm, Dm)
    np.fill_diagonal(med_R, 1.0)
    cov_my0 = Smy - Smm @ eff
    var_y0 = float(Syy - 2 * eff @ Smy + eff @ Smm @ eff - effect_sd ** 2 * np.trace(Smm))
    if var_y0 <= 0:
        notes.append(f"outcome SD: Var(Y(0)) implied by the control arm is not positive ({var_y0:.4g}); "
                     "set to 1% of the control-arm variance of Y")
        var_y0 = 0.01 * float(Syy)
    out_sd = math.sqrt(var_y0)
    conf = np.where(med_sd > 0, cov_my0 / (Dm * out_sd), 0.0)
    R_person = np.eye(P + 1)
    R_person[:P, :P] = med_R
    R_person[:P, P] = R_person[P, :P] = conf
    R_person, clipped = nearest_correlation(R_person)
    if clipped:
        notes.append("persons: the correlation matrix of (M(0), Y(0)) was not positive semi-definite; clipped by "
                     "eigenvalue clipping")
    med_R, conf = R_person[:P, :P], R_person[:P, P]
    Ntot = count.sum(axis=0).astype(float)  # (A,)
    pcs = np.zeros(P)
    for p in range(P):
        num = sum(Ntot[j + 1] * (Sp[j + 1, p + 1, p + 1] - S0[p + 1, p + 1]) / g[p, j] ** 2 for j in range(L))
        v_ = num / Ntot[1:].sum()
        pcs[p] = math.sqrt(v_) if v_ > 0 else 0.0

    # 6. baselines
    ctrl = mean[:, 0, :]  # (K, Q)
    if K > 1:
        B = np.cov(ctrl, rowvar=False, ddof=1).reshape(Q, Q) - SE[:, 0].mean(axis=0)
    else:
        B = np.zeros((Q, Q))
    mu_m = ctrl[:, 1:].mean(axis=0)
    mu_y = float(ctrl[:, 0].mean() - eff @ mu_m)
    med_base = np.sqrt(np.clip(np.diag(B)[1:], 0.0, None))
    ob2 = float(B[0, 0] - eff @ B[1:, 1:] @ eff - effect_sd ** 2 * (mu_m ** 2 + np.clip(np.diag(B)[1:], 0, None)).sum())
    out_base = math.sqrt(ob2) if ob2 > 0 else 0.0

    # design
    sizes = count.sum(axis=1)
    shares = tuple(float(x) for x in Ntot / Ntot.sum())
    site_share = tuple(float(x) for x in count[:, 1] / sizes) if A == 2 else ()
    if site_share and max(site_share) - min(site_share) < 1e-12:
        site_share = (site_share[0],)

    return Calibration(
        mediators=tuple(mediators), outcome=outcome,
        site_labels=tuple(site_labels) if site_labels is not None else tuple(str(s) for s in range(K)),
        arm_labels=tuple(arm_labels) if arm_labels is not None else tuple(str(a) for a in range(A)),
        n_per_site=tuple(int(x) for x in sizes), arm_shares=shares, site_share=site_share,
        curvature=tuple(float(x) for x in curvature),
        compliance_mean=tuple(float(x) for x in comp_mean),
        compliance_mean_se=tuple(float(x) for x in gamma.std(axis=0, ddof=1) / math.sqrt(K)),
        compliance_sd=tuple(float(x) for x in comp_sd),
        compliance_correlation=tuple(tuple(float(x) for x in r) for r in comp_R),
        effect_mean=tuple(float(x) for x in eff), effect_mean_se=tuple(float(x) for x in eff_se), effect_sd=float(effect_sd), direct_effect=direct_effect,
        direct_effect_mean=float(kappa),
        effect_mean_origin=tuple(float(x) for x in eff_origin),
        effect_mean_intercept=tuple(float(x) for x in eff_int),
        residual_variance=tau2,
        mediator_mean=tuple(float(x) for x in mu_m), mediator_sd=tuple(float(x) for x in med_sd),
        mediator_correlation=tuple(tuple(float(x) for x in r) for r in med_R),
        mediator_baseline_sd=tuple(float(x) for x in med_base),
        outcome_mean=mu_y, outcome_sd=out_sd, outcome_baseline_sd=out_base,
        confounding=tuple(float(x) for x in conf), person_compliance_sd=tuple(float(x) for x in pcs),
        contrast_mean=tuple(c_mean), contrast_sd=tuple(c_sd), contrast_correlation=tuple(c_R),
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------
# Data frames
# ---------------------------------------------------------------------------


def calibrate(frame: pd.DataFrame, site: str, treatment: str, mediators: Sequence[str] | str, outcome: str, *,
              direct_effect: bool = False) -> Calibration:
    """Calibrate a scenario's moments from a real multisite dataset (one row per person).

    Site and treatment labels are coded as in :func:`simulate.analyze.analyze` (the
    smallest treatment label is the control arm).  See the module docstring for the
    method.

    Raises
    ------
    CalibrationError
        Missing columns, non-numeric or missing values, a single arm, a site lacking
        an arm or with fewer than 2 persons in one.
    """
    if not isinstance(frame, pd.DataFrame):
        raise CalibrationError("frame must be a pandas DataFrame")
    mediators = [mediators] if isinstance(mediators, str) else list(mediators)
    if not mediators:
        raise CalibrationError("at least one mediator column is needed")
    columns = [site, treatment, *mediators, outcome]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CalibrationError(f"column(s) {', '.join(repr(c) for c in missing)} not found; "
                               f"available: {', '.join(map(str, frame.columns))}")
    if len(set(columns)) != len(columns):
        raise CalibrationError(f"a column is used twice: {columns}")
    if len(frame) == 0:
        raise CalibrationError("the data have no rows")
    for c in columns:
        n_missing = int(frame[c].isna().sum())
        if n_missing:
            first = int(frame[c].isna().to_numpy().nonzero()[0][0])
            raise CalibrationError(f"column {c!r} has {n_missing} missing value(s) (first in row {first + 1})")
    try:
        y = _numeric(frame, outcome)
        M = np.column_stack([_numeric(frame, c) for c in mediators])
        site_code, site_labels = _ordered_codes(frame[site], "site")
        arm_code, arm_labels = _ordered_codes(frame[treatment], "treatment")
    except AnalysisError as exc:
        raise CalibrationError(str(exc)) from None
    if len(arm_labels) < 2:
        raise CalibrationError(f"treatment column {treatment!r} has a single value {_label(arm_labels[0])}")
    K, A = len(site_labels), len(arm_labels)
    if A > 20:
        raise CalibrationError(f"treatment column {treatment!r} has {A} values; a scenario allows at most 20 arms")
    count, mean, cross = cell_statistics(site_code, arm_code, M, y, n_sites=K, n_arms=A)
    for s in range(K):
        present = count[s] > 0
        if present.sum() == 1:
            raise CalibrationError(f"site {_label(site_labels[s])} has a single treatment arm "
                                   f"({_label(arm_labels[present.argmax()])}); every site needs every arm")
        if not present.all():
            absent = ", ".join(_label(a) for a in arm_labels[~present])
            raise CalibrationError(f"site {_label(site_labels[s])} has no persons in arm(s) {absent}")
        if (count[s] < 2).any():
            a = arm_labels[int(np.argmin(count[s]))]
            raise CalibrationError(f"site {_label(site_labels[s])} has a single person in arm {_label(a)}; "
                                   "each site needs at least 2 per arm (within-cell variances)")
    if K < 2:
        raise CalibrationError("a single site: between-site moments need at least 2 sites")
    return calibrate_statistics(count, mean, cross, mediators=mediators, outcome=outcome,
                                site_labels=[str(s) for s in site_labels], arm_labels=[str(a) for a in arm_labels],
                                direct_effect=direct_effect)


# ---------------------------------------------------------------------------
# TOML
# ---------------------------------------------------------------------------


def _num(x: float) -> str:
    """A TOML float with 6 significant digits (never nan/inf)."""
    x = float(x)
    if not math.isfinite(x):
        raise CalibrationError(f"a calibrated value is not finite ({x})")
    if x == 0:
        return "0.0"
    s = f"{x:.6g}"
    if "e" in s:
        mant, exp = s.split("e")
        if "." not in mant:
            mant += ".0"
        return f"{mant}e{int(exp)}"
    return s if "." in s else s + ".0"


def _list(xs) -> str:
    return "[" + ", ".join(_num(x) for x in xs) + "]"


def _ident(name: str, p: int, used: set) -> str:
    import re

    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not s or not s[0].isalpha():
        s = f"M{p + 1}_{s}".rstrip("_")
    base, k = s, 2
    while s in used:
        s = f"{base}_{k}"
        k += 1
    used.add(s)
    return s


def to_toml(cal: Calibration, *, name: str = "calibrated", command: str | None = None,
            n_sites: int | None = None, n_per_site: int | None = None, truth_sites: int | None = 1_000_000) -> str:
    """The calibrated scenario as TOML text.

    Parameters
    ----------
    cal : Calibration
    name : str
        The scenario's name.
    command : str, optional
        The command that produced it (written as a header line).
    n_sites, n_per_site : int, optional
        Replace the study's sites and sizes (e.g. a larger design for a stress test);
        by default the study's K and actual site sizes.
    truth_sites : int or None
        Write the truth of the scenario (ATE and 2SLS limit, as ``simulate truth``
        prints them) in the header, computed over this many sites; None skips it.
    """
    P = len(cal.mediators)
    used: set[str] = set()
    names = [_ident(m, p, used) for p, m in enumerate(cal.mediators)]
    K = cal.n_sites if n_sites is None else int(n_sites)
    L = cal.arms - 1
    lines = []
    lines.append(f"# Calibrated from a real multisite trial: {K} sites, {cal.arms} arms "
                 f"({', '.join(cal.arm_labels)}; the first is control), mediators "
                 f"{', '.join(cal.mediators)}, outcome {cal.outcome}.")
    if command:
        lines.append(f"# produced by: {command}")
    lines.append("# Method (simulate/calibrate.py, notes/calibration.md): site ITT effects on each mediator and on the "
                 "outcome,")
    lines.append("# between-site moments net of sampling error (method of moments); effects from the errors-in-variables")
    lines.append("# corrected between-site regression of the ITT on the outcome on the ITT on the mediators.")
    lines.append("# What to look at: `simulate truth` (ATE = effect_mean) and `simulate run` (2SLS, LIML, UJIVE, ...).")
    lines.append("#")
    lines.append("# Calibrated site-level moments, per arm contrast (ITT on each mediator, then on the outcome):")
    comp_names = [*cal.mediators, cal.outcome]
    for j in range(L):
        lines.append(f"#   {cal.arm_labels[j + 1]} vs {cal.arm_labels[0]}: mean "
                     + ", ".join(f"{c} {_num(v)}" for c, v in zip(comp_names, cal.contrast_mean[j]))
                     + "; SD net of sampling "
                     + ", ".join(f"{c} {_num(v)}" for c, v in zip(comp_names, cal.contrast_sd[j])))
        R = np.array(cal.contrast_correlation[j])
        pairs = [f"{comp_names[a]}:{comp_names[b]} {_num(R[a, b])}" for a in range(P + 1) for b in range(a + 1, P + 1)]
        lines.append(f"#     correlations net of sampling: {', '.join(pairs)}")
    if np.isfinite(cal.direct_effect_mean):
        lines.append(f"# Between-site regression through the origin: effects {_list(cal.effect_mean_origin)}; with an "
                     f"intercept: effects {_list(cal.effect_mean_intercept)}, mean direct effect "
                     f"{_num(cal.direct_effect_mean)}"
                     + (" (used here: --direct-effect)." if cal.direct_effect else
                        " (not used: exclusion assumed; --direct-effect uses it)."))
    else:
        lines.append(f"# Between-site regression through the origin: effects {_list(cal.effect_mean_origin)}; the "
                     "intercept version is not identified with these sites.")
    lines.append(f"# Standard errors: compliance_mean {_list(cal.compliance_mean_se)} (between sites), effect_mean "
                 f"{_list(cal.effect_mean_se)} (site-clustered sandwich).")
    lines.append(f"# Residual between-site variance of the ITT on {cal.outcome}, net of sampling: "
                 f"{_num(cal.residual_variance)} -> effect_sd {_num(cal.effect_sd)} (common to all mediators).")
    lines.append("# Not identified from cell moments, left at 0: person-level effect SDs, the within-site correlation "
                 "(vii.a),")
    lines.append("# the between-site compliance-effect correlation (ix).")
    for note in cal.notes:
        lines.append(f"# note: {note}")
    body = []
    body.append(f"name = {_quote(name)}")
    body.append(f"description = {_quote(f'Calibrated from {cal.n_sites} sites: ' + ', '.join(cal.mediators) + ' -> ' + cal.outcome)}")
    body.append("")
    body.append(f"n_sites = {K}")
    if n_per_site is not None:
        body.append(f"n_per_site = {int(n_per_site)}")
    elif n_sites is not None and n_sites != cal.n_sites:
        body.append(f"n_per_site = {{min = {min(cal.n_per_site)}, max = {max(cal.n_per_site)}}}  "
                    "# the study's range of site sizes")
    elif len(set(cal.n_per_site)) == 1:
        body.append(f"n_per_site = {cal.n_per_site[0]}")
    else:
        body.append(f"n_per_site = [{', '.join(str(x) for x in cal.n_per_site)}]  # the study's site sizes")
    body.append("")
    body.append("[treatment]")
    if cal.arms == 2:
        if len(cal.site_share) == 1:
            body.append(f"share = {_num(cal.site_share[0])}")
        elif n_sites is None or n_sites == cal.n_sites:
            body.append(f"share = {_list(cal.site_share)}  # the study's share treated per site")
        else:
            body.append(f"share = {_num(cal.arm_shares[1])}")
    else:
        shares = _round_shares(cal.arm_shares)
        body.append(f"arms = {cal.arms}")
        body.append(f"arm_shares = {_list(shares)}  # pooled: {', '.join(cal.arm_labels)}")
    body.append("")
    body.append("[mediators]")
    body.append(f"names = [{', '.join(_quote(n) for n in names)}]")
    if cal.arms > 2 and any(c != 0 for c in cal.curvature):
        body.append(f"curvature = {_list(cal.curvature)}  # the dose profile g(t) = t + c t (t - 1) of the mean ITTs")
    body.append("")
    body.append("[site]")
    body.append(f"compliance_mean = {_list(cal.compliance_mean)}  # ITT on M per unit dose")
    body.append(f"compliance_sd = {_list(cal.compliance_sd)}  # net of sampling error")
    body.append(f"effect_mean = {_list(cal.effect_mean)}")
    body.append(f"effect_sd = {_num(cal.effect_sd)}")
    if cal.direct_effect:
        body.append(f"direct_effect_mean = {_num(cal.direct_effect_mean)}")
    body.append(f"mediator_baseline_sd = {_list(cal.mediator_baseline_sd)}")
    body.append(f"outcome_baseline_sd = {_num(cal.outcome_baseline_sd)}")
    R = np.array(cal.compliance_correlation)
    sd_c = cal.compliance_sd  # a correlation with a component clipped to SD 0 has no effect: left out
    pairs = [(a, b) for a in range(P) for b in range(a + 1, P) if R[a, b] != 0.0 and sd_c[a] > 0 and sd_c[b] > 0]
    if pairs:
        body.append("")
        body.append("[site.correlations]")
        for a, b in pairs:
            body.append(f"\"compliance_{a + 1}:compliance_{b + 1}\" = {_num(R[a, b])}")
    body.append("")
    body.append("[person]")
    body.append(f"mediator_mean = {_list(cal.mediator_mean)}")
    body.append(f"mediator_sd = {_list(cal.mediator_sd)}")
    body.append(f"outcome_mean = {_num(cal.outcome_mean)}")
    body.append(f"outcome_sd = {_num(cal.outcome_sd)}  # SD of Y(0)")
    body.append(f"compliance_sd = {_list(cal.person_compliance_sd)}")
    sd_m = cal.mediator_sd
    confounding = [r if sd_m[p] > 0 and cal.outcome_sd > 0 else 0.0 for p, r in enumerate(cal.confounding)]
    body.append(f"confounding = {_list(confounding)}  # corr(M(0), Y(0)) within site")
    Rm = np.array(cal.mediator_correlation)
    mpairs = [(a, b) for a in range(P) for b in range(a + 1, P) if Rm[a, b] != 0.0 and sd_m[a] > 0 and sd_m[b] > 0]
    if mpairs:
        body.append("")
        body.append("[person.correlations]")
        for a, b in mpairs:
            body.append(f"\"mediator_{a + 1}:mediator_{b + 1}\" = {_num(Rm[a, b])}")
    text_body = "\n".join(body) + "\n"
    truth_lines = []
    if truth_sites:
        from .scenario import loads
        from .truth import truth

        sc = loads(text_body, source="<calibrated>")
        tr = truth(sc, n_sites=truth_sites)
        for p, m in enumerate(names):
            truth_lines.append(f"# truth [base] {m}: ate = {tr.ate[p]:.4f}, limit_2sls = {tr.limit_2sls[p]:.4f}")
    return "\n".join(lines + truth_lines) + "\n\n" + text_body


def _round_shares(shares) -> list[float]:
    """Shares to 6 decimals that still sum to 1 exactly (the last absorbs the rounding)."""
    r = [round(float(s), 6) for s in shares]
    r[-1] = round(1.0 - sum(r[:-1]), 6)
    return r


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def add_subcommand(subparsers) -> argparse.ArgumentParser:
    """Register ``calibrate`` on an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "calibrate",
        help="calibrate a scenario from a real multisite dataset (TOML on standard output)",
        description="Estimate site-level means, SDs and correlations of compliance and ITT effects, net of "
                    "sampling error, and write a runnable scenario that mirrors the study.",
    )
    add_data_arguments(p)
    p.add_argument("--name", default=None, help="scenario name (default: calibrated_<file stem>)")
    p.add_argument("--direct-effect", action="store_true",
                   help="use the between-site regression with an intercept (mean direct effect, assumption ii)")
    p.add_argument("--n-sites", type=int, default=None, metavar="K", help="replace the study's number of sites")
    p.add_argument("--n-per-site", type=int, default=None, metavar="N", help="replace the study's site sizes")
    p.add_argument("--no-truth", action="store_true", help="do not write the truth lines in the header")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``simulate calibrate``; returns the exit code (2 on any error, one line on stderr)."""
    from .scenario import ScenarioError, loads

    try:
        if args.n_sites is not None and args.n_sites < 2:
            raise CalibrationError(f"--n-sites must be at least 2, got {args.n_sites}")
        if args.n_per_site is not None and args.n_per_site < 2:
            raise CalibrationError(f"--n-per-site must be at least 2, got {args.n_per_site}")
        frame = read_csv(args.file)  # one line for an unreadable file or repeated column names
        cal = calibrate(frame, site=args.site, treatment=args.treatment, mediators=args.mediator,
                        outcome=args.outcome, direct_effect=args.direct_effect)
        name = args.name
        if name is None:
            stem = str(args.file).rsplit("/", 1)[-1].split(".")[0]
            name = f"calibrated_{stem}"
        command = "simulate calibrate " + " ".join(shlex.quote(a) for a in _argv_of(args))
        text = to_toml(cal, name=name, command=command, n_sites=args.n_sites, n_per_site=args.n_per_site,
                       truth_sites=None if args.no_truth else 1_000_000)
        loads(text, source="<calibrated scenario>")  # it must validate
    except (AnalysisError, ScenarioError) as exc:
        print(f"simulate calibrate: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # never a traceback on the command line
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(f"simulate calibrate: error: {type(exc).__name__}: {msg}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def _argv_of(args) -> list[str]:
    out = [str(args.file), "--site", args.site, "--treatment", args.treatment]
    for m in args.mediator:
        out += ["--mediator", m]
    out += ["--outcome", args.outcome]
    if args.name is not None:
        out += ["--name", args.name]
    if args.direct_effect:
        out.append("--direct-effect")
    if args.n_sites is not None:
        out += ["--n-sites", str(args.n_sites)]
    if args.n_per_site is not None:
        out += ["--n-per-site", str(args.n_per_site)]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m simulate.calibrate``), same arguments as the subcommand."""
    parser = argparse.ArgumentParser(prog="simulate")
    sub = parser.add_subparsers(dest="command", required=True)
    add_subcommand(sub)
    try:
        args = parser.parse_args(["calibrate", *(sys.argv[1:] if argv is None else argv)])
    except SystemExit as exc:
        return int(exc.code or 0)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
