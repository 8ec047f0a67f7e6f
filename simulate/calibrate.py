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

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import tomlkit
from tomlkit.items import Float, Trivia

from .analyze import AnalysisError, _label, _numeric, _ordered_codes
from .estimators import cell_statistics

__all__ = ["Calibration", "CalibrationError", "calibrate", "calibrate_statistics", "to_toml", "to_document"]


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
        """The number of sites K."""
        return len(self.n_per_site)

    @property
    def arms(self) -> int:
        """The number of arms, control included (L + 1)."""
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

    The steps of the module docstring, one function each: :func:`_contrasts` (site ITTs and
    their sampling covariances), :func:`_dose_profile` (1), :func:`_compliance` (2, and the
    per-contrast moments), :func:`_effects` (3), :func:`_heterogeneity` (4), :func:`_persons`
    (5), :func:`_baselines` (6) and :func:`_design`.

    Parameters
    ----------
    count : int array (K, A)
        n_st, every entry >= 2.
    mean : float array (K, A, Q)
        Cell means of v = (Y, M_1..M_P), Q = P + 1.
    cross : float array (K, A, Q, Q)
        Centred within-cell cross-products W_st = sum_i (v_i - vbar_st)(v_i - vbar_st)'.
    mediators, outcome : names
        The mediators' and the outcome's names.
    site_labels, arm_labels : labels, optional
        The sites' and arms' labels (default 0, 1, ...).
    direct_effect : bool
        Use the intercept version of the between-site regression for the effects and
        the mean direct effect (assumption ii may fail); default: exclusion holds.

    Returns
    -------
    Calibration
        The calibrated moments, with notes on every value clipped or set to 0.
    """
    count = np.asarray(count, np.int64)
    K, A, Q = mean.shape
    notes: list[str] = []
    c = _contrasts(count, mean, cross)
    curvature, g, w = _dose_profile(c, mediators, notes)
    gamma, comp_mean, comp_sd, comp_R = _compliance(c, w, mediators, notes)
    c_mean, c_sd, c_R = _contrast_moments(c, mediators, outcome, arm_labels, notes)
    fit = _effects(c, direct_effect, notes)
    eff_se, tau2, effect_sd = _heterogeneity(c, fit, direct_effect, outcome, notes)
    med_sd, med_R, out_sd, conf, pcs = _persons(c, cross, fit.eff, effect_sd, g, notes)
    mu_m, mu_y, med_base, out_base = _baselines(mean, c.SE, fit.eff, effect_sd)
    sizes, shares, site_share = _design(count)
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
        effect_mean=tuple(float(x) for x in fit.eff), effect_mean_se=tuple(float(x) for x in eff_se),
        effect_sd=float(effect_sd), direct_effect=direct_effect,
        direct_effect_mean=float(fit.kappa),
        effect_mean_origin=tuple(float(x) for x in fit.eff_origin),
        effect_mean_intercept=tuple(float(x) for x in fit.eff_int),
        residual_variance=tau2,
        mediator_mean=tuple(float(x) for x in mu_m), mediator_sd=tuple(float(x) for x in med_sd),
        mediator_correlation=tuple(tuple(float(x) for x in r) for r in med_R),
        mediator_baseline_sd=tuple(float(x) for x in med_base),
        outcome_mean=mu_y, outcome_sd=out_sd, outcome_baseline_sd=out_base,
        confounding=tuple(float(x) for x in conf), person_compliance_sd=tuple(float(x) for x in pcs),
        contrast_mean=tuple(c_mean), contrast_sd=tuple(c_sd), contrast_correlation=tuple(c_R),
        notes=tuple(notes),
    )


class _Contrasts(NamedTuple):
    """The site ITT contrasts of arms t >= 1 against control, and their sampling covariances."""

    K: int
    L: int
    P: int
    n: np.ndarray  # (K, A) cell sizes as floats
    SE: np.ndarray  # (K, A, Q, Q) sampling covariance of the cell means
    itt: np.ndarray  # (K, L, Q) over (Y, M)
    V: np.ndarray  # (K, L, Q, Q) sampling covariance of the ITTs
    pi: np.ndarray  # (K, L, P) ITT on the mediators
    rho: np.ndarray  # (K, L) ITT on the outcome
    t: np.ndarray  # (L,) the doses 1..L


def _contrasts(count: np.ndarray, mean: np.ndarray, cross: np.ndarray) -> _Contrasts:
    K, A, Q = mean.shape
    n = count.astype(float)
    S = cross / (n - 1.0)[:, :, None, None]  # within-cell covariances
    SE = S / n[:, :, None, None]  # sampling covariance of the cell means
    # ITT contrasts, (K, L, Q) over (Y, M); reorder to (M, Y) for reporting
    itt = mean[:, 1:, :] - mean[:, :1, :]
    V = SE[:, 1:] + SE[:, :1]  # (K, L, Q, Q)
    return _Contrasts(K=K, L=A - 1, P=Q - 1, n=n, SE=SE, itt=itt, V=V, pi=itt[:, :, 1:], rho=itt[:, :, 0],
                      t=np.arange(1, A, dtype=float))


def _dose_profile(c: _Contrasts, mediators, notes: list):
    """Step 1: the curvature c_p of g_p(t) = t + c_p t (t - 1), the profile g (P, L) and projection weights w."""
    P, L, t = c.P, c.L, c.t
    curvature = np.zeros(P)
    if L >= 2:
        X = np.column_stack([t, t * (t - 1.0)])
        pibar = c.pi.mean(axis=0)  # (L, P)
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
    return curvature, g, w


def _compliance(c: _Contrasts, w: np.ndarray, mediators, notes: list):
    """Step 2: compliance per unit dose gamma (K, P), and its moments net of sampling error."""
    gamma = np.einsum("pl,klp->kp", w, c.pi)
    Smm_t = c.SE[:, 1:, 1:, 1:]  # (K, L, P, P): S_st/n_st on M
    Smm_0 = c.SE[:, 0, 1:, 1:]  # (K, P, P)
    C = np.einsum("pl,ql,klpq->kpq", w, w, Smm_t) + np.einsum("p,q,kpq->kpq", w.sum(1), w.sum(1), Smm_0)
    comp_mean, comp_sd, comp_R = _net_moments(gamma, C, [f"compliance of {m}" for m in mediators],
                                              "compliance", notes)
    return gamma, comp_mean, comp_sd, comp_R


def _contrast_moments(c: _Contrasts, mediators, outcome: str, arm_labels, notes: list):
    """Per contrast: the moments of (pi_1..P, rho), net of sampling (the header's comment lines)."""
    Q = c.P + 1
    order = list(range(1, Q)) + [0]
    c_mean, c_sd, c_R = [], [], []
    for j in range(c.L):
        xj = c.itt[:, j, order]
        Vj = c.V[:, j][:, order][:, :, order]
        names = [f"ITT on {m}" for m in mediators] + [f"ITT on {outcome}"]
        m_, s_, R_ = _net_moments(xj, Vj, names, f"contrast {arm_labels[j + 1] if arm_labels else j + 1}", notes)
        c_mean.append(tuple(m_))
        c_sd.append(tuple(s_))
        c_R.append(tuple(tuple(r) for r in R_))
    return c_mean, c_sd, c_R


class _Fit(NamedTuple):
    """The errors-in-variables corrected between-site regressions of step 3."""

    X: np.ndarray  # (N, P) stacked ITTs on the mediators
    y: np.ndarray  # (N,) stacked ITTs on the outcome
    Vmm: np.ndarray  # (N, P, P)
    tt: np.ndarray  # (N,) the dose of each (site, contrast)
    A: np.ndarray  # the corrected moment matrix of the regression used
    eff: np.ndarray  # the effects used (origin, or intercept with --direct-effect)
    k_used: float  # the direct effect used (0 through the origin)
    eff_origin: np.ndarray
    eff_int: np.ndarray
    kappa: float  # the intercept version's mean direct effect (nan if not identified)


def _effects(c: _Contrasts, direct_effect: bool, notes: list) -> _Fit:
    """Step 3: the between-site regressions of rho on pi, through the origin and with an intercept."""
    K, L, P = c.K, c.L, c.P
    X = c.pi.reshape(K * L, P)
    y = c.rho.reshape(K * L)
    Vmm = c.V[:, :, 1:, 1:].reshape(K * L, P, P)
    Vmy = c.V[:, :, 1:, 0].reshape(K * L, P)
    tt = np.tile(c.t, K)
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
    A1 = None
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
        eff, k_used, A = eff_int, kappa, A1
    else:
        eff, k_used, A = eff_origin, 0.0, A0
    return _Fit(X=X, y=y, Vmm=Vmm, tt=tt, A=A, eff=eff, k_used=k_used, eff_origin=eff_origin, eff_int=eff_int,
                kappa=kappa)


def _heterogeneity(c: _Contrasts, fit: _Fit, direct_effect: bool, outcome: str, notes: list):
    """Step 4: the effects' site-clustered sandwich SEs, tau^2 net of sampling, and sd(delta)."""
    K, L, P = c.K, c.L, c.P
    X, tt, eff = fit.X, fit.tt, fit.eff
    resid = fit.y - X @ eff - fit.k_used * tt
    # site-clustered sandwich: A^{-1} (sum_s g_s g_s') A^{-1}, g_s = sum_t z_st r_st
    Zc = np.column_stack([tt, X]) if direct_effect else X
    score = (Zc * resid[:, None]).reshape(K, L, -1).sum(axis=1)
    try:
        Ainv = np.linalg.inv(fit.A)
        eff_se = np.sqrt(np.clip(np.diag(Ainv @ (score.T @ score) @ Ainv), 0.0, None))[-P:]
    except np.linalg.LinAlgError:
        eff_se = np.full(P, np.nan)
    a = np.concatenate([[1.0], -eff])  # on (Y, M)
    Vflat = c.V.reshape(K * L, P + 1, P + 1)
    samp = np.einsum("i,kij,j->k", a, Vflat, a)
    n_coef = P + (1 if direct_effect else 0)
    tau2 = float((resid ** 2).sum() / max(K * L - n_coef, 1) - samp.mean())
    pi2 = float((X ** 2).sum(axis=1).mean() - np.trace(fit.Vmm, axis1=1, axis2=2).mean())
    if tau2 <= 0 or pi2 <= 0:
        effect_sd = 0.0
        notes.append(f"effect SD: the residual between-site variance of the ITT on {outcome} net of sampling "
                     f"({tau2:.4g}) is not positive; effect_sd set to 0")
    else:
        effect_sd = math.sqrt(tau2 / pi2)
    return eff_se, tau2, effect_sd


def _persons(c: _Contrasts, cross: np.ndarray, eff: np.ndarray, effect_sd: float, g: np.ndarray, notes: list):
    """Step 5: the person-level moments from the pooled within-cell covariances."""
    P, L = c.P, c.L
    dof = (c.n - 1.0).sum(axis=0)  # (A,)
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
    Ntot = c.n.sum(axis=0)  # (A,)
    pcs = np.zeros(P)
    for p in range(P):
        num = sum(Ntot[j + 1] * (Sp[j + 1, p + 1, p + 1] - S0[p + 1, p + 1]) / g[p, j] ** 2 for j in range(L))
        v_ = num / Ntot[1:].sum()
        pcs[p] = math.sqrt(v_) if v_ > 0 else 0.0
    return med_sd, med_R, out_sd, conf, pcs


def _baselines(mean: np.ndarray, SE: np.ndarray, eff: np.ndarray, effect_sd: float):
    """Step 6: baseline means and between-site SDs of M(0) and Y(0), net of sampling."""
    K, _, Q = mean.shape
    ctrl = mean[:, 0, :]  # (K, Q)
    if K > 1:
        B = np.cov(ctrl, rowvar=False, ddof=1).reshape(Q, Q) - SE[:, 0].mean(axis=0)
    else:
        B = np.zeros((Q, Q))
    mu_m = ctrl[:, 1:].mean(axis=0)
    mu_y = float(ctrl[:, 0].mean() - eff @ mu_m)
    med_base = np.sqrt(np.clip(np.diag(B)[1:], 0.0, None))
    spread = (mu_m ** 2 + np.clip(np.diag(B)[1:], 0, None)).sum()
    ob2 = float(B[0, 0] - eff @ B[1:, 1:] @ eff - effect_sd ** 2 * spread)
    out_base = math.sqrt(ob2) if ob2 > 0 else 0.0
    return mu_m, mu_y, med_base, out_base


def _design(count: np.ndarray):
    """The study's site sizes, pooled arm shares, and per-site share treated (binary treatment)."""
    A = count.shape[1]
    sizes = count.sum(axis=1)
    Ntot = count.sum(axis=0).astype(float)
    shares = tuple(float(x) for x in Ntot / Ntot.sum())
    site_share = tuple(float(x) for x in count[:, 1] / sizes) if A == 2 else ()
    if site_share and max(site_share) - min(site_share) < 1e-12:
        site_share = (site_share[0],)
    return sizes, shares, site_share


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
    """A number with 6 significant digits as the header's comments show it (never nan/inf)."""
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


def _float(x: float) -> Float:
    """A calibrated value as a TOML float of 6 significant digits, written as :func:`_num` writes it."""
    text = _num(x)
    return Float(float(text), Trivia(), text)


def _item(value, comment: str | None = None):
    """A tomlkit item (floats by :func:`_float`), with an end-of-line comment."""
    if isinstance(value, float):
        it = _float(value)
    elif isinstance(value, (list, tuple)):
        it = tomlkit.array()
        for v in value:
            it.append(_float(v) if isinstance(v, float) else v)
    else:
        it = tomlkit.item(value)
    if comment:
        it.comment(comment)
        it.trivia.comment_ws = "  "
    return it


def _ident(name: str, p: int, used: set) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not s or not s[0].isalpha():
        s = f"M{p + 1}_{s}".rstrip("_")
    base, k = s, 2
    while s in used:
        s = f"{base}_{k}"
        k += 1
    used.add(s)
    return s


def _header(cal: Calibration, K: int, command: str | None) -> list[str]:
    """The header's comment lines: the study, the method, the calibrated moments, the notes."""
    P, L = len(cal.mediators), cal.arms - 1
    lines = [f"Calibrated from a real multisite trial: {K} sites, {cal.arms} arms "
             f"({', '.join(cal.arm_labels)}; the first is control), mediators "
             f"{', '.join(cal.mediators)}, outcome {cal.outcome}."]
    if command:
        lines.append(f"produced by: {command}")
    lines += ["Method (simulate/calibrate.py, notes/calibration.md): site ITT effects on each mediator and on the "
              "outcome,",
              "between-site moments net of sampling error (method of moments); effects from the errors-in-variables",
              "corrected between-site regression of the ITT on the outcome on the ITT on the mediators.",
              "What to look at: `simulate truth` (ATE = effect_mean) and `simulate run` (2SLS, LIML, UJIVE, ...).",
              "",
              "Calibrated site-level moments, per arm contrast (ITT on each mediator, then on the outcome):"]
    comp_names = [*cal.mediators, cal.outcome]
    for j in range(L):
        lines.append(f"  {cal.arm_labels[j + 1]} vs {cal.arm_labels[0]}: mean "
                     + ", ".join(f"{c} {_num(v)}" for c, v in zip(comp_names, cal.contrast_mean[j]))
                     + "; SD net of sampling "
                     + ", ".join(f"{c} {_num(v)}" for c, v in zip(comp_names, cal.contrast_sd[j])))
        R = np.array(cal.contrast_correlation[j])
        pairs = [f"{comp_names[a]}:{comp_names[b]} {_num(R[a, b])}" for a in range(P + 1) for b in range(a + 1, P + 1)]
        lines.append(f"    correlations net of sampling: {', '.join(pairs)}")
    origin = f"Between-site regression through the origin: effects {_list(cal.effect_mean_origin)}"
    if np.isfinite(cal.direct_effect_mean):
        used = " (used here: --direct-effect)." if cal.direct_effect else \
            " (not used: exclusion assumed; --direct-effect uses it)."
        lines.append(f"{origin}; with an intercept: effects {_list(cal.effect_mean_intercept)}, mean direct effect "
                     f"{_num(cal.direct_effect_mean)}{used}")
    else:
        lines.append(f"{origin}; the intercept version is not identified with these sites.")
    lines += [f"Standard errors: compliance_mean {_list(cal.compliance_mean_se)} (between sites), effect_mean "
              f"{_list(cal.effect_mean_se)} (site-clustered sandwich).",
              f"Residual between-site variance of the ITT on {cal.outcome}, net of sampling: "
              f"{_num(cal.residual_variance)} -> effect_sd {_num(cal.effect_sd)} (common to all mediators).",
              "Not identified from cell moments, left at 0: person-level effect SDs, the within-site correlation "
              "(vii.a),",
              "the between-site compliance-effect correlation (ix)."]
    lines += [f"note: {note}" for note in cal.notes]
    return lines


def _design_items(cal: Calibration, name: str, K: int, n_sites: int | None, n_per_site: int | None) -> list:
    """The top-level keys and ``[treatment]``: the study's (or the given) sites, sizes and shares."""
    items: list = [("name", _item(name)),
                   ("description", _item(f"Calibrated from {cal.n_sites} sites: " + ", ".join(cal.mediators)
                                         + " -> " + cal.outcome)),
                   None,
                   ("n_sites", _item(K))]
    if n_per_site is not None:
        items.append(("n_per_site", _item(int(n_per_site))))
    elif n_sites is not None and n_sites != cal.n_sites:
        sizes = tomlkit.inline_table()
        sizes.update({"min": min(cal.n_per_site), "max": max(cal.n_per_site)})
        sizes.comment("the study's range of site sizes")
        sizes.trivia.comment_ws = "  "
        items.append(("n_per_site", sizes))
    elif len(set(cal.n_per_site)) == 1:
        items.append(("n_per_site", _item(cal.n_per_site[0])))
    else:
        items.append(("n_per_site", _item(list(cal.n_per_site), "the study's site sizes")))
    treatment = tomlkit.table()
    if cal.arms == 2:
        if len(cal.site_share) == 1:
            treatment.add("share", _item(cal.site_share[0]))
        elif n_sites is None or n_sites == cal.n_sites:
            treatment.add("share", _item(list(cal.site_share), "the study's share treated per site"))
        else:
            treatment.add("share", _item(cal.arm_shares[1]))
    else:
        treatment.add("arms", _item(cal.arms))
        treatment.add("arm_shares", _item(_round_shares(cal.arm_shares), f"pooled: {', '.join(cal.arm_labels)}"))
    items += [None, ("treatment", treatment)]
    return items


def _pairs_table(kind: str, R, sd, P: int):
    """``[site.correlations]`` / ``[person.correlations]``: the nonzero pairs of components that vary."""
    pairs = [(a, b) for a in range(P) for b in range(a + 1, P) if R[a, b] != 0.0 and sd[a] > 0 and sd[b] > 0]
    if not pairs:
        return None
    table = tomlkit.table()
    for a, b in pairs:
        table.add(f"{kind}_{a + 1}:{kind}_{b + 1}", _item(float(R[a, b])))
    return table


def _model_items(cal: Calibration, names: list[str]) -> list:
    """``[mediators]``, ``[site]`` and ``[person]``: the calibrated moments."""
    P = len(cal.mediators)
    mediators = tomlkit.table()
    mediators.add("names", _item(names))
    if cal.arms > 2 and any(c != 0 for c in cal.curvature):
        mediators.add("curvature", _item(list(cal.curvature), "the dose profile g(t) = t + c t (t - 1) of the mean "
                                                              "ITTs"))
    site = tomlkit.table()
    site.add("compliance_mean", _item(list(cal.compliance_mean), "ITT on M per unit dose"))
    site.add("compliance_sd", _item(list(cal.compliance_sd), "net of sampling error"))
    site.add("effect_mean", _item(list(cal.effect_mean)))
    site.add("effect_sd", _item(cal.effect_sd))
    if cal.direct_effect:
        site.add("direct_effect_mean", _item(cal.direct_effect_mean))
    site.add("mediator_baseline_sd", _item(list(cal.mediator_baseline_sd)))
    site.add("outcome_baseline_sd", _item(cal.outcome_baseline_sd))
    # a correlation with a component clipped to SD 0 has no effect: left out
    pairs = _pairs_table("compliance", np.array(cal.compliance_correlation), cal.compliance_sd, P)
    if pairs is not None:
        site.add(tomlkit.nl())
        site.add("correlations", pairs)
    person = tomlkit.table()
    person.add("mediator_mean", _item(list(cal.mediator_mean)))
    person.add("mediator_sd", _item(list(cal.mediator_sd)))
    person.add("outcome_mean", _item(cal.outcome_mean))
    person.add("outcome_sd", _item(cal.outcome_sd, "SD of Y(0)"))
    person.add("compliance_sd", _item(list(cal.person_compliance_sd)))
    sd_m = cal.mediator_sd
    confounding = [r if sd_m[p] > 0 and cal.outcome_sd > 0 else 0.0 for p, r in enumerate(cal.confounding)]
    person.add("confounding", _item(confounding, "corr(M(0), Y(0)) within site"))
    pairs = _pairs_table("mediator", np.array(cal.mediator_correlation), sd_m, P)
    if pairs is not None:
        person.add(tomlkit.nl())
        person.add("correlations", pairs)
    return [("mediators", mediators), ("site", site), ("person", person)]


def to_document(cal: Calibration, *, name: str = "calibrated", command: str | None = None,
                n_sites: int | None = None, n_per_site: int | None = None,
                truth_sites: int | None = 1_000_000) -> tomlkit.TOMLDocument:
    """The calibrated scenario as a :mod:`tomlkit` document (header comments, tables, end-of-line comments).

    Parameters
    ----------
    cal : Calibration
        The calibrated moments.
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

    Returns
    -------
    tomlkit.TOMLDocument
        ``tomlkit.dumps`` of it is the scenario file (see :func:`to_toml`).
    """
    used: set[str] = set()
    names = [_ident(m, p, used) for p, m in enumerate(cal.mediators)]
    K = cal.n_sites if n_sites is None else int(n_sites)
    body = _design_items(cal, name, K, n_sites, n_per_site) + [None] + _model_items(cal, names)
    header = _header(cal, K, command)
    if truth_sites:
        from .scenario import loads
        from .truth import truth

        sc = loads(tomlkit.dumps(_document([], body)), source="<calibrated>")
        tr = truth(sc, n_sites=truth_sites)
        header += [f"truth [base] {m}: ate = {tr.ate[p]:.4f}, limit_2sls = {tr.limit_2sls[p]:.4f}"
                   for p, m in enumerate(names)]
    return _document(header, body)


def _document(header: list[str], body: list) -> tomlkit.TOMLDocument:
    """A document of header comments, a blank line, then the body's ``(key, item)`` pairs (None: a blank line)."""
    doc = tomlkit.document()
    for line in header:
        doc.add(tomlkit.comment(line))
    if header:
        doc.add(tomlkit.nl())
    for entry in body:
        if entry is None:
            doc.add(tomlkit.nl())
        else:
            doc.add(*entry)
    return doc


def to_toml(cal: Calibration, *, name: str = "calibrated", command: str | None = None,
            n_sites: int | None = None, n_per_site: int | None = None, truth_sites: int | None = 1_000_000) -> str:
    """The calibrated scenario as TOML text (``tomlkit.dumps`` of :func:`to_document`).

    Parameters
    ----------
    cal : Calibration
        The calibrated moments.
    name : str
        The scenario's name.
    command : str, optional
        The command that produced it (written as a header line).
    n_sites, n_per_site : int, optional
        Replace the study's sites and sizes (e.g. a larger design for a stress test);
        by default the study's K and actual site sizes.
    truth_sites : int or None
        Write the truth of the scenario in the header, computed over this many sites; None skips it.

    Returns
    -------
    str
        The scenario file's text.
    """
    return tomlkit.dumps(to_document(cal, name=name, command=command, n_sites=n_sites, n_per_site=n_per_site,
                                     truth_sites=truth_sites))


def _round_shares(shares) -> list[float]:
    """Shares to 6 decimals that still sum to 1 exactly (the last absorbs the rounding)."""
    r = [round(float(s), 6) for s in shares]
    r[-1] = round(1.0 - sum(r[:-1]), 6)
    return r
