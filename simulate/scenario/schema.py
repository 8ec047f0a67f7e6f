"""The schema of a scenario file: every key it may hold, with its type, default and range.

:data:`SCHEMA` mirrors the TOML tables (``[treatment]``, ``[mediators]``, ``[site]``,
``[person]``, ``[binary]``, ``[[paths]]``, ``[[interactions]]``, ``[selection]``, ``[spillover]``, ``[grid]``);
a :class:`Field` is one scalar (or per-mediator, or per-site) entry.  The limits
(:data:`MAX_PERSONS`, :data:`MAX_GRID_CELLS`, ...) and the names of the components
of the correlation matrices live here too, since validation, the model and the grid
all read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SimulateError
from ..layout import Layout

__all__ = ["ScenarioError", "Field", "SCHEMA", "MAX_MAGNITUDE", "MAX_PERSONS", "MAX_GRID_CELLS", "MAX_DEPTH",
           "MAX_DESCRIPTION", "MAX_NAME"]


class ScenarioError(SimulateError):
    """An invalid scenario.  ``str(error)`` is one line: ``file: field: constraint``."""

    def __init__(self, message: str):
        # one line whatever a key, a path or a file name holds: control characters are escaped
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message)))


@dataclass(frozen=True)
class Field:
    """One scalar (or per-mediator) entry of the schema."""

    kind: str  # "int", "float", "str", "choice", "bool"
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    per_mediator: bool = False  # scalar, or a list with one value per mediator
    per_site: bool = False  # scalar, or a list with one value per site
    doc: str = ""


MAX_MAGNITUDE = 1e6
"""The largest size of any real-valued parameter (means, SDs, curvatures, shifts, spillovers)."""
MAX_PERSONS = 50_000_000
"""The most persons one replication may hold (n_sites x n_per_site)."""
MAX_GRID_CELLS = 10_000
"""The most cells a [grid] may expand to."""
MAX_DEPTH = 6
"""The deepest nesting of tables and lists a scenario file may hold."""
MAX_DESCRIPTION = 10_000
MAX_NAME = 1_000


def _f(default=0.0, low=None, high=None, *, lo_open=False, hi_open=False, pm=False, ps=False, doc=""):
    if low is None or high is None:  # a sane range for every real-valued parameter (no overflow downstream)
        low = -MAX_MAGNITUDE if low is None else low
        high = MAX_MAGNITUDE if high is None else high
        doc = f"{doc}; at most 1e6 in size" if doc else "at most 1e6 in size"
    return Field("float", default, low, high, lo_open, hi_open, per_mediator=pm, per_site=ps, doc=doc)


_CORR = dict(low=-1.0, high=1.0)

SCHEMA: dict[str, Any] = {
    "name": Field("str", "scenario", high=MAX_NAME, doc="a short name (at most 1,000 characters)"),
    "description": Field("str", "", high=MAX_DESCRIPTION, doc="what the scenario shows (at most 10,000 characters)"),
    "n_sites": Field("int", 50, low=1, high=1_000_000, doc="K, the number of sites"),
    "n_per_site": "n_per_site",  # special: int, list of ints, or {min, max}
    "treatment": {
        "arms": Field("int", 2, low=2, high=20, doc="number of arms including control (L + 1)"),
        "share": _f(0.5, 0.0, 1.0, lo_open=True, hi_open=True, ps=True,
                    doc="share treated per site (binary treatment); scalar or one per site"),
        "arm_shares": "arm_shares",  # special: list of `arms` shares summing to one
        "assignment": Field("choice", "complete", choices=("complete", "bernoulli"),
                            doc="complete: an exact share per site; bernoulli: independent draws"),
    },
    "mediators": {
        "count": Field("int", None, low=1, high=20, doc="P, the number of mediators"),
        "names": "names",  # special: list of P strings
        "kind": Field("choice", "continuous", choices=("continuous", "binary"), per_mediator=True),
        "curvature": _f(0.0, pm=True, doc="c_p in g_p(t) = t + c_p t (t - 1) (assumption iii)"),
        "outcome_curvature": _f(0.0, pm=True, doc="phi_p in h_p(m) = m + phi_p m^2 (assumption iv)"),
        # dose curves that vary (assumption iii): c_pi = c_p + site part + person part, continuous mediators
        "curvature_site_sd": _f(0.0, 0.0, pm=True, doc="SD of the site curvature c_ps between sites (assumption "
                                                       "iii; 3+ arms, continuous mediators)"),
        "curvature_person_sd": _f(0.0, 0.0, pm=True, doc="SD of the person curvature c_pi within site (assumption "
                                                         "iii; 3+ arms, continuous mediators)"),
        "curvature_site_effect_correlation": _f(0.0, **_CORR, pm=True,
                                                doc="corr(c_ps, delta_ps) between sites (assumption iii)"),
        "curvature_effect_correlation": _f(0.0, **_CORR, pm=True,
                                           doc="corr(c_pi, Delta_pi) within site (assumption iii)"),
    },
    "site": {
        "compliance_mean": _f(1.0, pm=True, doc="E[gamma_p], mean site compliance"),
        "compliance_sd": _f(0.3, 0.0, pm=True, doc="SD of gamma_p between sites"),
        "effect_mean": _f(0.5, pm=True, doc="E[delta_p], mean site effect of M_p on Y"),
        "effect_sd": _f(0.0, 0.0, pm=True, doc="SD of delta_p between sites"),
        "direct_effect_mean": _f(0.0, doc="E[kappa], mean direct effect of T on Y (assumption ii)"),
        "direct_effect_sd": _f(0.0, 0.0, doc="SD of kappa between sites (assumption ii)"),
        "compliance_effect_correlation": _f(0.0, **_CORR, pm=True,
                                            doc="corr(gamma_p, delta_p) between sites (assumption ix)"),
        "compliance_correlation": _f(0.0, **_CORR, doc="corr(gamma_p, gamma_q), p != q (assumption viii)"),
        "direct_effect_compliance_correlation": _f(0.0, **_CORR, pm=True, doc="corr(kappa, gamma_p)"),
        "nonlinear_dependence": _f(0.0, pm=True,
                                   doc="lambda_p: delta_p += lambda_p sd(delta_p) (z_p^2 - 1) / sqrt(2), "
                                       "z_p standardized gamma_p (assumption ix, zero correlation)"),
        "heavy_tails": _f(0.0, 0.0, 0.25, hi_open=True,
                          doc="1/nu: the site vector (with the path coefficients) is multivariate t with nu "
                              "degrees of freedom, scaled to the same covariance (0: normal)"),
        "skew": _f(0.0, 0.0, 1.0, hi_open=True,
                   doc="b: each independent normal z of the site vector becomes sqrt(1 - b^2) z + b (z^2 - 1) "
                       "/ sqrt 2 (mean 0, variance 1, skewed; 0: normal)"),
        "mediator_baseline_sd": _f(0.0, 0.0, pm=True, doc="SD of site means of M_p(0)"),
        "outcome_baseline_sd": _f(0.0, 0.0, doc="SD of site means of Y(0)"),
        "correlations": "site_pairs",
        # [site.cross_dependence]: "effect_p:compliance_q:compliance_r" = lambda adds
        # lambda sd(delta_p) (z_q z_r - r_qr) / sqrt(1 + r_qr^2) to delta_p (assumption ix across mediators)
        "cross_dependence": "site_terms",
    },
    "person": {
        "mediator_mean": _f(0.0, pm=True, doc="E[M_p(0)] (continuous mediators)"),
        "mediator_sd": _f(1.0, 0.0, pm=True, doc="SD of M_p(0) within site (continuous mediators)"),
        "outcome_mean": _f(0.0, doc="E[Y(0)]"),
        "outcome_sd": _f(1.0, 0.0, doc="SD of Y(0) within site"),
        "compliance_sd": _f(0.0, 0.0, pm=True, doc="SD of Gamma_p within site (continuous mediators)"),
        "effect_sd": _f(0.0, 0.0, pm=True, doc="SD of Delta_p within site"),
        "within_site_correlation": _f(0.0, **_CORR, pm=True,
                                      doc="corr(Gamma_p, Delta_p) within site (assumption vii.a)"),
        "confounding": _f(0.0, **_CORR, pm=True, doc="corr(M_p(0), Y(0)) within site"),
        "correlations": "person_pairs",
    },
    "binary": {
        "complier_share": _f(0.6, 0.0, 1.0, lo_open=True, pm=True, doc="mean share of compliers"),
        "always_share": _f(0.2, 0.0, 1.0, pm=True, doc="share of always-takers"),
        "never_share": _f(0.2, 0.0, 1.0, pm=True, doc="share of never-takers"),
        "defier_share": _f(0.0, 0.0, 1.0, pm=True, doc="share of defiers (assumption vii.b)"),
        "complier_share_site_sd": _f(0.0, 0.0, pm=True,
                                     doc="between-site SD of the complier share on the probit scale"),
        "always_effect_shift": _f(0.0, pm=True, doc="Delta_p of always-takers minus that of compliers"),
        "never_effect_shift": _f(0.0, pm=True, doc="Delta_p of never-takers minus that of compliers"),
        "defier_effect_shift": _f(0.0, pm=True, doc="Delta_p of defiers minus that of compliers"),
    },
    "paths": [  # array of tables: non-parallel mediators (assumption v)
        {
            "from": Field("int", None, low=1, doc="the earlier mediator p (1-based)"),
            "to": Field("int", None, low=1, doc="the later mediator q (1-based)"),
            "mean": _f(0.0, doc="mean path coefficient"),
            "site_sd": _f(0.0, 0.0, doc="SD of the path coefficient between sites"),
            "person_sd": _f(0.0, 0.0, doc="SD of the path coefficient within site"),
            "effect_correlation": _f(0.0, **_CORR, doc="corr(path coefficient, Delta_q) within site"),
        }
    ],
    "selection": {
        "strength": _f(0.0, -10.0, 10.0, doc="xi: probit index of selection into treatment (assumption vi)"),
        "on": Field("choice", "outcome", choices=("outcome", "compliance")),
        "mediator": Field("int", 1, low=1, doc="which mediator's compliance (with on = 'compliance')"),
    },
    "spillover": {
        "outcome": _f(0.0, doc="shift of controls' Y per unit share treated in their site (assumption i)"),
        "mediator": _f(0.0, pm=True, doc="shift of controls' M_p per unit share treated (assumption i)"),
        "treated_outcome": _f(0.0, doc="shift of the treated's Y per unit share treated in their site (assumption i)"),
        "treated_mediator": _f(0.0, pm=True, doc="shift of the treated's M_p per unit share treated (assumption i)"),
    },
    "interactions": [  # array of tables: mediator interactions in Y (assumption iv)
        {
            "first": Field("int", None, low=1, doc="the first mediator p (1-based)"),
            "second": Field("int", None, low=1, doc="the second mediator q (1-based, q > p)"),
            "coefficient": _f(0.0, doc="theta_pq: Y += theta_pq M_p M_q"),
        }
    ],
    "grid": "grid",
}

_TABLE_DOC = {
    "treatment": "treatment arms and assignment",
    "mediators": "the P mediators",
    "site": "between-site distribution of compliance, effects and direct effects",
    "person": "within-site distribution",
    "binary": "compliance types of binary mediators",
    "selection": "selection into treatment",
    "spillover": "spillovers onto controls (and the treated)",
}


def _component_names(level: str, P: int) -> list[str]:
    """The names of the site or person components, in vector order: the Layout's (one place)."""
    return list(Layout(P).names(level))
