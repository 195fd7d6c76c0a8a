"""A power law across arms: how the phase-change time scales with a design variable, censoring included.

Why this file exists: pairwise comparisons say whether one arm is sooner than another; a formation law
(Aoyama et al. 2025: the number of training tokens N at which induction heads form grows as
N = T · (B·C)^α with α ≈ 0.5, B sequences per batch, C tokens per sequence) is a regression across many
arms.  Runs that never crossed cannot be dropped (the slowest cells would look faster) nor set to their
budget (that biases the slope), so the fit is a log-normal accelerated-failure-time regression by maximum
likelihood: log N = a + α·log x + (group terms) + σ·ε, ε standard normal; a run censored at c contributes
P(log N > log c).

- :func:`fit_law`: the fit, with Wald intervals from the observed information and, optionally, a
  percentile bootstrap over runs stratified by cell.
- Groups (e.g. runs under a clamp): indicator and interaction terms, so the fit says whether a group
  changes the exponent (``d_exponent``), the constant at the grid's centre (``d_log_constant``), or both.

Pure numpy/scipy; tested on synthetic phase times whose exponent is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, stats

from clamp.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Term:
    """One coefficient of the fit: its estimate and interval (``level`` confidence)."""

    name: str
    estimate: float
    low: float
    high: float
    se: float
    p: float  # two-sided Wald p against 0 (for the exponent: against ``null``)
    null: float = 0.0


@dataclass(frozen=True, kw_only=True)
class LawFit:
    """A fitted law ``log N = log_constant + exponent · (log x − centre) [+ group terms]``.

    ``terms`` holds, in order: ``log_constant`` (at the centre, natural log), ``exponent``, then per group
    ``d_log_constant:<group>`` and ``d_exponent:<group>``; ``sigma`` is the residual sd of log N.
    """

    terms: tuple[Term, ...]
    sigma: float
    centre: float  # the log x the constant is quoted at (the mean over runs)
    n: int
    n_censored: int
    level: float
    method: str
    groups: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def term(self, name: str) -> Term:
        for t in self.terms:
            if t.name == name:
                return t
        raise KeyError(name)

    def predict(self, x: ArrayLike, group: str | None = None) -> NDArray[np.float64]:
        """The fitted median N at ``x`` (for ``group``, or the reference group)."""
        lx = np.log(np.asarray(x, dtype=float)) - self.centre
        a, b = self.term("log_constant").estimate, self.term("exponent").estimate
        if group is not None and group in self.groups:
            a += self.term(f"d_log_constant:{group}").estimate
            b += self.term(f"d_exponent:{group}").estimate
        return np.exp(a + b * lx)


def _design(lx: NDArray[np.float64], group_of: Sequence[str | None], groups: Sequence[str]) -> NDArray[np.float64]:
    cols = [np.ones_like(lx), lx]
    for g in groups:
        z = np.array([1.0 if q == g else 0.0 for q in group_of])
        cols += [z, z * lx]
    return np.stack(cols, axis=1)


def _negloglik(theta: NDArray[np.float64], X: NDArray[np.float64], y: NDArray[np.float64],
               event: NDArray[np.bool_]) -> float:
    beta, log_sigma = theta[:-1], theta[-1]
    sigma = math.exp(log_sigma)
    z = (y - X @ beta) / sigma
    ll = np.where(event, stats.norm.logpdf(z) - log_sigma, stats.norm.logsf(z))
    return -float(np.sum(ll))


def _hessian(f, x: NDArray[np.float64], h: float = 1e-4) -> NDArray[np.float64]:
    """Central-difference Hessian of a scalar function."""
    n = x.size
    H = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            e_i, e_j = np.eye(n)[i] * h, np.eye(n)[j] * h
            v = (f(x + e_i + e_j) - f(x + e_i - e_j) - f(x - e_i + e_j) + f(x - e_i - e_j)) / (4 * h * h)
            H[i, j] = H[j, i] = v
    return H


def _mle(X: NDArray[np.float64], y: NDArray[np.float64], event: NDArray[np.bool_]) -> NDArray[np.float64]:
    start_beta = np.linalg.lstsq(X, y, rcond=None)[0]
    resid = y - X @ start_beta
    theta0 = np.append(start_beta, math.log(max(float(np.std(resid)), 1e-3)))
    res = optimize.minimize(_negloglik, theta0, args=(X, y, event), method="Nelder-Mead",
                            options={"maxiter": 40_000, "xatol": 1e-9, "fatol": 1e-12})
    res = optimize.minimize(_negloglik, res.x, args=(X, y, event), method="BFGS")
    return np.asarray(res.x, dtype=float)


def fit_law(times: ArrayLike, events: ArrayLike, x: ArrayLike, *, groups: Sequence[str | None] | None = None,
            cells: Sequence[object] | None = None, level: float = 0.95, exponent_null: float = 0.5,
            n_boot: int = 0, seed: int = 0) -> LawFit:
    """Fit ``N = T · x^α`` (log-normal, right-censored) across runs; optionally group terms.

    Args:
        times: each run's phase time in the law's unit (e.g. tokens), or its censoring time.
        events: True when the run crossed at ``times``, False when censored there.
        x: the design variable per run (e.g. B·C).
        groups: per run, a group label (None or "" for the reference group), e.g. ``"prev_clamp"``.
        cells: per run, its cell (for the bootstrap, resampled within cells); default: by ``x`` and group.
        level: interval level.
        exponent_null: the exponent the ``exponent`` term's p is tested against (Aoyama et al.: 0.5).
        n_boot: bootstrap resamples for percentile intervals (0: Wald intervals from the observed information).
        seed: seeds the bootstrap.

    Returns:
        A :class:`LawFit`.

    Raises:
        ConfigError: fewer than two distinct x values with a crossing, or non-positive times or x.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = np.repeat([256, 1024, 4096], 4)
        >>> t = 100 * x ** 0.5 * np.exp(rng.normal(0, 0.1, x.size))
        >>> f = fit_law(t, [True] * x.size, x)
        >>> round(f.term("exponent").estimate, 2), f.term("exponent").low < 0.5 < f.term("exponent").high
        (0.47, True)
    """
    t = np.asarray(times, dtype=float).ravel()
    e = np.asarray(events, dtype=bool).ravel()
    xv = np.asarray(x, dtype=float).ravel()
    if not (t.size == e.size == xv.size) or t.size == 0:
        raise ConfigError("fit_law needs one time, event flag and x per run.")
    if np.any(t <= 0) or np.any(xv <= 0):
        raise ConfigError("fit_law: times and x must be positive (a power law is fitted on log scales).")
    group_of = [g or None for g in (groups if groups is not None else [None] * t.size)]
    names = tuple(sorted({g for g in group_of if g}))
    crossed_x = {v for v, ev in zip(xv, e) if ev}
    if len(crossed_x) < 2:
        raise ConfigError(f"fit_law: runs crossed at {len(crossed_x)} distinct value(s) of x; a slope needs two.")
    lx_raw = np.log(xv)
    centre = float(np.mean(lx_raw))
    lx = lx_raw - centre
    y = np.log(t)
    X = _design(lx, group_of, names)
    theta = _mle(X, y, e)
    labels = ["log_constant", "exponent"] + [f"{kind}:{g}" for g in names for kind in ("d_log_constant", "d_exponent")]
    z = stats.norm.ppf(0.5 + level / 2)
    notes: list[str] = []
    if n_boot:
        keys = list(cells) if cells is not None else list(zip(xv.tolist(), group_of))
        by_cell: dict[object, list[int]] = {}
        for i, k in enumerate(keys):
            by_cell.setdefault(k if not isinstance(k, list) else tuple(k), []).append(i)
        rng = np.random.default_rng(seed)
        draws = []
        for _ in range(n_boot):
            idx = np.concatenate([rng.choice(ix, size=len(ix), replace=True) for ix in by_cell.values()])
            if len({v for v, ev in zip(xv[idx], e[idx]) if ev}) < 2:
                continue
            draws.append(_mle(X[idx], y[idx], e[idx])[:-1])
        boot = np.array(draws)
        lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2], axis=0)
        se = boot.std(axis=0, ddof=1)
        method = f"log-normal AFT maximum likelihood; percentile bootstrap over runs within cells ({len(draws)} resamples)"
        if len(draws) < n_boot:
            notes.append(f"{n_boot - len(draws)} bootstrap resamples had crossings at fewer than two x values and "
                         "were skipped")
    else:
        H = _hessian(lambda th: _negloglik(th, X, y, e), theta)
        try:
            cov = np.linalg.inv(H)
        except np.linalg.LinAlgError:
            cov = np.full(H.shape, np.nan)
            notes.append("the information matrix is singular: no Wald intervals")
        se = np.sqrt(np.clip(np.diag(cov)[:-1], 0, None))
        lo, hi = theta[:-1] - z * se, theta[:-1] + z * se
        method = "log-normal AFT maximum likelihood; Wald intervals from the observed information"
    terms = []
    for k, name in enumerate(labels):
        null = exponent_null if name == "exponent" else 0.0
        p = float(2 * stats.norm.sf(abs(theta[k] - null) / se[k])) if se[k] > 0 else math.nan
        terms.append(Term(name=name, estimate=float(theta[k]), low=float(lo[k]), high=float(hi[k]), se=float(se[k]),
                          p=p, null=null))
    n_cens = int((~e).sum())
    if n_cens:
        notes.append(f"{n_cens} censored run(s) enter the likelihood as 'later than their censoring time'")
    return LawFit(terms=tuple(terms), sigma=float(math.exp(theta[-1])), centre=centre, n=int(t.size),
                  n_censored=n_cens, level=level, method=method, groups=names, notes=tuple(notes))


def fit_exponents(times: ArrayLike, events: ArrayLike, columns: dict[str, ArrayLike], *,
                  level: float = 0.95) -> tuple[tuple[Term, ...], float]:
    """Separate exponents: log N = a + Σ_k α_k · log(column_k) (log-normal, right-censored), Wald intervals.

    With ``columns={"B": B, "C": C}`` this asks whether the product form of the law holds (α_B = α_C).

    Returns:
        ``(terms, sigma)``: one :class:`Term` per column (tested against 0), and the residual sd of log N.

    Example:
        >>> B = np.repeat([8, 16, 32], 6); C = np.tile(np.repeat([32, 128], 3), 3)
        >>> t = 50 * B ** 0.3 * C ** 0.8 * np.exp(np.tile([-0.02, 0, 0.02], 6))
        >>> [round(term.estimate, 2) for term in fit_exponents(t, [True] * 18, {"B": B, "C": C})[0]]
        [0.3, 0.8]
    """
    t = np.asarray(times, dtype=float).ravel()
    e = np.asarray(events, dtype=bool).ravel()
    logs = {k: np.log(np.asarray(v, dtype=float).ravel()) for k, v in columns.items()}
    X = np.stack([np.ones_like(t)] + [v - v.mean() for v in logs.values()], axis=1)
    y = np.log(t)
    theta = _mle(X, y, e)
    H = _hessian(lambda th: _negloglik(th, X, y, e), theta)
    se = np.sqrt(np.clip(np.diag(np.linalg.pinv(H))[:-1], 0, None))
    z = stats.norm.ppf(0.5 + level / 2)
    terms = tuple(Term(name=k, estimate=float(theta[i + 1]), low=float(theta[i + 1] - z * se[i + 1]),
                       high=float(theta[i + 1] + z * se[i + 1]), se=float(se[i + 1]),
                       p=float(2 * stats.norm.sf(abs(theta[i + 1]) / se[i + 1])) if se[i + 1] > 0 else math.nan)
                  for i, k in enumerate(logs))
    return terms, float(math.exp(theta[-1]))


def law_words(fit: LawFit, *, unit: str = "tokens", x_name: str = "B·C", reference: float = 0.5) -> list[str]:
    """The fit in sentences: the exponent with its interval next to ``reference``, the constant, each group's change.

    Example:
        >>> x = np.repeat([256, 1024, 4096], 3); t = 100 * x ** 0.5
        >>> law_words(fit_law(t * np.exp(np.tile([-0.05, 0, 0.05], 3)), [True] * 9, x))[0][:44]
        'N ∝ (B·C)^0.50 (95 % CI 0.48–0.52; 9 runs, 0'
    """
    ex = fit.term("exponent")
    pct = f"{fit.level * 100:.4g} % CI"
    agree = ("includes" if ex.low <= reference <= ex.high else "excludes")
    out = [f"N ∝ ({x_name})^{ex.estimate:.2f} ({pct} {ex.low:.2f}–{ex.high:.2f}; {fit.n} runs, {fit.n_censored} "
           f"censored): the run-level interval {agree} Aoyama et al.'s {reference:g}.",
           f"At the grid's centre ({x_name} = {math.exp(fit.centre):,.0f}) the median phase time is "
           f"{math.exp(fit.term('log_constant').estimate):,.0f} {unit} ({pct} "
           f"{math.exp(fit.term('log_constant').low):,.0f}–{math.exp(fit.term('log_constant').high):,.0f}); "
           f"residual sd of log N {fit.sigma:.2f}."]
    for g in fit.groups:
        d_a, d_b = fit.term(f"d_log_constant:{g}"), fit.term(f"d_exponent:{g}")
        ratio = f"×{math.exp(d_a.estimate):.2f} ({pct} {math.exp(d_a.low):.2f}–{math.exp(d_a.high):.2f})"
        out.append(f"{g}: exponent changed by {d_b.estimate:+.2f} ({pct} {d_b.low:+.2f} to {d_b.high:+.2f}, p = "
                   f"{d_b.p:.2g}); phase time at the centre {ratio}, p = {d_a.p:.2g}: "
                   + _change_words(d_a, d_b) + ".")
    return out


def _change_words(d_a: Term, d_b: Term) -> str:
    a_moves = not (d_a.low <= 0 <= d_a.high)
    b_moves = not (d_b.low <= 0 <= d_b.high)
    if a_moves and b_moves:
        return "it changes both the constant and the exponent"
    if a_moves:
        return "it changes the constant, not detectably the exponent"
    if b_moves:
        return "it changes the exponent, not detectably the constant"
    return "no detectable change in either"


__all__ = ["LawFit", "Term", "fit_exponents", "fit_law", "law_words"]
