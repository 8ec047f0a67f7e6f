"""Integer codes shared by the estimator kernels: statuses, estimator rows, SE columns, diagnostics.

Plain module constants: Numba freezes them into the compiled kernels, so this file is
part of the kernels' source hash (its name ends in ``_nb.py``; see :mod:`simulate.kernels`).
"""

# ---------------------------------------------------------------- status codes
STATUS_OK = 0
STATUS_SINGULAR = 1  # singular (or numerically singular) first stage / design
STATUS_EMPTY_CELL = 2  # a site with an empty arm
STATUS_TOO_FEW_SITES = 3  # fewer site contrasts than mediators (or regressors)
STATUS_NOT_APPLICABLE = 4  # e.g. the pooled Wald estimator with P > 1
STATUS_SINGLETON_CELL = 5  # a cell with one person (UJIVE, precision weights)
STATUS_NUMERICAL = 6  # a non-finite result or a failed decomposition
STATUS_SITE_UNDERIDENTIFIED = 7  # fewer arms than P + 1 in a site: its own IV is not defined (RCIV)
STATUS_WEAK_SITE_COMPLIANCE = 8  # a site's own first stage below RCIV_MIN_SITE_F (RCIV)

# ---------------------------------------------------------------- estimator rows
E_OLS = 0
E_TSLS = 1
E_LIML = 2
E_FULLER = 3
E_UJIVE = 4
E_MBTSLS = 5  # KCFGI's modified bias-corrected 2SLS (estimator 'mbtsls')
E_BTSLS = E_MBTSLS  # its name before the rename (kept for other modules)
E_BETWEEN_OLS = 6
E_BETWEEN_PRECISION = 7
E_BETWEEN_INTERCEPT = 8
E_WALD = 9
E_RCIV_META = 10  # Raudenbush, Reardon & Nomi (2012): site IV estimates pooled by DerSimonian-Laird
E_RCIV_BIVARIATE = 11  # RRN (2012): ratio of the cross-site mean ITT effects on Y and on M (P = 1)
N_ESTIMATORS = 12

# ---------------------------------------------------------------- standard errors
SE_CONVENTIONAL = 0
SE_HC0 = 1
SE_HC1 = 2
SE_CLUSTER = 3
SE_MANY_INSTRUMENT = 4
SE_HETEROGENEITY = 5
SE_HETEROGENEITY_JIVE = 6  # Kolesar (2013) heterogeneity-robust SE of UJIVE (person level)
SE_MANY_INSTRUMENT_COMPLETE = 7  # KCFGI (2015) SE with its non-Gaussian terms (MBTSLS, person level)
SE_EFFECT_SD = 8  # not a standard error: the RCIV rows' estimated cross-site SD of the effect
N_SE = 9

# ---------------------------------------------------------------- RCIV constants
RCIV_MIN_SITE_F = 3.841458820694124  # chi2_1 0.95 quantile: below it a site's own 95% Fieller set is unbounded

# ---------------------------------------------------------------- scalar diagnostics
D_N = 0
D_SITES = 1
D_ARMS = 2
D_LIML_KAPPA = 3
D_FULLER_KAPPA = 4
D_SIGMA_MIN = 5  # smallest singular value of the (K L) x P compliance matrix
D_SIGMA_RATIO = 6  # smallest / largest singular value
D_SARGAN = 7  # n u'P u / u'M_W u with 2SLS residuals
D_SARGAN_DF = 8
D_CRAGG_DONALD = 9  # (n - K A)(kappa_LIML - 1), the LIML overid statistic
D_NONLINEAR = 10  # Wald statistic of the squared compliances (between-site)
D_NONLINEAR_DF = 11
D_DIRECT = 12  # intercept (mean direct effect) of between_intercept
D_DIRECT_SE_CONVENTIONAL = 13
D_DIRECT_SE_HC0 = 14
D_DIRECT_SE_HC1 = 15
D_FIRST_STAGE_DF1 = 16
D_FIRST_STAGE_DF2 = 17
D_NONLINEAR_STATUS = 18
# the falsification tests of falsify_nb.py (between-site, jackknife CR3 covariance)
D_QUADRATIC = 19  # Wald statistic of the squares and cross-products of the compliances
D_QUADRATIC_DF = 20
D_QUADRATIC_STATUS = 21
D_FALSIFICATION = 22  # Wald statistic of the intercept and the quadratic terms jointly
D_FALSIFICATION_DF = 23
D_INTERCEPT_TEST = 24  # Wald statistic of the intercept of between_intercept (1 df)
D_QUADRATIC_NU = 25  # Hotelling (HTZ) degrees of freedom nu of each falsification test
D_FALSIFICATION_NU = 26
D_INTERCEPT_NU = 27
# Anderson-Rubin sufficient statistics (kernels/ar_nb.py), Q = P + 1 <= AR_MAX_Q; upper triangles row-major
AR_MAX_Q = 4
AR_TRI = AR_MAX_Q * (AR_MAX_Q + 1) // 2
D_AR_B = 28  # B (between cells within sites), AR_TRI slots
D_AR_W = D_AR_B + AR_TRI  # Wc (within cells)
D_AR_G = D_AR_W + AR_TRI  # g, the pooled instrument's score (AR_MAX_Q slots)
D_AR_V = D_AR_G + AR_MAX_Q  # V, its site-clustered covariance at the unrestricted fit
D_BALANCED = D_AR_V + AR_TRI  # 1 when every cell has the same size (UJIVE = MBTSLS exactly), else 0
# jackknife AR (Mikusheva & Sun 2022; kernels/ar_nb.py): its numerator a'N a (N upper triangle, AR_TRI slots)
# and its variance Phi(a), a quartic form (coefficients of the monomials a_i a_j a_k a_l, i <= j <= k <= l)
AR_QUART = AR_MAX_Q * (AR_MAX_Q + 1) * (AR_MAX_Q + 2) * (AR_MAX_Q + 3) // 24
D_JAR_N = D_BALANCED + 1
D_JAR_PHI = D_JAR_N + AR_TRI
N_DIAGNOSTICS = D_JAR_PHI + AR_QUART
