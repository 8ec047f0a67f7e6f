"""Plain-numpy reference implementations on full person-level matrices.

Slow and obviously correct: every formula is the textbook matrix expression with
site dummies W (n x K), site-by-arm instruments Z (n x K L, arms 1..L) and explicit
n x n projection matrices. Used only by the tests, on small data.
"""

import numpy as np
import scipy.linalg


def design(site, arm, n_sites, n_arms):
    """Site dummies W (n, K), instruments Z (n, K L) and cell dummies (n, K A)."""
    n = site.shape[0]
    W = np.zeros((n, n_sites))
    W[np.arange(n), site] = 1.0
    cells = np.zeros((n, n_sites * n_arms))
    cells[np.arange(n), site * n_arms + arm] = 1.0
    keep = [s * n_arms + t for s in range(n_sites) for t in range(1, n_arms)]
    return W, cells[:, keep], cells


def projection(A):
    """P_A = A (A'A)^+ A'."""
    return A @ np.linalg.pinv(A)


def liml_kappa(y, X, Z, W):
    """Smallest root of det(e'M_W e - kappa e'M_[Z,W] e) = 0, e = [y, X]."""
    n = y.shape[0]
    e = np.column_stack([y, X])
    MW = np.eye(n) - projection(W)
    MZ = np.eye(n) - projection(np.column_stack([Z, W]))
    return scipy.linalg.eigh(e.T @ MW @ e, e.T @ MZ @ e, eigvals_only=True)[0]


def kclass(y, X, Z, W, kappa):
    """k-class estimate with exogenous W and its conventional / HC0 / clustered SEs.

    Follows linearmodels' IVLIML conventions: bread (1-kappa) X'X + kappa X'P_Z X on
    the full regressors [X, W]; HC0 meat sum u_i^2 xhat_i xhat_i' with xhat = P_Z X.
    The clustered meat uses the k-class scores h_i = ((I - kappa M_Z) X)_i.
    """
    n, P = X.shape
    Xa = np.column_stack([X, W])
    Za = np.column_stack([Z, W])
    PZ = projection(Za)
    MZ = np.eye(n) - PZ
    Ak = np.eye(n) - kappa * MZ
    bread = Xa.T @ Ak @ Xa
    params = np.linalg.solve(bread, Xa.T @ Ak @ y)
    u = y - Xa @ params
    bi = np.linalg.inv(bread)
    conv = (u @ u / n) * bi
    xhat = PZ @ Xa
    meat = (xhat * u[:, None] ** 2).T @ xhat
    rob = bi @ meat @ bi
    h = Ak @ Xa
    site = W.argmax(axis=1)
    K = W.shape[1]
    scores = np.array([(h[site == s] * u[site == s, None]).sum(0) for s in range(K)])
    clu = bi @ (scores.T @ scores) @ bi * (K / (K - 1)) * ((n - 1) / (n - K - P))
    return dict(
        beta=params[:P],
        se_conventional=np.sqrt(np.diag(conv)[:P]),
        se_hc0=np.sqrt(np.diag(rob)[:P]),
        se_hc1=np.sqrt(np.diag(rob)[:P] * n / (n - K - P)),
        se_cluster=np.sqrt(np.diag(clu)[:P]),
        resid=u,
    )


def ols_hc0(y, X, W):
    """OLS with site dummies; HC0 with the full regressor matrix."""
    n, P = X.shape
    Xa = np.column_stack([X, W])
    bi = np.linalg.inv(Xa.T @ Xa)
    params = bi @ Xa.T @ y
    u = y - Xa @ params
    meat = (Xa * u[:, None] ** 2).T @ Xa
    return np.sqrt(np.diag(bi @ meat @ bi)[:P])


def heterogeneity_se(y, X, Z, W, beta):
    """Kolesar (2013) SE robust to effect heterogeneity, for 2SLS-type estimators.

    psi_i = Rx_i' u_i + (Ry_i - Rx_i'beta) v_i with R = P_{Z~}[y, X] and
    v = M_[Z,W] X; V = H^{-1} sum psi psi' H^{-1}, H = X'P_{Z~}X - m X'M X chosen by
    the caller through beta only (here H is the 2SLS-type bread given kappa=1).
    """
    n, P = X.shape
    MW = np.eye(n) - projection(W)
    Zt = MW @ Z
    PZt = projection(Zt)
    MZ = np.eye(n) - projection(np.column_stack([Z, W]))
    u = MW @ (y - X @ beta)
    Rx = PZt @ X
    Ry = PZt @ y
    v = MZ @ X
    psi = Rx * u[:, None] + (Ry - Rx @ beta)[:, None] * v
    return psi.T @ psi


def tsls(y, X, Z, W):
    return kclass(y, X, Z, W, 1.0)


def liml(y, X, Z, W):
    return kclass(y, X, Z, W, liml_kappa(y, X, Z, W))


def fuller(y, X, Z, W, alpha=1.0):
    n = y.shape[0]
    ninstr = np.linalg.matrix_rank(np.column_stack([Z, W]))
    return kclass(y, X, Z, W, liml_kappa(y, X, Z, W) - alpha / (n - ninstr))


def bias_corrected_tsls(y, X, Z, W):
    """KCFGI (2015) modified bias-corrected 2SLS: kappa = 1 + k / (n - k - l)."""
    n = y.shape[0]
    k, l = Z.shape[1], W.shape[1]
    return kclass(y, X, Z, W, 1.0 + k / (n - k - l))


def ujive(y, X, Z, W):
    """Kolesar (2013) UJIVE on full matrices.

    Xdot = (I - D_ZW)^{-1}(P_ZW - D_ZW) X - (I - D_W)^{-1}(P_W - D_W) X,
    beta = (Xdot'X)^{-1} Xdot'y; SEs: conventional (u'u/n) G^{-1} Xdot'Xdot G^{-1},
    HC0 G^{-1} sum u^2 Xdot Xdot' G^{-1}, with u the site-demeaned residual.
    """
    n, P = X.shape
    PZ = projection(np.column_stack([Z, W]))
    PW = projection(W)
    DZ = np.diag(np.diag(PZ))
    DW = np.diag(np.diag(PW))
    I = np.eye(n)
    Xdot = np.linalg.solve(I - DZ, (PZ - DZ) @ X) - np.linalg.solve(I - DW, (PW - DW) @ X)
    G = Xdot.T @ X
    beta = np.linalg.solve(G, Xdot.T @ y)
    u = (I - PW) @ (y - X @ beta)
    Gi = np.linalg.inv(G)
    conv = (u @ u / n) * Gi @ (Xdot.T @ Xdot) @ Gi.T
    meat = (Xdot * u[:, None] ** 2).T @ Xdot
    rob = Gi @ meat @ Gi.T
    return dict(beta=beta, se_conventional=np.sqrt(np.diag(conv)), se_hc0=np.sqrt(np.diag(rob)))


def bekker_se(y, X, Z, W, beta, kappa):
    """Hansen, Hausman & Newey (2008) form of Bekker SEs, after partialling out W."""
    n, P = X.shape
    K = W.shape[1]
    MW = np.eye(n) - projection(W)
    Xp, yp = MW @ X, MW @ y
    Pm = projection(MW @ Z)
    u = yp - Xp @ beta
    alpha = (kappa - 1) / kappa
    sigma2 = u @ u / (n - K - P)
    Xt = Xp - np.outer(u, u @ Xp) / (u @ u)
    H = Xp.T @ Pm @ Xp - alpha * Xp.T @ Xp
    Sig = sigma2 * ((1 - alpha) ** 2 * Xt.T @ Pm @ Xt + alpha**2 * Xt.T @ (MW - Pm) @ Xt)
    Hi = np.linalg.inv(H)
    return np.sqrt(np.diag(Hi @ Sig @ Hi))


def kcfgi_se(y, X, Z, W, beta):
    """KCFGI (2015) / Kolesar (2018) Gaussian many-invalid-instrument SE of MBTSLS."""
    n, P = X.shape
    k, l = Z.shape[1], W.shape[1]
    Y = np.column_stack([y, X])
    MW = np.eye(n) - projection(W)
    Yp = MW @ Y
    T = Yp.T @ projection(MW @ Z) @ Yp / n
    S = Y.T @ (np.eye(n) - projection(np.column_stack([Z, W]))) @ Y / (n - k - l)
    Xi = T - k / n * S
    tau = (k / n) * (n - l) / (n - k - l)
    b = np.concatenate([[1.0], -beta])
    # Var(sqrt(n) Xi b) from Var(vec Xi) = 2 N (Xi (x) S + S (x) Xi + tau S (x) S)
    Q = P + 1
    Nm = 0.5 * (np.eye(Q * Q) + commutation(Q))
    D = 2 * Nm @ (np.kron(Xi, S) + np.kron(S, Xi) + tau * np.kron(S, S))
    Jb = np.kron(b[None, :], np.eye(Q))  # vec(Xi b) = (b' (x) I) vec(Xi)
    G = Jb @ D @ Jb.T
    Xinv = np.linalg.inv(Xi[1:, 1:])
    V = Xinv @ G[1:, 1:] @ Xinv / n
    return np.sqrt(np.diag(V))


def commutation(m):
    """K_{mm}: vec(A') = K vec(A)."""
    Kc = np.zeros((m * m, m * m))
    for i in range(m):
        for j in range(m):
            Kc[i * m + j, j * m + i] = 1.0
    return Kc


def site_contrasts(site, arm, X, y, n_sites, n_arms):
    """Per-site contrasts of cell means against arm 0, rows (s, t), t = 1..L."""
    rows_y, rows_x, tval, srow = [], [], [], []
    for s in range(n_sites):
        m0 = (site == s) & (arm == 0)
        for t in range(1, n_arms):
            m = (site == s) & (arm == t)
            rows_y.append(y[m].mean() - y[m0].mean())
            rows_x.append(X[m].mean(0) - X[m0].mean(0))
            tval.append(t)
            srow.append(s)
    return np.array(rows_y), np.array(rows_x), np.array(tval, float), np.array(srow)


def gls(yv, G, Wfull, site_of_row):
    """beta = (G'WG)^{-1}G'Wy, conventional s^2 (G'WG)^{-1}, site-robust sandwich."""
    N, p = G.shape
    A = np.linalg.inv(G.T @ Wfull @ G)
    beta = A @ G.T @ Wfull @ yv
    r = yv - G @ beta
    s2 = r @ Wfull @ r / (N - p)
    meat = np.zeros((p, p))
    for s in np.unique(site_of_row):
        m = site_of_row == s
        sc = G[m].T @ Wfull[np.ix_(m, m)] @ r[m]
        meat += np.outer(sc, sc)
    return beta, np.sqrt(np.diag(s2 * A)), np.sqrt(np.diag(A @ meat @ A))


def between_site(site, arm, X, y, n_sites, n_arms, weights="none"):
    """Between-site regression of site ITT contrasts on site compliance contrasts.

    weights: "none" (OLS through the origin), "tsls" (n_s (diag p - p p')),
    "precision" (inverse of diag(s2_t/n_t) + s2_0/n_0 11'), "intercept" (OLS with the
    arm value as an extra regressor, returned first).
    """
    yv, G, tval, srow = site_contrasts(site, arm, X, y, n_sites, n_arms)
    L = n_arms - 1
    N = yv.shape[0]
    Wfull = np.eye(N)
    if weights == "tsls":
        for s in range(n_sites):
            ns = (site == s).sum()
            p = np.array([((site == s) & (arm == t)).sum() / ns for t in range(1, n_arms)])
            Wfull[s * L : (s + 1) * L, s * L : (s + 1) * L] = ns * (np.diag(p) - np.outer(p, p))
    elif weights == "precision":
        for s in range(n_sites):
            v = [y[(site == s) & (arm == t)].var(ddof=1) / ((site == s) & (arm == t)).sum()
                 for t in range(n_arms)]
            V = np.diag(v[1:]) + v[0]
            Wfull[s * L : (s + 1) * L, s * L : (s + 1) * L] = np.linalg.inv(V)
    elif weights == "intercept":
        G = np.column_stack([tval, G])
    return gls(yv, G, Wfull, srow)


def wald(y, x, arm, W):
    """Pooled Wald: just-identified IV of y on x with instrument T and site dummies."""
    n = y.shape[0]
    MW = np.eye(n) - projection(W)
    z = MW @ arm.astype(float)
    xp = MW @ x
    beta = (z @ y) / (z @ x)
    u = MW @ y - xp * beta
    conv = np.sqrt((u @ u / n) * (z @ z)) / abs(z @ x)
    hc0 = np.sqrt(np.sum(u**2 * z**2)) / abs(z @ x)
    return beta, conv, hc0
