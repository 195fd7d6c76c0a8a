"""Main effects and interactions of crossed interventions on log phase-change time.

Why this file exists: when a study crosses interventions (with/without A ×
with/without B), the question is not only "does A speed up the phase change"
but "is A's speed-up the same with and without B", i.e. are the effects
additive.  On log time, additive effects mean multiplicative speed-ups.

Model: log T = b0 + Σ_f b_f x_f + Σ_{f<g} b_fg x_f x_g + … with effect coding
x_f = +½ when factor f is on and −½ when off.  Then b_f is f's main effect (the
mean difference in log time between on and off, averaged over the other
factors) and b_fg the interaction (f's effect with g on minus f's effect with g
off).  ``exp(b)`` is the time ratio (below 1: sooner).  The full factorial is
fitted when every cell is present; otherwise the highest-order interactions
that the cells cannot support are left out (and named in ``note``).

- No censored runs: ordinary least squares, t-based CIs and p-values.
- Too few runs for even the main effects with a residual degree of freedom
  (e.g. one seed per arm in a one-factor study): one row per main effect with
  NaN estimates and a note saying so, never an exception.
- Censored runs: a log-normal accelerated-failure-time model fitted by maximum
  likelihood (crossed runs contribute the density, censored ones the survival
  function), Wald CIs from the numerical Hessian (``scipy.differentiate``).
  A cell in which no run crossed makes its effects unbounded: reported as NaN
  with a note, never invented.

"Additive" is reported as a reading of the interaction CIs: "no evidence of
interaction" when every interaction CI contains 0, which is not proof of
additivity with a few seeds.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, stats
from scipy.differentiate import hessian

from clamp.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Effect:
    """One term of the factorial model (a row of factorial.csv)."""

    term: str  # "A", "B" or "A:B"
    order: int  # 1 for a main effect, 2 for a two-way interaction, …
    log_effect: float
    log_low: float
    log_high: float
    ratio: float  # exp(log_effect): time multiplier
    ratio_low: float
    ratio_high: float
    p: float
    method: str
    n: int
    n_censored: int
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _terms(factors: Sequence[str], max_order: int) -> list[tuple[str, ...]]:
    return [c for k in range(1, max_order + 1) for c in itertools.combinations(factors, k)]


def design_matrix(levels: NDArray[np.bool_], factors: Sequence[str], terms: Sequence[tuple[str, ...]]) -> NDArray[np.float64]:
    """Effect-coded design matrix ``[n, 1 + len(terms)]`` (intercept first, x = ±½ per factor).

    Example:
        >>> design_matrix(np.array([[True, False]]), ["A", "B"], [("A",), ("B",), ("A", "B")]).tolist()
        [[1.0, 0.5, -0.5, -0.25]]
    """
    x = np.where(levels, 0.5, -0.5)
    cols = [np.ones(len(levels))]
    for term in terms:
        cols.append(np.prod([x[:, factors.index(f)] for f in term], axis=0))
    return np.stack(cols, axis=1)


def _ols(X: NDArray[np.float64], y: NDArray[np.float64], confidence: float) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    df = X.shape[0] - X.shape[1]
    resid = y - X @ beta
    sigma2 = float(resid @ resid) / df
    se = np.sqrt(sigma2 * np.diag(np.linalg.inv(X.T @ X)))
    q = stats.t.ppf(0.5 + confidence / 2, df)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2 * stats.t.sf(np.abs(beta / se), df)
    return beta, beta - q * se, beta + q * se, p


def _aft(X: NDArray[np.float64], y: NDArray[np.float64], event: NDArray[np.bool_], confidence: float
         ) -> tuple[NDArray, NDArray, NDArray, NDArray] | None:
    k = X.shape[1]

    def nll(theta: NDArray[np.float64]) -> NDArray[np.float64]:
        # theta: [k + 1, *batch] (coefficients then log sigma), vectorised for scipy.differentiate.
        beta, log_s = theta[:k], theta[k]
        mu = np.einsum("nk,k...->n...", X, beta)
        z = (y.reshape((-1,) + (1,) * (theta.ndim - 1)) - mu) / np.exp(log_s)
        ev = event.reshape((-1,) + (1,) * (theta.ndim - 1))
        ll = np.where(ev, stats.norm.logpdf(z) - log_s, stats.norm.logsf(z))
        return -ll.sum(axis=0)

    beta0, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta0
    theta0 = np.r_[beta0, math.log(max(float(np.std(resid)), 1e-3))]
    res = optimize.minimize(nll, theta0, method="BFGS")
    if not res.success and not np.isfinite(res.fun):
        return None
    h = hessian(nll, res.x)
    try:
        cov = np.linalg.inv(h.ddf)
    except np.linalg.LinAlgError:
        return None
    var = np.diag(cov)[:k]
    if not np.all(np.isfinite(var)) or np.any(var <= 0):
        return None
    se = np.sqrt(var)
    beta = res.x[:k]
    q = stats.norm.ppf(0.5 + confidence / 2)
    return beta, beta - q * se, beta + q * se, 2 * stats.norm.sf(np.abs(beta / se))


def factorial_effects(times: Sequence[float], events: Sequence[bool], levels: Sequence[Mapping[str, bool]], *,
                      confidence: float = 0.95) -> list[Effect]:
    """Main effects and interactions on log phase-change time.

    Args:
        times: per-run phase time or censoring time (sequences seen, > 0), shape ``[n]``.
        events: per-run True if crossed, shape ``[n]``.
        levels: per-run factor levels, e.g. ``{"A": True, "B": False}`` (same keys for every run).
        confidence: CI level.

    Returns:
        One :class:`Effect` per estimable term, main effects first; when not even the main
        effects are estimable (too few runs, a factor at one level only, a time <= 0), one
        NaN :class:`Effect` per main effect whose ``note`` says why; empty without runs or factors.

    Example:
        >>> lv = [{"A": a, "B": b} for a in (False, True) for b in (False, True) for _ in range(3)]
        >>> t = [100 * (0.5 if d["A"] else 1) * (0.25 if d["B"] else 1) * (1.0, 1.1, 0.9)[i % 3] for i, d in enumerate(lv)]
        >>> eff = {e.term: e for e in factorial_effects(t, [True] * 12, lv)}
        >>> round(eff["A"].ratio, 2), round(eff["B"].ratio, 2), round(eff["A:B"].ratio, 2)
        (0.5, 0.25, 1.0)
    """
    t = np.asarray(times, dtype=float)
    ev = np.asarray(events, dtype=bool)
    if not (t.size == ev.size == len(levels)):
        raise ValueError("times, events and levels must have one entry per run.")
    if t.size == 0:
        return []
    factors = sorted(levels[0])
    if any(sorted(lv) != factors for lv in levels):
        raise ConfigError(f"Every arm of a factorial study must set the same factors {factors}; fix the arms' 'factors'.")
    if not factors:
        return []
    n_cens = int((~ev).sum())
    if np.any(t <= 0):
        return not_estimable(factors, n=int(t.size), n_censored=n_cens, note="a phase time <= 0 has no log")
    lv = np.array([[bool(d[f]) for f in factors] for d in levels])
    y = np.log(t)
    cells = {tuple(r) for r in lv.tolist()}
    notes: list[str] = []
    # Drop the highest-order interactions until the design is estimable with residual degrees of freedom.
    for max_order in range(len(factors), 0, -1):
        terms = _terms(factors, max_order)
        X = design_matrix(lv, factors, terms)
        if np.linalg.matrix_rank(X) == X.shape[1] and X.shape[0] > X.shape[1]:
            break
    else:
        return not_estimable(factors, n=int(t.size), n_censored=n_cens, note=(
            f"too few runs ({t.size}) to fit: the main effects of {len(factors)} factor(s) need more than "
            f"{len(factors) + 1} runs, with both levels of every factor present; add seeds"))
    if max_order < len(factors):
        notes.append(f"{len(cells)} of {2 ** len(factors)} cells present or too few runs: interactions above order {max_order} not estimable")
    empty = [c for c in cells if not ev[(lv == np.array(c)).all(axis=1)].any()]
    if n_cens == 0:
        fit = _ols(X, y, confidence)
        method = "OLS on log time (t CIs)"
    elif empty:
        fit = None
        method = "log-normal AFT"
        notes.append("a cell with no crossings makes effects unbounded: " +
                     "; ".join(",".join(f"{f}={'on' if v else 'off'}" for f, v in zip(factors, c)) for c in empty))
    else:
        fit = _aft(X, y, ev, confidence)
        method = "log-normal AFT, censored ML (Wald CIs)"
        if fit is None:
            notes.append("AFT fit did not converge")
    out = []
    for j, term in enumerate(terms, start=1):
        if fit is None:
            b = lo = hi = p = math.nan
        else:
            b, lo, hi, p = (float(a[j]) for a in fit)
        out.append(Effect(term=":".join(term), order=len(term), log_effect=b, log_low=lo, log_high=hi,
                          ratio=math.exp(b), ratio_low=math.exp(lo), ratio_high=math.exp(hi), p=p, method=method,
                          n=int(t.size), n_censored=n_cens, note="; ".join(notes)))
    return out


def not_estimable(factors: Sequence[str], *, n: int, n_censored: int, note: str) -> list[Effect]:
    """One NaN :class:`Effect` per main effect, with ``note`` saying why nothing was fitted.

    Example:
        >>> e = not_estimable(["A"], n=2, n_censored=0, note="too few runs")[0]
        >>> e.term, e.ratio, e.method, e.note
        ('A', nan, 'none', 'too few runs')
    """
    nan = math.nan
    return [Effect(term=f, order=1, log_effect=nan, log_low=nan, log_high=nan, ratio=nan, ratio_low=nan,
                   ratio_high=nan, p=nan, method="none", n=n, n_censored=n_censored, note=note) for f in factors]


def additivity(effects: Sequence[Effect]) -> str:
    """One plain sentence on whether the interactions' CIs contain zero.

    Example:
        >>> e = Effect(term="A:B", order=2, log_effect=0.1, log_low=-0.2, log_high=0.4, ratio=1.1, ratio_low=0.8,
        ...            ratio_high=1.5, p=0.5, method="OLS", n=12, n_censored=0)
        >>> additivity([e])
        'No evidence of interaction (A:B: ×1.10, CI 0.80–1.50): consistent with additive effects on log time (multiplicative speed-ups).'
    """
    inter = [e for e in effects if e.order > 1]
    if not inter:
        return "No interaction terms could be estimated, so additivity is untested."
    if any(math.isnan(e.log_low) for e in inter):
        return "Interactions could not be bounded (see notes), so additivity is untested."
    desc = ", ".join(f"{e.term}: ×{e.ratio:.2f}, CI {e.ratio_low:.2f}–{e.ratio_high:.2f}" for e in inter)
    if all(e.log_low <= 0 <= e.log_high for e in inter):
        return f"No evidence of interaction ({desc}): consistent with additive effects on log time (multiplicative speed-ups)."
    return f"Effects are not additive on log time ({desc}): at least one interaction CI excludes 1."
