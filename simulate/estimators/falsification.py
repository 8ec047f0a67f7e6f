r"""The falsification tests' p-values, the one-site interval and the design warnings, as row columns.

The kernel :mod:`simulate.kernels.falsify_nb` computes three Wald statistics on the unweighted
between-site regression of the site ITT contrasts on the site compliance contrasts, each with
the jackknife (CR3) site-clustered covariance; here they get their F references (K sites,
P mediators, m = P(P+1)/2 quadratic terms, k = 1 + P + m coefficients of the quadratic model):

``quadratic_stat`` / ``quadratic_df`` / ``quadratic_htz_df`` / ``quadratic_p``
    H0: every square and cross-product of the compliances has coefficient zero (``df`` = m).
``falsification_stat`` / ``falsification_df`` / ``falsification_htz_df`` / ``falsification_p``
    H0: the intercept and every quadratic coefficient are zero, i.e. the site ITT effects lie on
    a plane through the origin (the founding paper's check in full; ``df`` = m + 1).
``intercept_stat`` / ``intercept_htz_df`` / ``intercept_p``
    H0: the intercept of ``between_intercept`` (the mean direct effect) is zero (1 df).

Each p-value refers the CR3 Wald statistic W with q tested coefficients to F(q, K - k) (W / q),
the convention of the squares-only ``nonlinearity_p``.  On ``baseline`` (2,000 replications,
MCSE 0.5%) the quadratic test rejected 7.0%, 7.7%, 6.1% at 5% with 50, 100, 200 sites of 200:
somewhat liberal with fewer than about 200 sites, because the products of estimated compliances
make a few sites high-leverage and the CR3 covariance of their coefficients very variable.
``*_htz_df`` measures that: nu of the Hotelling approximation of Pustejovsky & Tipton (2018, "HTZ";
:func:`simulate.kernels.falsify_nb.htz_df`), the degrees of freedom a Wishart matrix needs to be as
variable as the CR3 covariance under the working model (K - 1 for a mean with equal leverage; about
7 for the quadratic terms with 50 sites of ``baseline``, 22 with 200).  Referring W to the HTZ
F(q, nu - q + 1) was far too conservative with the CR3 covariance (0.5% and 2.6% at 5%, 50 and
200 sites) and, with the CR2 covariance it is built for, still conservative (3.0% and 3.2%, a
numpy check of 600 and 500 replications), so it is reported, not used.

The tests with an intercept carry the between-site regression's finite-sample bias: the site
compliances are estimated, so the slopes are attenuated and the intercept picks up
E[ITT] - slope E[compliance] (errors in variables, shrinking with the persons per site but not
with the sites).  With few persons per site and many sites they reject more often than their
level even when every assumption holds; the quadratic test does not have this problem to first
order.  Their rejection rates per dial are in the summaries (:func:`rejection_rates`).

``conf_low_within`` / ``conf_high_within``
    With one site (K = 1) the site-clustered interval does not exist (t with K - 1 = 0 degrees of
    freedom); these columns hold the within-site heteroskedasticity-robust interval instead:
    ``estimate -+ q se_hc1`` with the person-level HC1 standard error and q the t quantile with
    n - 1 - P degrees of freedom.  It covers the site's own effect (the persons' compliance-weighted
    effect of that site), not the population's.  NaN when K > 1 and for the between-site rows.

:func:`design_warnings` gives the one-line warnings of a design: K = P, where the site-clustered
intervals of the person-level estimators have zero width and cover 0%.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from ..kernels import codes_nb as codes
from .registry import REGISTRY

__all__ = ["FALSIFICATION_KEYS", "WITHIN_KEYS", "quadratic_terms", "f_p", "htz_p", "falsification_columns",
           "within_site_columns", "design_warnings", "REJECTION_TESTS", "rejection_rates"]

FALSIFICATION_KEYS: tuple[str, ...] = (
    "quadratic_stat", "quadratic_df", "quadratic_htz_df", "quadratic_p", "falsification_stat", "falsification_df",
    "falsification_htz_df", "falsification_p", "intercept_stat", "intercept_htz_df", "intercept_p",
)
"""Columns of :func:`falsification_columns`, in order (one value per dataset)."""

WITHIN_KEYS: tuple[str, ...] = ("conf_low_within", "conf_high_within")
"""Columns of :func:`within_site_columns`."""

REJECTION_TESTS: tuple[str, ...] = ("nonlinearity_p", "quadratic_p", "falsification_p", "intercept_p", "overid_p")
"""The p-value columns whose rejection rates :func:`rejection_rates` reports."""

_PERSON_LEVEL = np.array([s.primary_se == "cluster" for s in REGISTRY])


def quadratic_terms(n_mediators: int) -> int:
    """The number m = P(P+1)/2 of squares and cross-products of P compliances.

    Parameters
    ----------
    n_mediators : int

    Returns
    -------
    int
    """
    return n_mediators * (n_mediators + 1) // 2


def f_p(stat, df1, df2):
    """Upper tail of F(df1, df2) at stat / df1, elementwise; NaN where df1 or df2 is not positive.

    Parameters
    ----------
    stat, df1 : array_like
        Wald statistics and their numbers of tested coefficients.
    df2 : float
        Denominator degrees of freedom.

    Returns
    -------
    numpy.ndarray
    """
    stat, df1 = np.asarray(stat, float), np.asarray(df1, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if df2 <= 0:
            return np.full(np.shape(stat), np.nan)
        return np.where(df1 > 0, special.fdtrc(np.maximum(df1, 1), df2, stat / np.maximum(df1, 1)), np.nan)


def htz_p(stat, q, nu):
    """Hotelling p-value of a Wald statistic: (nu - q + 1) / (nu q) stat against F(q, nu - q + 1), elementwise.

    Parameters
    ----------
    stat, q, nu : array_like
        The Wald statistics, the tested coefficients and the Hotelling degrees of freedom.

    Returns
    -------
    (ddf, p) : tuple of numpy.ndarray
        The denominator degrees of freedom nu - q + 1 and the p-value; NaN where q or
        nu - q + 1 is not positive.
    """
    stat, q, nu = np.asarray(stat, float), np.asarray(q, float), np.asarray(nu, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ddf = nu - q + 1.0
        ok = (q > 0) & (ddf > 0)
        ddf = np.where(ok, ddf, np.nan)
        f = ddf / (nu * q) * stat
        p = np.where(ok, special.fdtrc(np.where(ok, q, 1.0), np.where(ok, ddf, 1.0), f), np.nan)
    return ddf, p


def falsification_columns(diag: np.ndarray, n_sites: int, n_mediators: int) -> dict[str, np.ndarray]:
    """The falsification tests of R datasets, with their p-values (see the module docstring).

    Parameters
    ----------
    diag : numpy.ndarray
        (R, N_DIAGNOSTICS), the kernels' diagnostics.
    n_sites, n_mediators : int
        K and P.

    Returns
    -------
    dict
        :data:`FALSIFICATION_KEYS` -> (R,) float64.
    """
    d = np.asarray(diag, float)
    K, P = int(n_sites), int(n_mediators)
    k = 1 + P + quadratic_terms(P)
    q, qdf = d[:, codes.D_QUADRATIC], d[:, codes.D_QUADRATIC_DF]
    j, jdf = d[:, codes.D_FALSIFICATION], d[:, codes.D_FALSIFICATION_DF]
    i = d[:, codes.D_INTERCEPT_TEST]
    one = np.where(np.isfinite(i), 1.0, np.nan)
    return {
        "quadratic_stat": q, "quadratic_df": qdf, "quadratic_htz_df": d[:, codes.D_QUADRATIC_NU],
        "quadratic_p": f_p(q, qdf, K - k),
        "falsification_stat": j, "falsification_df": jdf, "falsification_htz_df": d[:, codes.D_FALSIFICATION_NU],
        "falsification_p": f_p(j, jdf, K - k),
        "intercept_stat": i, "intercept_htz_df": d[:, codes.D_INTERCEPT_NU], "intercept_p": f_p(i, one, K - 1 - P),
    }


def within_site_columns(estimate: np.ndarray, se: np.ndarray, diag: np.ndarray, n_sites: int,
                        level: float = 0.95) -> dict[str, np.ndarray]:
    """The one-site interval of every estimator: person-level HC1, t(n - 1 - P); NaN unless K = 1.

    Parameters
    ----------
    estimate : (R, E, P)
    se : (R, E, N_SE, P)
    diag : (R, N_DIAGNOSTICS)
    n_sites : int
        K.
    level : float
        Confidence level.

    Returns
    -------
    dict
        :data:`WITHIN_KEYS` -> (R, E, P) float64 (NaN for the between-site estimators, whose
        primary standard error is not site-clustered, and whenever K > 1).
    """
    R, E, P = estimate.shape
    if n_sites != 1:
        nan = np.full((R, E, P), np.nan)
        return {"conf_low_within": nan, "conf_high_within": nan.copy()}
    s = np.where(_PERSON_LEVEL[None, :, None], se[:, :, codes.SE_HC1, :], np.nan)
    df = np.asarray(diag, float)[:, codes.D_N] - 1.0 - P
    df = np.where(df > 0, df, np.nan)[:, None, None]
    q = special.stdtrit(df, 0.5 + level / 2.0)
    return {"conf_low_within": estimate - q * s, "conf_high_within": estimate + q * s}


def design_warnings(n_sites: int, n_mediators: int, n_arms: int = 2) -> list[str]:
    """One-line warnings about a design's inference (not errors: the design may be a dial's value).

    Parameters
    ----------
    n_sites, n_mediators : int
        K and P.
    n_arms : int
        Arms including control.

    Returns
    -------
    list of str
        ``n_sites: ...`` when K = P (the site-clustered intervals then have zero width and cover
        0%: the clustered meat of K sites has rank K - P = 0), and when K = 1 (no site-clustered
        interval; rows carry the within-site HC1 interval in ``conf_low_within`` and
        ``conf_high_within``).
    """
    out = []
    K, P = int(n_sites), int(n_mediators)
    if K == 1:
        out.append("n_sites: one site gives no site-clustered interval; rows carry the within-site "
                   "heteroskedasticity-robust (HC1) interval in conf_low_within / conf_high_within")
    elif K == P and K * (n_arms - 1) >= P:
        out.append(f"n_sites: K = P = {K}: the site-clustered intervals of the person-level estimators "
                   "have zero width and cover 0% (K sites leave K - P = 0 degrees of freedom)")
    return out


def rejection_rates(rows, alpha: float = 0.05, by: tuple[str, ...] = ("cell",),
                    tests: tuple[str, ...] = REJECTION_TESTS):
    """Rejection rate with its MCSE of each dataset-level test, per group (a grid cell, a dial value).

    Each replication counts once (its first row: the tests are the same on every row of a
    dataset); replications where the test could not be computed (NaN p-value) are left out
    and counted in ``n``.

    Parameters
    ----------
    rows : pandas.DataFrame
        Rows of a run (columns ``rep``, the ``by`` columns and the ``tests``).
    alpha : float
        The level.
    by : tuple of str
        Grouping columns.
    tests : tuple of str
        p-value columns.

    Returns
    -------
    pandas.DataFrame
        Columns ``by``, ``test``, ``rejection_rate``, ``mcse`` (sqrt(r(1-r)/n)), ``n``.
    """
    import pandas as pd

    from ..measures import rejection_rate

    first = rows.drop_duplicates(list(by) + ["rep"])
    out = []
    for key, g in first.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        for t in tests:
            if t not in g:
                continue
            m = rejection_rate(g[t].to_numpy(float), alpha)
            out.append({**dict(zip(by, key)), "test": t, "rejection_rate": m.value, "mcse": m.mcse, "n": m.n})
    return pd.DataFrame(out)
