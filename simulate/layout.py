"""Where each variable sits: the one owner of the site and person vector indices.

Two standard normal vectors carry every correlated component of the model (SPEC.md,
:mod:`simulate.dgp`):

- the site vector, ``compliance_1..P, effect_1..P, direct_effect`` (length 2P + 1),
  correlated by ``site.correlations``;
- the person vector, ``compliance_1..P, effect_1..P, mediator_1..P, outcome``
  (length 3P + 1), correlated by ``person.correlations``.

The scenario's correlation matrices, the generator's kernels, the truth and the stress
test all index these vectors; they read the index from a :class:`Layout` instead of
computing ``P + p`` or ``3 * P`` themselves.  The names agree with the component names
of the scenario file (``"compliance_1:effect_1" = 0.3``).

Beyond the two correlated vectors, the layout also fixes the order of a site's
uncorrelated draws in the generator (the 2P + 1 site normals, then one baseline normal
per mediator, then the outcome's baseline: canonical draw order step 1) and, for the
truth's Gaussian moments, the person vector extended by one independent normal per
mediator-to-mediator path.

The site vector is extended, in the same way, by one component per path: its site-level
coefficient beta_rs, named ``path_<from>_<to>`` (1-based mediators, e.g. ``path_1_2``), so
that ``[site.correlations]`` can correlate a site's path coefficient with its compliances,
effects or direct effect (``"path_1_2:effect_2" = 0.5``).  The extended site vector is
``compliance_1..P, effect_1..P, direct_effect, path_1..R`` (length 2P + 1 + R, paths in the
scenario's order: by target, then source); the generator draws the first 2P + 1 from the
site stream and the R path normals from the path stream, so a scenario without path
correlations draws exactly what it drew before.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Layout", "SITE_COMPONENTS", "PERSON_COMPONENTS", "path_name"]

SITE_COMPONENTS = ("compliance", "effect")
"""The per-mediator blocks of the site vector, in order (``direct_effect`` follows them)."""
PERSON_COMPONENTS = ("compliance", "effect", "mediator")
"""The per-mediator blocks of the person vector, in order (``outcome`` follows them)."""


def path_name(source: int, target: int) -> str:
    """The site component name of the path from mediator ``source`` to ``target`` (0-based): ``path_1_2``.

    Parameters
    ----------
    source, target : int
        The path's mediators, 0-based.

    Returns
    -------
    str
    """
    return f"path_{source + 1}_{target + 1}"


@dataclass(frozen=True)
class Layout:
    """The index of every component in the site and person vectors of a scenario.

    Parameters
    ----------
    n_mediators : int
        P, the number of mediators.
    n_paths : int
        R, the number of mediator-to-mediator paths (only the extended site vector, the
        truth's extended person vector and the truth's site draws depend on it).
    path_ends : tuple of (int, int), optional
        The paths' (source, target) mediators, 0-based, in the scenario's order (they name
        the path components); default: R unnamed paths ``path_r<r>``.
    curved : bool, optional
        Whether some mediator's dose curve varies by site or person (assumption iii): then the
        truth's extended person vector has P more normals (one person curvature normal per
        mediator, after the path normals) and its simulated sites P more normals (one site
        curvature normal per mediator, after the baselines).  Default False: nothing changes.

    Examples
    --------
    >>> L = Layout(2)
    >>> L.site_effect(1), L.site_direct, L.person_mediator(0), L.person_outcome
    (3, 4, 4, 6)
    >>> L.person_names[L.person_outcome]
    'outcome'
    """

    n_mediators: int
    n_paths: int = 0
    path_ends: tuple = ()
    curved: bool = False

    def __post_init__(self):
        if self.n_mediators < 1 or self.n_paths < 0:
            raise ValueError(f"a layout needs P >= 1 and R >= 0, got P = {self.n_mediators}, R = {self.n_paths}")
        if self.path_ends and len(self.path_ends) != self.n_paths:
            raise ValueError(f"path_ends names {len(self.path_ends)} paths, the layout has R = {self.n_paths}")

    @classmethod
    def of(cls, sc) -> Layout:
        """The layout of a scenario (its number of mediators and of paths).

        Parameters
        ----------
        sc : Scenario

        Returns
        -------
        Layout
        """
        curved = any(getattr(sc, "curvature_varies", ()))
        return cls(sc.n_mediators, len(sc.paths), tuple((r.source, r.target) for r in sc.paths), curved)

    @property
    def P(self) -> int:
        """The number of mediators."""
        return self.n_mediators

    # -- the site vector: compliance_1..P, effect_1..P, direct_effect --------------
    def site_compliance(self, p: int) -> int:
        """Index of mediator p's site compliance gamma_ps (0-based p)."""
        return p

    def site_effect(self, p: int) -> int:
        """Index of mediator p's site effect delta_ps."""
        return self.n_mediators + p

    @property
    def site_direct(self) -> int:
        """Index of the site's direct effect kappa_s."""
        return 2 * self.n_mediators

    @property
    def site_size(self) -> int:
        """Length of the site vector, 2P + 1."""
        return 2 * self.n_mediators + 1

    @property
    def site_compliances(self) -> slice:
        """The slice of the P site compliances."""
        return slice(0, self.n_mediators)

    @property
    def site_effects(self) -> slice:
        """The slice of the P site effects."""
        return slice(self.n_mediators, 2 * self.n_mediators)

    # -- the extended site vector: ..., direct_effect, path_1..R ------------------------
    def site_path(self, r: int) -> int:
        """Index of path r's site coefficient beta_rs in the extended site vector (after direct_effect)."""
        return self.site_size + r

    @property
    def site_paths(self) -> slice:
        """The slice of the R path coefficients in the extended site vector."""
        return slice(self.site_size, self.site_size + self.n_paths)

    @property
    def site_extended_size(self) -> int:
        """Length of the site vector extended by the path coefficients, 2P + 1 + R."""
        return self.site_size + self.n_paths

    @property
    def path_names(self) -> tuple[str, ...]:
        """The path components' names, in the scenario's order (``path_1_2``)."""
        if self.path_ends:
            return tuple(path_name(a, b) for a, b in self.path_ends)
        return tuple(f"path_r{r + 1}" for r in range(self.n_paths))

    @property
    def site_extended_names(self) -> tuple[str, ...]:
        """The extended site vector's names: the site components, then the paths."""
        return self.site_names + self.path_names

    # -- the person vector: compliance_1..P, effect_1..P, mediator_1..P, outcome -----
    def person_compliance(self, p: int) -> int:
        """Index of mediator p's person compliance error u^Gamma_p."""
        return p

    def person_effect(self, p: int) -> int:
        """Index of mediator p's person effect error u^Delta_p."""
        return self.n_mediators + p

    def person_mediator(self, p: int) -> int:
        """Index of mediator p's untreated-mediator error u^M_p."""
        return 2 * self.n_mediators + p

    @property
    def person_outcome(self) -> int:
        """Index of the untreated outcome's error u^Y."""
        return 3 * self.n_mediators

    @property
    def person_size(self) -> int:
        """Length of the person vector, 3P + 1."""
        return 3 * self.n_mediators + 1

    # -- a site's draws in the generator: site normals, baselines --------------------
    def site_baseline_mediator(self, p: int) -> int:
        """Place of mediator p's baseline normal among a site's generator draws."""
        return self.site_size + p

    @property
    def site_baseline_outcome(self) -> int:
        """Place of the outcome's baseline normal among a site's generator draws."""
        return self.site_size + self.n_mediators

    @property
    def site_draws(self) -> int:
        """Normals the generator draws per site: the site vector, then P + 1 baselines."""
        return self.site_size + self.n_mediators + 1

    # -- the truth: extended person vector and simulated site draws -----------------
    def path_normal(self, r: int) -> int:
        """Index of path r's independent person normal in the extended person vector."""
        return self.person_size + r

    @property
    def n_curvature_normals(self) -> int:
        """P when the dose curves vary (``curved``), else 0: the curvature normals of the truth."""
        return self.n_mediators if self.curved else 0

    def curvature_normal(self, p: int) -> int:
        """Index of mediator p's person curvature normal in the extended person vector (after the paths)."""
        if not self.curved:
            raise IndexError("the layout has no curvature normals (curved = False)")
        return self.person_size + self.n_paths + p

    @property
    def curvature_part(self) -> slice:
        """The person curvature normals' slice of the extended vector (empty unless ``curved``)."""
        start = self.person_size + self.n_paths
        return slice(start, start + self.n_curvature_normals)

    @property
    def extended_size(self) -> int:
        """Length of the person vector extended by one normal per path (and per mediator if curved), 3P + 1 + R."""
        return self.person_size + self.n_paths + self.n_curvature_normals

    @property
    def person_part(self) -> slice:
        """The person vector's slice of the extended vector."""
        return slice(0, self.person_size)

    @property
    def path_part(self) -> slice:
        """The path normals' slice of the extended vector."""
        return slice(self.person_size, self.person_size + self.n_paths)

    @property
    def truth_site_columns(self) -> tuple[slice, slice, slice]:
        """Columns of the truth's simulated site draws: (site vector, path coefficients, mediator baselines).

        The truth's own site simulation (:func:`simulate.truth.limits.simulate_sites`)
        draws 2P + 1 + R + P normals per site in this order; it is not the generator's
        stream order (which draws the path coefficients from a stream of their own).
        """
        a = self.site_size
        b = a + self.n_paths
        return slice(0, a), slice(a, b), slice(b, b + self.n_mediators)

    @property
    def truth_curvature_columns(self) -> slice:
        """Columns of the truth's site curvature normals, after the baselines (empty unless ``curved``)."""
        start = self.site_size + self.n_paths + self.n_mediators
        return slice(start, start + self.n_curvature_normals)

    @property
    def truth_site_draws(self) -> int:
        """Normals the truth draws per simulated site, 2P + 1 + R + P (+ P site curvature normals if curved)."""
        return self.site_size + self.n_paths + self.n_mediators + self.n_curvature_normals

    # -- names ------------------------------------------------------------------------
    @property
    def site_names(self) -> tuple[str, ...]:
        """The site components' names, in vector order (as in the scenario file)."""
        P = self.n_mediators
        return tuple(f"{n}_{p + 1}" for n in SITE_COMPONENTS for p in range(P)) + ("direct_effect",)

    @property
    def person_names(self) -> tuple[str, ...]:
        """The person components' names, in vector order (as in the scenario file)."""
        P = self.n_mediators
        return tuple(f"{n}_{p + 1}" for n in PERSON_COMPONENTS for p in range(P)) + ("outcome",)

    def names(self, level: str) -> tuple[str, ...]:
        """The component names of one level.

        Parameters
        ----------
        level : {"site", "person"}

        Returns
        -------
        tuple of str
        """
        if level == "site":
            return self.site_names
        if level == "person":
            return self.person_names
        raise ValueError(f"level is 'site' or 'person', got {level!r}")

    def index(self, level: str, name: str) -> int:
        """The index of a named component (``"effect_2"``, ``"outcome"``) at one level.

        Parameters
        ----------
        level : {"site", "person"}
        name : str

        Returns
        -------
        int
        """
        names = self.names(level)
        try:
            return names.index(name)
        except ValueError:
            raise KeyError(f"no {level} component {name!r}; components are {', '.join(names)}") from None

    def component(self, level: str, i: int) -> tuple[str, int | None]:
        """The (block, mediator) of index i: ``("effect", 1)``, or ``("outcome", None)``.

        Parameters
        ----------
        level : {"site", "person"}
        i : int

        Returns
        -------
        (str, int or None)
            The block's name and the 0-based mediator, None for the last component.
        """
        blocks = SITE_COMPONENTS if level == "site" else PERSON_COMPONENTS
        last = "direct_effect" if level == "site" else "outcome"
        size = self.site_size if level == "site" else self.person_size
        if not 0 <= i < size:
            raise IndexError(f"{level} index {i} outside 0..{size - 1}")
        if i == size - 1:
            return last, None
        return blocks[i // self.n_mediators], i % self.n_mediators
