r"""Numba kernels: cell-level sufficient statistics and every MSMM-IV estimator (one import for all).

Nothing here knows pandas, names or files. Kernels take arrays, return arrays and
integer status codes, and never raise for a numerical failure.

Notation
--------
Persons i = 1..n in sites s = 0..K-1 and arms t = 0..L (A = L + 1 arms); a cell
c = (s, t). The Q = P + 1 variables are stacked as v_i = (Y_i, M_1i, ..., M_Pi), so
index 0 is the outcome and indices 1..P are the mediators (the endogenous regressors
x_i). With site fixed effects W (K dummies) and the saturated site-by-arm instruments
Z (K L dummies, arms 1..L in every site), [Z, W] spans the K A cell dummies, so

* P_{[Z,W]} v = cell means, P_W v = site means, and P_{Z~} = P_{[Z,W]} - P_W with
  Z~ = M_W Z;
* ``B  = V' P_{Z~} V = sum_c n_c (vbar_c - vbar_s)(vbar_c - vbar_s)'``
  (between cells, within sites);
* ``Wc = V' M_{[Z,W]} V = sum_c sum_{i in c} (v_i - vbar_c)(v_i - vbar_c)'``
  (within cells);
* ``V' M_W V = Wc + B`` (within sites).

Every k-class estimator with site fixed effects is then
``beta(kappa) = A_XX^{-1} A_XY`` with ``A = B + (1 - kappa) Wc``:
OLS (kappa = 0), 2SLS (kappa = 1), LIML (kappa = smallest root of
det(Wc + B - kappa Wc) = 0), Fuller (kappa_LIML - alpha / (n - K A)) and the
modified bias-corrected 2SLS of Kolesar, Chetty, Friedman, Glaeser & Imbens (2015)
(kappa = 1 + K L / (n - K A)). See ``notes/estimators.md`` for every formula.

The kernels live by stage in :mod:`.codes_nb` (status codes, estimator rows, SE columns,
diagnostics), :mod:`.moments_nb` (cell and site statistics), :mod:`.linalg_nb` (guarded
inverses, sandwiches), :mod:`.kclass_nb` (OLS, 2SLS, LIML, Fuller, MBTSLS, Wald,
Anderson-Rubin), :mod:`.jive_nb` (UJIVE, person-level meats), :mod:`.sitelevel_nb`
(between-site GLS, CR3) and :mod:`.fit_nb` (every estimator from the statistics).  This
module re-exports all of them under the names they had when they lived here (the
underscore names too), so ``from simulate.kernels import estimators_nb as nb`` keeps working.
"""

from .ar_nb import ar_statistics
from .codes_nb import (
    AR_MAX_Q,
    AR_TRI,
    D_AR_B,
    D_AR_G,
    D_AR_V,
    D_AR_W,
    D_ARMS,
    D_BALANCED,
    D_CRAGG_DONALD,
    D_DIRECT,
    D_DIRECT_SE_CONVENTIONAL,
    D_DIRECT_SE_HC0,
    D_DIRECT_SE_HC1,
    D_FIRST_STAGE_DF1,
    D_FIRST_STAGE_DF2,
    D_FULLER_KAPPA,
    D_LIML_KAPPA,
    D_N,
    D_NONLINEAR,
    D_NONLINEAR_DF,
    D_NONLINEAR_STATUS,
    D_SARGAN,
    D_SARGAN_DF,
    D_SIGMA_MIN,
    D_SIGMA_RATIO,
    D_SITES,
    E_BETWEEN_INTERCEPT,
    E_BETWEEN_OLS,
    E_BETWEEN_PRECISION,
    E_BTSLS,
    E_FULLER,
    E_LIML,
    E_MBTSLS,
    E_OLS,
    E_TSLS,
    E_UJIVE,
    E_WALD,
    N_DIAGNOSTICS,
    N_ESTIMATORS,
    N_SE,
    SE_CLUSTER,
    SE_CONVENTIONAL,
    SE_HC0,
    SE_HC1,
    SE_HETEROGENEITY,
    SE_MANY_INSTRUMENT,
    STATUS_EMPTY_CELL,
    STATUS_NOT_APPLICABLE,
    STATUS_NUMERICAL,
    STATUS_OK,
    STATUS_SINGLETON_CELL,
    STATUS_SINGULAR,
    STATUS_TOO_FEW_SITES,
)
from .fit_nb import _put_site_fit, fit_from_statistics, fit_persons, fit_with_breads, fit_with_statistics
from .jive_nb import _PERSON_BLOCK, person_meats, ujive_fit, ujive_from_deviations
from .kclass_nb import anderson_rubin, bekker_se, kcfgi_se, kclass_fit, kclass_from_deviations, liml_kappa, wald_fit
from .linalg_nb import REL_TOL, coef_vector, quad, sandwich_se, scalar_inverse, sym_inverse
from .moments_nb import (
    between_within,
    between_within_from_deviations,
    cell_deviations,
    cell_moments,
    cell_statistics,
    dot4,
    site_cell_statistics,
    site_moments,
    sum4,
)
from .sitelevel_nb import cr3_cov, precision_weights, site_contrasts, site_gls

# the names these kernels had when they were private to this module
_REL_TOL = REL_TOL
_sum4 = sum4
_dot4 = dot4
_cell_moments = cell_moments
_between_within = between_within_from_deviations
_sym_inverse = sym_inverse
_scalar_inverse = scalar_inverse
_sandwich_se = sandwich_se
_quad = quad
_coef_vector = coef_vector
_kclass_fit = kclass_from_deviations
_ujive_fit = ujive_from_deviations
_cr3_cov = cr3_cov
_site_gls = site_gls
_fit_from_statistics = fit_with_breads
_wald = wald_fit
_PRIVATE = (_PERSON_BLOCK, _put_site_fit)  # imported above under their own names

__all__ = [
    "AR_MAX_Q", "AR_TRI", "D_AR_B", "D_AR_G", "D_AR_V", "D_AR_W", "D_BALANCED", "ar_statistics",
    "D_ARMS", "D_CRAGG_DONALD", "D_DIRECT", "D_DIRECT_SE_CONVENTIONAL", "D_DIRECT_SE_HC0", "D_DIRECT_SE_HC1",
    "D_FIRST_STAGE_DF1", "D_FIRST_STAGE_DF2", "D_FULLER_KAPPA", "D_LIML_KAPPA", "D_N", "D_NONLINEAR",
    "D_NONLINEAR_DF", "D_NONLINEAR_STATUS", "D_SARGAN", "D_SARGAN_DF", "D_SIGMA_MIN", "D_SIGMA_RATIO", "D_SITES",
    "E_BETWEEN_INTERCEPT", "E_BETWEEN_OLS", "E_BETWEEN_PRECISION", "E_BTSLS", "E_MBTSLS", "E_FULLER", "E_LIML",
    "E_OLS", "E_TSLS", "E_UJIVE", "E_WALD", "N_DIAGNOSTICS", "N_ESTIMATORS", "N_SE", "SE_CLUSTER", "SE_CONVENTIONAL",
    "SE_HC0", "SE_HC1", "SE_HETEROGENEITY", "SE_MANY_INSTRUMENT", "STATUS_EMPTY_CELL", "STATUS_NOT_APPLICABLE",
    "STATUS_NUMERICAL", "STATUS_OK", "STATUS_SINGLETON_CELL", "STATUS_SINGULAR", "STATUS_TOO_FEW_SITES", "REL_TOL",
    "anderson_rubin", "bekker_se", "between_within", "between_within_from_deviations", "cell_deviations",
    "cell_moments", "cell_statistics", "coef_vector", "cr3_cov", "dot4", "fit_from_statistics", "fit_persons",
    "fit_with_breads", "fit_with_statistics", "kcfgi_se", "kclass_fit", "kclass_from_deviations", "liml_kappa",
    "person_meats", "precision_weights", "quad", "sandwich_se", "scalar_inverse", "site_cell_statistics",
    "site_contrasts", "site_gls", "site_moments", "sum4", "sym_inverse", "ujive_fit", "ujive_from_deviations",
    "wald_fit",
]
