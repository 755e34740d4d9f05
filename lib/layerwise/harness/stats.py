"""Summaries with uncertainty, and the paired four-outcome comparisons of protocol v2.

Means over seeds
    :func:`mean_ci` (Student-t interval, optionally restricted to the statistic's range),
    :func:`paired_difference_ci`, :func:`format_ci`.

Paired comparisons (arm vs baseline on the same seeds)
    :func:`compare_paired` for one comparison; :func:`compare_family` for all comparisons of
    one notebook, with Holm's correction (:func:`holm`) and one of four outcomes per row:
    *better*, *worse*, *equivalent* or *inconclusive* (:data:`OUTCOMES`).  The smallest effect
    of interest (SESOI) is the caller's, per metric; :func:`sesoi_from_error` turns "a 10%
    relative change in test error" into an accuracy difference; :func:`count_outcomes` tallies
    a table's outcomes.  Power:
    :func:`minimum_detectable_effect` and its inverse :func:`seeds_needed`.

Rank agreement and time to target
    :func:`kendall_tau_b` (per seed, ties counted, exact or permutation p-value),
    :func:`summarize_rank_agreement` (over seeds), :func:`steps_to_target` and
    :func:`compare_times_to_target`.

Times against depth
    :func:`geometric_mean_ci` (a time's typical value over seeds) and :func:`depth_trend`
    (the slope of log time against relative depth, with a bootstrap interval over seeds).

Choices, and why
----------------
*Intervals and p-values are Student-t based.*  With the three to five seeds the studies run,
the alternatives fail in ways that matter: a sign-flip permutation test cannot give a
two-sided p-value below ``2 / 2**n`` (0.25 with three seeds, 0.0625 with five), so it could
never reach 0.05, let alone a Holm-corrected level; and the bootstrap percentile interval
(Efron & Tibshirani 1993, ch. 13) is far too narrow at small ``n`` -- in a Monte Carlo check
(2000 samples per cell) its nominal 95% interval covered the true mean 51% / 73% / 85% of the
time at n = 2 / 3 / 5 for normal data (t interval: 95% / 94% / 96%), and 46% / 71% / 80% for
skewed Beta(9, 1) accuracies (t: 92% / 90% / 88%).  The t procedures also give a test and an
interval that are exact duals (the ``1 - g`` interval excludes ``d0`` exactly when the test of
``d0`` has ``p < g``), which is what makes reported intervals agree with outcomes.

*Bounded statistics.*  When a statistic has a known range (accuracy in [0, 1], a rank
correlation in [-1, 1]), the reported interval is the t interval intersected with that range
(for a difference of two such statistics, with ``[lo - hi, hi - lo]``).  The intersection of a
confidence set with the parameter space is a confidence set with the same coverage, since the
true value always lies in that space (Mandelkern 2002, Statist. Sci. 17, 149-172); because
the sample mean of in-range values lies in the range, the intersection is never empty.  It
can touch the bound (``[0.93, 1.00]`` for accuracies 0.99 and 1.0 over two seeds).  Limits:
when the seed-to-seed distribution is extremely skewed against the bound, no interval from
3-5 seeds covers well (t and bootstrap both covered under 45% for Beta(2, 0.02) values in the
same check); and zero spread over seeds gives a zero-width interval.  No method based only on
the seed-to-seed spread does better, so show the per-seed values beside the summaries.

*Multiplicity and equivalence*: see :func:`compare_family`.

References
----------
Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scand. J. Statist.
6, 65-70.  Schuirmann, D. J. (1987). A comparison of the two one-sided tests procedure and the
power approach for assessing the equivalence of average bioavailability. J. Pharmacokinet.
Biopharm. 15, 657-680.  Efron, B. & Tibshirani, R. J. (1993). An Introduction to the
Bootstrap. Chapman & Hall.  Kendall, M. G. (1945). The treatment of ties in ranking problems.
Biometrika 33, 239-251.  Cohen, J. (1988). Statistical Power Analysis for the Behavioral
Sciences, 2nd ed.  Phipson, B. & Smyth, G. K. (2010). Permutation p-values should never be
zero. Stat. Appl. Genet. Mol. Biol. 9, 39.  Mandelkern, M. (2002). Setting confidence
intervals for bounded parameters. Statist. Sci. 17, 149-172.
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import integrate as _integrate
from scipy import optimize as _optimize
from scipy import stats as _st

__all__ = [
    "OUTCOMES",
    "KendallTau",
    "PairedComparison",
    "RankAgreement",
    "TimeRatio",
    "compare_family",
    "compare_paired",
    "compare_times_to_target",
    "count_outcomes",
    "DepthTrend",
    "depth_trend",
    "format_ci",
    "geometric_mean_ci",
    "format_outcome",
    "holm",
    "kendall_tau_b",
    "mean_ci",
    "minimum_detectable_effect",
    "paired_difference_ci",
    "seeds_needed",
    "sesoi_from_error",
    "steps_to_target",
    "summarize_rank_agreement",
    "unresolved_note",
]

Bounds = tuple[float, float]

OUTCOMES: tuple[str, ...] = ("better", "worse", "equivalent", "inconclusive")
"""The only labels :func:`compare_family` gives; there is deliberately no "no difference"."""


# --------------------------------------------------------------------------- means over seeds


def _finite(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} got non-finite values {x.tolist()}")
    return x


def _check_bounds(bounds: Bounds) -> Bounds:
    lo, hi = float(bounds[0]), float(bounds[1])
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise ValueError(f"bounds must be (lo, hi) with lo < hi, got {bounds!r}")
    return lo, hi


def _difference_bounds(bounds: Bounds | None) -> Bounds | None:
    """Range of ``a - b`` when ``a`` and ``b`` lie in ``bounds``: ``[lo - hi, hi - lo]``."""
    if bounds is None:
        return None
    lo, hi = _check_bounds(bounds)
    return lo - hi, hi - lo


def _clip(low: float, high: float, bounds: Bounds | None) -> tuple[float, float]:
    if bounds is None:
        return low, high
    return max(low, bounds[0]), min(high, bounds[1])


def mean_ci(
    values: Sequence[float], confidence: float = 0.95, bounds: Bounds | None = None
) -> tuple[float, float, float]:
    """Mean and the two ends of its Student-t confidence interval.

    ``mean ± t_{(1+c)/2, n-1} · s / sqrt(n)`` with ``s`` the sample standard deviation
    (``ddof=1``).  With one value the interval is ``(nan, nan)``: one seed says nothing about
    the spread.  Non-finite values are an error (count failures separately).

    ``bounds=(lo, hi)``: the statistic's possible range (``(0, 1)`` for accuracy, ``(-1, 1)``
    for a rank correlation).  Values outside it are an error, and the interval is the t
    interval intersected with ``[lo, hi]`` -- same coverage, never outside the range (see the
    module docstring for why this and not a bootstrap percentile interval).
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"mean_ci got non-finite values {x.tolist()}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if bounds is not None:
        bounds = _check_bounds(bounds)
        if np.any(x < bounds[0]) or np.any(x > bounds[1]):
            raise ValueError(f"mean_ci got values outside {bounds}: {x.tolist()}")
    mean = float(x.mean())
    if bounds is not None:  # float rounding of the mean must not leave the range either
        mean = min(max(mean, bounds[0]), bounds[1])
    if x.size < 2:
        return mean, math.nan, math.nan
    half = float(_st.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    low, high = _clip(mean - half, mean + half, bounds)
    return mean, low, high


def paired_difference_ci(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = 0.95,
    bounds: Bounds | None = None,
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over paired seeds with its t interval (see ``mean_ci``).

    ``bounds``: the range of the metric itself; the interval of the difference is kept inside
    ``[lo - hi, hi - lo]``.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in size: {a.size} vs {b.size}")
    return mean_ci(a - b, confidence, _difference_bounds(bounds))


def format_ci(mean: float, low: float, high: float, digits: int = 3) -> str:
    """``"0.912 [0.905, 0.918]"``; the interval is omitted when it is undefined (one seed)."""
    if not math.isfinite(mean):
        return "n/a"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


# ---------------------------------------------------------------- t machinery (paired diffs)


@dataclass(frozen=True)
class _TSample:
    n: int
    mean: float
    sd: float  # ddof=1; nan for n < 2

    @property
    def se(self) -> float:
        return self.sd / math.sqrt(self.n)

    @property
    def df(self) -> int:
        return self.n - 1

    def p_equal(self, d0: float = 0.0) -> float:
        """Two-sided t-test p-value of ``mean = d0``: ``2 · P(T_{n-1} > |mean - d0| / se)``.

        Zero spread: 1 when ``mean == d0`` exactly, else 0 (the t statistic is infinite)."""
        if self.n < 2:
            return math.nan
        if self.se == 0:
            return 1.0 if self.mean == d0 else 0.0
        return float(min(1.0, 2 * _st.t.sf(abs(self.mean - d0) / self.se, self.df)))

    def p_tost(self, margin: float) -> float:
        """Schuirmann's TOST p-value for ``|mean| < margin``: the larger of the one-sided
        p-values of ``H0: mean <= -margin`` and ``H0: mean >= margin``,
        ``max(P(T > (m + margin)/se), P(T < (m - margin)/se))``."""
        if self.n < 2:
            return math.nan
        if self.se == 0:
            return 0.0 if abs(self.mean) < margin else 1.0
        lower = _st.t.sf((self.mean + margin) / self.se, self.df)
        upper = _st.t.cdf((self.mean - margin) / self.se, self.df)
        return float(max(lower, upper))

    def interval(self, gamma: float, bounds: Bounds | None) -> tuple[float, float]:
        """Two-sided ``1 - gamma`` t interval, ``mean ± t_{1-gamma/2, n-1} · se``, intersected
        with ``bounds``."""
        if self.n < 2 or not math.isfinite(gamma):
            return math.nan, math.nan
        half = 0.0 if self.se == 0 else float(_st.t.isf(gamma / 2, self.df)) * self.se
        return _clip(self.mean - half, self.mean + half, bounds)


def _t_sample(d: np.ndarray) -> _TSample:
    if d.size == 0:
        raise ValueError("a paired comparison needs at least one pair")
    sd = float(d.std(ddof=1)) if d.size >= 2 else math.nan
    return _TSample(int(d.size), float(d.mean()), sd)


# ------------------------------------------------------------------------- SESOI and power


def sesoi_from_error(baseline_error: float, relative: float = 0.10) -> float:
    """Accuracy difference that is a ``relative`` change of the baseline's test error.

    ``SESOI = relative · baseline_error``: with 8% baseline error, a 10% relative change is
    0.8 points of error, i.e. an accuracy SESOI of 0.008.
    """
    if not 0 < baseline_error <= 1:
        raise ValueError(f"baseline_error must lie in (0, 1], got {baseline_error!r}")
    if not relative > 0:
        raise ValueError(f"relative must be positive, got {relative!r}")
    return float(relative * baseline_error)


@functools.lru_cache(maxsize=256)
def _s_law(df: int) -> tuple[float, float, float]:
    """For ``S = sqrt(chi2_df / df)``: log of the density's constant, its median and a point
    beyond which the density's mass is below 1e-16 (integration range)."""
    r = math.sqrt(df)
    log_const = 0.5 * math.log(df) - (df / 2 - 1) * math.log(2) - math.lgamma(df / 2)
    return log_const, float(_st.chi.median(df)) / r, float(_st.chi.isf(1e-16, df)) / r


def _t_power(nc: float, df: int, crit: float) -> float:
    """Power of the two-sided one-sample t-test with critical value ``crit`` at noncentrality
    ``nc = delta · sqrt(n) / sd``: ``P(|T'| > crit)``, ``T' = (Z + nc) / S``,
    ``S = sqrt(chi2_df / df)``, i.e. ``E_S[Phi(nc - crit·S) + Phi(-nc - crit·S)]``.

    Integrated numerically over the law of ``S`` (density of ``u = S·sqrt(df)``, a chi
    variable: ``u^(df-1) exp(-u^2/2) / (2^(df/2-1) Gamma(df/2))``).  scipy's ``nct`` returns
    nan in parts of the range needed here, so it is not used."""
    log_const, mid, top = _s_law(df)
    r = math.sqrt(df)
    root2 = math.sqrt(2.0)

    def f(s: float) -> float:
        u = s * r
        if u == 0.0:
            density = math.exp(log_const) if df == 1 else 0.0
        else:
            density = math.exp(log_const + (df - 1) * math.log(u) - u * u / 2)
        tails = 0.5 * math.erfc((crit * s - nc) / root2) + 0.5 * math.erfc((crit * s + nc) / root2)
        return density * tails

    value, _ = _integrate.quad(f, 0.0, top, points=[mid], limit=200, epsabs=1e-13, epsrel=1e-11)
    return float(min(1.0, max(0.0, value)))


def minimum_detectable_effect(
    sd: float,
    n: int,
    alpha: float = 0.05,
    power: float = 0.8,
    method: Literal["t", "normal"] = "t",
) -> float:
    """Smallest true mean paired difference that a two-sided level-``alpha`` paired t-test on
    ``n`` pairs with difference SD ``sd`` detects with probability ``power`` (Cohen 1988).

    ``method="t"`` (default): exact under normal differences -- solve
    ``P(|T'_{n-1}(nc)| > t_{1-alpha/2, n-1}) = power`` for the noncentrality ``nc`` and return
    ``nc · sd / sqrt(n)``.  ``method="normal"``: the large-sample approximation
    ``(z_{1-alpha/2} + z_{power}) · sd / sqrt(n)``, which is far too optimistic at 3-5 seeds
    (at n = 3 the t critical value is 4.30, not 1.96).  ``sd`` is usually the measured paired
    SD, itself a noisy estimate with few seeds.  ``n < 2`` or non-finite ``sd``: nan.
    """
    if not 0 < alpha < power < 1:
        raise ValueError(f"need 0 < alpha < power < 1, got alpha={alpha!r}, power={power!r}")
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd < 0:
        raise ValueError(f"sd must be >= 0, got {sd!r}")
    if sd == 0:
        return 0.0
    if method == "normal":
        z = _st.norm.isf(alpha / 2) + _st.norm.ppf(power)
        return float(z * sd / math.sqrt(n))
    if method != "t":
        raise ValueError(f"method must be 't' or 'normal', got {method!r}")
    df = n - 1
    crit = float(_st.t.isf(alpha / 2, df))
    high = crit + float(_st.norm.ppf(power)) + 1.0
    while _t_power(high, df, crit) < power:
        high *= 2
    nc = _optimize.brentq(lambda v: _t_power(v, df, crit) - power, 0.0, high, xtol=1e-12)
    return float(nc * sd / math.sqrt(n))


def seeds_needed(
    sd: float,
    sesoi: float,
    alpha: float = 0.05,
    power: float = 0.8,
    method: Literal["t", "normal"] = "t",
    max_n: int = 100_000,
) -> int:
    """Fewest pairs (>= 2) with ``minimum_detectable_effect(sd, n, alpha, power) <= sesoi``.

    Starts from the normal-approximation size ``ceil(((z_{1-alpha/2} + z_power) · sd /
    sesoi)^2)`` and walks to the exact answer.  For a family of ``m`` comparisons pass
    ``alpha / m`` (the strictest Holm step).
    """
    if not sesoi > 0:
        raise ValueError(f"sesoi must be positive, got {sesoi!r}")
    if not (math.isfinite(sd) and sd >= 0):
        raise ValueError(f"sd must be finite and >= 0, got {sd!r}")
    z = _st.norm.isf(alpha / 2) + _st.norm.ppf(power)
    n = max(2, math.ceil((z * sd / sesoi) ** 2))
    while n > 2 and minimum_detectable_effect(sd, n - 1, alpha, power, method) <= sesoi:
        n -= 1
    while minimum_detectable_effect(sd, n, alpha, power, method) > sesoi:
        n += 1
        if n > max_n:
            raise ValueError(f"more than {max_n} seeds needed (sd={sd}, sesoi={sesoi})")
    return n


# ------------------------------------------------------------------------ paired comparison


@dataclass(frozen=True)
class PairedComparison:
    """One paired comparison, arm ``a`` minus baseline ``b`` (see :func:`compare_paired`)."""

    n: int
    effect: float  # mean of a - b, in metric units (sign not flipped for lower-is-better)
    sd: float  # SD of a - b over pairs (ddof=1)
    ci_low: float  # (1 - alpha) t interval of the effect, inside the difference's range
    ci_high: float
    p: float  # two-sided paired t-test of effect = 0
    tost_low: float  # (1 - 2 alpha) t interval: equivalent at alpha when inside ±sesoi
    tost_high: float
    p_tost: float  # Schuirmann's TOST p-value for |effect| < sesoi
    mde: float  # minimum detectable effect at `power`, two-sided, level alpha
    sesoi: float
    larger_is_better: bool


def _check_sesoi(sesoi: float) -> float:
    sesoi = float(sesoi)
    if not (math.isfinite(sesoi) and sesoi > 0):
        raise ValueError(f"sesoi must be positive and finite, got {sesoi!r}")
    return sesoi


def _compare_differences(
    d: np.ndarray,
    sesoi: float,
    larger_is_better: bool,
    alpha: float,
    power: float,
    diff_bounds: Bounds | None,
) -> tuple[PairedComparison, _TSample]:
    sesoi = _check_sesoi(sesoi)
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha!r}")
    d = _finite(d, "a paired comparison")
    s = _t_sample(d)
    ci = s.interval(alpha, diff_bounds)
    tost = s.interval(2 * alpha, diff_bounds)
    result = PairedComparison(
        n=s.n,
        effect=s.mean,
        sd=s.sd,
        ci_low=ci[0],
        ci_high=ci[1],
        p=s.p_equal(),
        tost_low=tost[0],
        tost_high=tost[1],
        p_tost=s.p_tost(sesoi),
        mde=minimum_detectable_effect(s.sd, s.n, alpha, power),
        sesoi=sesoi,
        larger_is_better=bool(larger_is_better),
    )
    return result, s


def compare_paired(
    a: Sequence[float],
    b: Sequence[float],
    sesoi: float,
    larger_is_better: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
    bounds: Bounds | None = None,
) -> PairedComparison:
    """Paired comparison of arm ``a`` with baseline ``b`` (same seeds, same order).

    On the differences ``d_i = a_i - b_i`` (``n`` pairs, mean ``m``, SD ``s``,
    ``se = s / sqrt(n)``): the effect ``m``; its ``1 - alpha`` t interval ``m ± t_{1-alpha/2,
    n-1} se``; the two-sided paired t-test p-value of ``m = 0``; Schuirmann's (1987) TOST
    p-value for ``|m| < sesoi`` with its ``1 - 2 alpha`` interval (equivalence at level
    ``alpha`` exactly when that interval lies inside ``(-sesoi, sesoi)``); and the minimum
    detectable effect (:func:`minimum_detectable_effect`, measured ``s``).  ``bounds``: the
    metric's range; intervals stay inside ``[lo - hi, hi - lo]``.  With one pair, everything
    but the effect is nan.

    This is a single comparison.  A notebook's comparisons form a family: use
    :func:`compare_family`, which corrects for multiplicity and assigns the outcome.
    """
    a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_.shape != b_.shape:
        raise ValueError(f"paired samples differ in size: {a_.size} vs {b_.size}")
    result, _ = _compare_differences(
        a_ - b_, sesoi, larger_is_better, alpha, power, _difference_bounds(bounds)
    )
    return result


# ------------------------------------------------------------ multiplicity and four outcomes


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values.

    Sort the ``m`` p-values ``p_(1) <= ... <= p_(m)``; the adjusted value of ``p_(j)`` is
    ``min(1, max_{k<=j} (m - k + 1) p_(k))``.  Rejecting where the adjusted value is below
    ``alpha`` controls the family-wise error rate at ``alpha`` under any dependence.  nan
    entries (comparisons that cannot be tested, e.g. one seed) stay nan and do not count in
    ``m``.  Returned in the input order.
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    out = np.full(p.shape, math.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def _level(alpha: float, p: float, p_adj: float, m: int) -> float:
    """``alpha · p / p_adj``: the per-comparison level at which the plain test rejects exactly
    when the adjusted p-value is below ``alpha`` (``p < alpha·p/p_adj  <=>  p_adj < alpha``).
    It is ``alpha / m`` for the smallest p-value (Bonferroni) and at most ``alpha``."""
    if not (math.isfinite(p) and math.isfinite(p_adj)):
        return math.nan
    if p_adj == 0:
        return alpha / m
    return alpha * p / p_adj


def _as_array(cell: Any) -> np.ndarray:
    return np.asarray(cell, dtype=float).ravel()


def compare_family(
    comparisons: pd.DataFrame, alpha: float = 0.05, power: float = 0.8
) -> pd.DataFrame:
    """All paired comparisons of one notebook, corrected for multiplicity, with outcomes.

    ``comparisons`` has one row per comparison: either list-like columns ``a`` (arm) and ``b``
    (baseline) holding the per-seed values in the same seed order, or a list-like column
    ``diff`` holding the per-seed differences ``a - b`` (e.g. log time ratios); a ``sesoi``
    column (positive, in the same units); optionally ``larger_is_better`` (default True) and
    ``bounds`` (the metric's ``(lo, hi)`` or None).  Other columns are kept as identifiers.

    Per row, on the paired differences (see :func:`compare_paired`): ``p`` is the paired
    t-test p-value of "effect = 0", ``p_tost`` Schuirmann's TOST p-value for ``|effect| <
    sesoi``.  Holm's correction is applied across the family to the ``p`` column (giving
    ``p_holm``) and, separately, to the ``p_tost`` column (``p_tost_holm``).  Outcome:

    * *better* / *worse*: ``p_holm < alpha``; the direction is the sign of the effect, read
      with ``larger_is_better``.  This takes precedence: an effect that is real but shown to
      be smaller than the SESOI is still reported as better/worse.
    * *equivalent*: otherwise, when ``p_tost_holm < alpha`` -- the equivalence claims are a
      family of their own, Holm-corrected at ``alpha``.
    * *inconclusive*: otherwise (including rows with fewer than two pairs).

    Each family of claims (differences; equivalences) has family-wise error at most
    ``alpha``; since "effect = 0" and "|effect| >= sesoi" cannot both be true, each single
    comparison errs with probability at most ``alpha``, and the chance of any wrong claim of
    either kind in the notebook is at most ``2 alpha``.  (The direction of a better/worse
    claim is read from the sign after a two-sided rejection; a wrong-direction claim needs a
    rejection in the wrong tail, probability at most ``alpha / 2`` per comparison.)  Outcomes are decided from the
    corrected p-values, never from rounded interval ends, so float noise in the data moves
    them only at an exact decision boundary.

    Reported interval (``ci_low``, ``ci_high``, confidence ``ci_level``), t-based and kept
    inside the difference's range, chosen to agree with the outcome by construction:
    with ``g = alpha · p / p_holm`` (the level Holm effectively applied to this row -- the
    Bonferroni ``alpha / m`` for the smallest p-value) and ``g_e = alpha · p_tost /
    p_tost_holm``,

    * better / worse: the ``1 - g`` interval, which excludes 0 exactly when ``p_holm < alpha``;
    * equivalent: the ``1 - 2 g_e`` interval, inside ``(-sesoi, sesoi)`` exactly when
      ``p_tost_holm < alpha`` (with one comparison: the usual 90% TOST interval);
    * inconclusive: the wider of the two, so it both contains 0 and reaches past ±sesoi.

    These are per-comparison intervals at a multiplicity-adjusted level, not a simultaneous
    confidence region (for the smallest p-value they coincide with Bonferroni's).

    ``mde``: minimum detectable effect at ``power``, two-sided, at level ``alpha / m`` with the
    measured paired SD -- an effect that large is declared with at least that power whatever
    the other comparisons show, because ``p < alpha / m`` implies ``p_holm < alpha``.
    Compare it with ``sesoi``: ``mde > sesoi`` means the design could not resolve the SESOI.
    """
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha!r}")
    cols = set(comparisons.columns)
    if "diff" in cols and ({"a", "b"} & cols):
        raise ValueError("give either a 'diff' column or 'a' and 'b' columns, not both")
    if "diff" not in cols and not {"a", "b"} <= cols:
        raise ValueError("comparisons need a 'diff' column or 'a' and 'b' columns")
    if "sesoi" not in cols:
        raise ValueError("comparisons need a 'sesoi' column (smallest effect of interest)")
    data_cols = {"a", "b", "diff", "sesoi", "bounds"}
    ids = comparisons[[c for c in comparisons.columns if c not in data_cols]]

    samples: list[tuple[PairedComparison, _TSample, Bounds | None]] = []
    for _, row in comparisons.iterrows():
        if "diff" in cols:
            d = _as_array(row["diff"])
        else:
            a, b = _as_array(row["a"]), _as_array(row["b"])
            if a.shape != b.shape:
                raise ValueError(f"paired samples differ in size: {a.size} vs {b.size}")
            d = a - b
        bounds = row["bounds"] if "bounds" in cols else None
        diff_bounds = _difference_bounds(bounds) if _is_bounds(bounds) else None
        larger = bool(row["larger_is_better"]) if "larger_is_better" in cols else True
        result, s = _compare_differences(d, row["sesoi"], larger, alpha, power, diff_bounds)
        samples.append((result, s, diff_bounds))

    p = np.array([r.p for r, _, _ in samples], dtype=float)
    p_tost = np.array([r.p_tost for r, _, _ in samples], dtype=float)
    p_holm, p_tost_holm = holm(p), holm(p_tost)
    m = int(np.sum(~np.isnan(p)))

    rows = []
    for i, (r, s, diff_bounds) in enumerate(samples):
        g = _level(alpha, p[i], p_holm[i], m)
        g_e = _level(alpha, p_tost[i], p_tost_holm[i], m)
        if p_holm[i] < alpha:  # nan compares False
            good = (r.effect > 0) == r.larger_is_better
            outcome, gamma = ("better" if good else "worse"), g
        elif p_tost_holm[i] < alpha:
            outcome, gamma = "equivalent", 2 * g_e
        else:
            outcome, gamma = "inconclusive", min(g, 2 * g_e)
        low, high = s.interval(gamma, diff_bounds)
        rows.append(
            {
                "effect": r.effect,
                "ci_low": low,
                "ci_high": high,
                "ci_level": 1 - gamma,
                "p": p[i],
                "p_holm": p_holm[i],
                "p_tost": p_tost[i],
                "p_tost_holm": p_tost_holm[i],
                "sd": r.sd,
                "mde": minimum_detectable_effect(r.sd, r.n, alpha / max(m, 1), power),
                "sesoi": r.sesoi,
                "n": r.n,
                "outcome": outcome,
            }
        )
    out = pd.DataFrame(rows, index=comparisons.index, columns=_FAMILY_COLUMNS)
    return pd.concat([ids, out], axis=1)


_FAMILY_COLUMNS = [
    "effect",
    "ci_low",
    "ci_high",
    "ci_level",
    "p",
    "p_holm",
    "p_tost",
    "p_tost_holm",
    "sd",
    "mde",
    "sesoi",
    "n",
    "outcome",
]


def _is_bounds(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return True


def format_outcome(row: Mapping[str, Any] | pd.Series, digits: int = 3) -> str:
    """``"+0.013 [+0.004, +0.022] better, MDE 0.008"`` from a :func:`compare_family` row
    (interval omitted when undefined)."""
    effect, outcome = float(row["effect"]), str(row["outcome"])
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    if not math.isfinite(effect):
        return f"n/a {outcome}"
    text = f"{effect:+.{digits}f}"
    low, high = float(row["ci_low"]), float(row["ci_high"])
    if math.isfinite(low) and math.isfinite(high):
        text += f" [{low:+.{digits}f}, {high:+.{digits}f}]"
    text += f" {outcome}"
    mde = float(row["mde"])
    if math.isfinite(mde):
        text += f", MDE {mde:.{digits}f}"
    return text


def count_outcomes(outcomes: Iterable[str]) -> str:
    """``"1 better, 0 worse, 2 equivalent, 0 inconclusive"``: how many of ``outcomes`` (a
    :func:`compare_family` table's ``outcome`` column) are each of :data:`OUTCOMES`."""
    counts = collections.Counter(outcomes)
    unknown = set(counts) - set(OUTCOMES)
    if unknown:
        raise ValueError(f"unknown outcome(s) {sorted(unknown)}; valid: {list(OUTCOMES)}")
    return ", ".join(f"{counts[o]} {o}" for o in OUTCOMES)


def unresolved_note(
    table: pd.DataFrame,
    noun: str = "comparisons",
    not_that: str | None = None,
    seeds: str = "seeds",
) -> str:
    """A Markdown bullet counting the rows of a :func:`compare_family` table (with ``mde`` and
    ``sesoi`` columns) whose design could not resolve the smallest effect of interest,
    ``mde > sesoi``: ``"- 3 of 12 comparisons could not resolve ..."``.

    With ``not_that`` (what an *inconclusive* must not be read as, e.g. ``"the rule does
    nothing"``) the bullet goes on: ``"...: an *inconclusive* there means the <seeds> were too
    few, not that <not_that>."``"""
    missing = {"mde", "sesoi"} - set(table.columns)
    if missing:
        raise ValueError(f"the table lacks column(s) {sorted(missing)}; it needs 'mde' and 'sesoi'")
    unresolved = int((table["mde"] > table["sesoi"]).sum())
    text = (
        f"- {unresolved} of {len(table)} {noun} could not resolve their smallest effect of "
        "interest (minimum detectable effect above it)"
    )
    if not_that is None:
        return f"{text}."
    return f"{text}: an *inconclusive* there means the {seeds} were too few, not that {not_that}."


# ----------------------------------------------------------------------------- rank agreement


@dataclass(frozen=True)
class KendallTau:
    """Kendall's tau-b between an ordering and measured values (see :func:`kendall_tau_b`)."""

    tau: float  # nan when x or y is constant (all pairs tied)
    p: float  # two-sided, H0: independence
    n: int
    tied_x: int  # pairs tied in x (including those tied in both)
    tied_y: int  # pairs tied in y
    method: str  # "exact", "permutation" or "undefined"


_EXACT_MAX_N = 8  # 8! = 40320 orderings


def _pair_signs(v: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(v.size, 1)
    return np.sign(v[i] - v[j]).astype(np.int64)


def _null_s(ranks: np.ndarray, sx: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """``S`` for each row of ``orders`` (permutations applied to the y ranks)."""
    i, j = np.triu_indices(ranks.size, 1)
    y = ranks[orders]
    return np.sign(y[:, i] - y[:, j]) @ sx


def kendall_tau_b(
    x: Sequence[float],
    y: Sequence[float],
    method: Literal["auto", "exact", "permutation"] = "auto",
    permutations: int = 10_000,
    seed: int = 0,
) -> KendallTau:
    """Kendall's (1945) tau-b with a two-sided p-value under independence.

    Over all pairs ``i < j``: ``S = sum sign(x_i - x_j) · sign(y_i - y_j)`` (concordant minus
    discordant), ``tau_b = S / sqrt((n0 - n_x)(n0 - n_y))`` with ``n0 = n(n-1)/2`` and
    ``n_x``, ``n_y`` the pairs tied in ``x`` and in ``y`` (reported as ``tied_x``,
    ``tied_y``).  Ties are common when ``y`` are times read off evaluation steps.

    p-value ``P(|S*| >= |S|)`` over re-pairings of ``y`` with ``x`` (under which the tie counts
    and so the denominator stay fixed, and ``S`` is an integer -- no float comparisons):

    * ``"exact"``: all ``n!`` re-pairings for ``n <= 8`` (ties or not); for larger ``n``
      without ties, scipy's exact null distribution; larger ``n`` with ties is an error;
    * ``"permutation"``: ``permutations`` random re-pairings drawn with ``seed``,
      ``p = (1 + #{|S*| >= |S|}) / (1 + permutations)`` (Phipson & Smyth 2010), deterministic;
    * ``"auto"``: ``"exact"`` where possible, else ``"permutation"``.

    ``x`` or ``y`` constant: tau and p are nan (``method="undefined"``).
    """
    xa, ya = _finite(x, "kendall_tau_b"), _finite(y, "kendall_tau_b")
    if xa.shape != ya.shape:
        raise ValueError(f"x and y differ in size: {xa.size} vs {ya.size}")
    n = xa.size
    if n < 2:
        raise ValueError("kendall_tau_b needs at least two points")
    sx, sy = _pair_signs(xa), _pair_signs(ya)
    n0 = n * (n - 1) // 2
    tied_x, tied_y = int(np.sum(sx == 0)), int(np.sum(sy == 0))
    if tied_x == n0 or tied_y == n0:
        return KendallTau(math.nan, math.nan, n, tied_x, tied_y, "undefined")
    s = int(sx @ sy)
    tau = s / math.sqrt((n0 - tied_x) * (n0 - tied_y))
    ties = tied_x > 0 or tied_y > 0
    if method == "auto":
        method = "exact" if (n <= _EXACT_MAX_N or not ties) else "permutation"
    ranks = _st.rankdata(ya, method="dense").astype(np.int64)
    if method == "exact":
        if n <= _EXACT_MAX_N:
            orders = np.array(list(itertools.permutations(range(n))), dtype=np.int64)
            null = _null_s(ranks, sx, orders)
            p = float(np.mean(np.abs(null) >= abs(s)))
        elif not ties:
            p = float(_st.kendalltau(xa, ya, method="exact").pvalue)
        else:
            raise ValueError(f"no exact p-value with ties beyond n={_EXACT_MAX_N}; use permutation")
    elif method == "permutation":
        if permutations < 1:
            raise ValueError(f"permutations must be >= 1, got {permutations!r}")
        rng = np.random.default_rng(seed)
        hits, done = 0, 0
        while done < permutations:
            k = min(2000, permutations - done)
            orders = np.argsort(rng.random((k, n)), axis=1)
            hits += int(np.sum(np.abs(_null_s(ranks, sx, orders)) >= abs(s)))
            done += k
        p = (1 + hits) / (1 + permutations)
    else:
        raise ValueError(f"method must be 'auto', 'exact' or 'permutation', got {method!r}")
    return KendallTau(float(tau), float(min(1.0, p)), n, tied_x, tied_y, method)


@dataclass(frozen=True)
class RankAgreement:
    """Kendall's tau over seeds (see :func:`summarize_rank_agreement`)."""

    seeds: int
    median: float
    mean: float
    ci_low: float  # t interval of the mean tau, inside [-1, 1]
    ci_high: float
    positive: int
    negative: int
    zero: int
    undefined: int  # seeds where the ordering or the values were all tied


def summarize_rank_agreement(
    taus: Sequence[float | KendallTau], confidence: float = 0.95
) -> RankAgreement:
    """Median and mean tau over seeds, the mean's t interval intersected with ``[-1, 1]``
    (:func:`mean_ci` with ``bounds=(-1, 1)``), and how many seeds have tau > 0, < 0, = 0 or
    undefined (nan; left out of the median, mean and interval)."""
    values = np.array([t.tau if isinstance(t, KendallTau) else float(t) for t in taus], dtype=float)
    defined = values[~np.isnan(values)]
    if np.any(np.abs(defined) > 1):
        raise ValueError(f"tau must lie in [-1, 1], got {values.tolist()}")
    if defined.size:
        mean, low, high = mean_ci(defined, confidence, bounds=(-1.0, 1.0))
        median = float(np.median(defined))
    else:
        mean = low = high = median = math.nan
    return RankAgreement(
        seeds=int(values.size),
        median=median,
        mean=mean,
        ci_low=low,
        ci_high=high,
        positive=int(np.sum(defined > 0)),
        negative=int(np.sum(defined < 0)),
        zero=int(np.sum(defined == 0)),
        undefined=int(values.size - defined.size),
    )


# ----------------------------------------------------------------------------- time to target


def steps_to_target(
    steps: Sequence[float],
    values: Sequence[float],
    target: float,
    larger_is_better: bool = True,
) -> float:
    """First evaluated step at which a stored validation curve reaches ``target``.

    Reached means ``value >= target`` (``<=`` when ``larger_is_better`` is False); nan values
    (diverged evaluations) never reach.  Returns nan when the curve never reaches the target:
    the time is then only known to exceed the last evaluated step.  Resolution is the
    evaluation interval; no interpolation between evaluations.
    """
    s, v = np.asarray(steps, dtype=float).ravel(), np.asarray(values, dtype=float).ravel()
    if s.shape != v.shape:
        raise ValueError(f"steps and values differ in size: {s.size} vs {v.size}")
    if not np.all(np.isfinite(s)) or np.any(np.diff(s) <= 0):
        raise ValueError("steps must be finite and strictly increasing")
    with np.errstate(invalid="ignore"):
        reached = v >= target if larger_is_better else v <= target
    reached &= ~np.isnan(v)
    if not reached.any():
        return math.nan
    return float(s[int(np.argmax(reached))])


@dataclass(frozen=True)
class TimeRatio:
    """Paired comparison of times to target (see :func:`compare_times_to_target`)."""

    ratio: float  # geometric mean of arm / baseline over the pairs used
    ci_low: float
    ci_high: float
    p: float  # two-sided paired t-test of mean log ratio = 0
    n: int  # pairs used
    arm_never: int  # pairs where only the arm never reached the target
    baseline_never: int  # pairs where only the baseline never reached it
    both_never: int  # pairs where neither did (always left out)
    log_ratios: tuple[float, ...]  # per pair used; feed to compare_family as `diff`


def compare_times_to_target(
    arm: Sequence[float],
    baseline: Sequence[float],
    confidence: float = 0.95,
    budget: float | None = None,
) -> TimeRatio:
    """Times to target (:func:`steps_to_target`; nan = never reached), paired by seed.

    Effect measure: the ratio arm / baseline on the log scale.  With ``r_i = log(arm_i /
    baseline_i)``, ``ratio = exp(mean r)`` (the geometric-mean ratio; < 1: the arm is faster),
    its interval ``exp(mean r ± t_{(1+c)/2, n-1} sd(r) / sqrt(n))`` and the paired t-test
    p-value of ``mean r = 0``.

    Never reached: pairs where neither side reached are always left out.  With ``budget=None``
    (default) pairs where one side never reached are left out too -- that is informative
    censoring, so always show the counts beside the ratio.  With ``budget`` (the training
    length), a never-reached time is set to ``budget``: a lower bound on the true time, so the
    result is a bound in favour of the side that failed to reach.  Times must be positive.
    """
    arm_a, base_a = np.asarray(arm, dtype=float).ravel(), np.asarray(baseline, dtype=float).ravel()
    if arm_a.shape != base_a.shape:
        raise ValueError(f"paired samples differ in size: {arm_a.size} vs {base_a.size}")
    if np.any(np.isinf(arm_a)) or np.any(np.isinf(base_a)):
        raise ValueError("times must be finite or nan (never reached)")
    if np.any(arm_a <= 0) or np.any(base_a <= 0):
        raise ValueError("times to target must be positive to take log ratios")
    a_never, b_never = np.isnan(arm_a), np.isnan(base_a)
    both = a_never & b_never
    if budget is not None:
        if not (math.isfinite(budget) and budget > 0):
            raise ValueError(f"budget must be positive and finite, got {budget!r}")
        arm_a = np.where(a_never, budget, arm_a)
        base_a = np.where(b_never, budget, base_a)
        use = ~both
    else:
        use = ~(a_never | b_never)
    r = np.log(arm_a[use] / base_a[use])
    if r.size:
        s = _t_sample(r)
        mean, low, high = mean_ci(r, confidence)
        p = s.p_equal()
        ratio, low, high = math.exp(mean), math.exp(low), math.exp(high)
    else:
        ratio = low = high = p = math.nan
    return TimeRatio(
        ratio=float(ratio),
        ci_low=float(low),
        ci_high=float(high),
        p=float(p),
        n=int(r.size),
        arm_never=int(np.sum(a_never & ~b_never)),
        baseline_never=int(np.sum(b_never & ~a_never)),
        both_never=int(np.sum(both)),
        log_ratios=tuple(float(v) for v in r),
    )


# ------------------------------------------------------------------------- times against depth


def geometric_mean_ci(
    values: Sequence[float], confidence: float = 0.95
) -> tuple[float, float, float]:
    """Geometric mean of positive values (times) with the t interval of :func:`mean_ci` taken
    on the log scale: ``exp(mean log v ± t s_log / sqrt(n))``.  A time that doubles counts as
    much as one that halves; the interval never leaves ``(0, inf)``."""
    x = _finite(values, "geometric_mean_ci")
    if x.size and np.any(x <= 0):
        raise ValueError(f"geometric_mean_ci needs positive values, got {x.tolist()}")
    mean, low, high = mean_ci(np.log(x), confidence)
    return math.exp(mean), math.exp(low), math.exp(high)


@dataclass(frozen=True)
class DepthTrend:
    """How convergence time grows with depth (see :func:`depth_trend`)."""

    slope: float  # ln(t) per unit of relative depth: ln(t_top / t_bottom) on the fitted line
    ci_low: float  # bootstrap percentile interval over seeds
    ci_high: float
    seeds: int
    points: int  # (seed, unit) pairs in the fit
    missing: int  # units left out because they have no time (never settled)
    per_seed: tuple[float, ...]  # the same fit within each seed (nan: one depth only)

    @property
    def fold(self) -> float:
        """``exp(slope)``: the fitted top-layer time over the bottom-layer time."""
        return math.exp(self.slope)


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Ordinary least-squares slope of ``y`` on ``x`` (nan when ``x`` is constant)."""
    dx = x - x.mean()
    den = float(dx @ dx)
    return float(dx @ (y - y.mean()) / den) if den > 0 else math.nan


def depth_trend(
    frame: pd.DataFrame,
    *,
    time: str = "step",
    depth: str = "depth",
    seed: str = "seed",
    confidence: float = 0.95,
    resamples: int = 2000,
    rng_seed: int = 0,
) -> DepthTrend:
    """Slope of log convergence time against relative depth, with a bootstrap over seeds.

    ``frame`` holds one row per (seed, unit) -- a layer or a tensor -- with its depth and time.
    Depth is made relative, ``x = (d - d_min) / (d_max - d_min)`` over the frame (0 = the
    input layer, 1 = the top), and the fit is ordinary least squares of ``ln t`` on ``x`` over
    all rows, so

        slope = sum (x_i - x̄)(ln t_i - mean ln t) / sum (x_i - x̄)^2

    is ``ln(t_top / t_bottom)`` on the fitted line: > 0 when deeper layers converge later (the
    bottom-up claim), one number per model however many layers it has, so the criterion does
    not get stricter as layers are added (requiring every pair of layers to be ordered does).

    Interval: ``resamples`` bootstrap samples of the seeds with replacement (every row of a
    drawn seed enters, so the layers of one run stay together), the pooled slope of each, and
    the percentile interval at ``confidence`` (Efron & Tibshirani 1993, ch. 13) -- deterministic
    for ``rng_seed``.  With few seeds the percentile interval is too narrow (see the module
    docstring), so read it beside ``per_seed``, the same fit within each seed.  Rows whose
    time is NaN (the unit never settled) are left out and counted in ``missing``; times must
    otherwise be positive.
    """
    for column in (time, depth, seed):
        if column not in frame:
            raise ValueError(f"frame has no {column!r} column; columns: {list(frame.columns)}")
    t = frame[time].to_numpy(dtype=float)
    if np.any(t[~np.isnan(t)] <= 0) or np.any(np.isinf(t)):
        raise ValueError(f"times must be positive and finite (nan: never), got {t.tolist()}")
    keep = ~np.isnan(t) & frame[depth].notna().to_numpy()
    rows = frame[keep]
    d = rows[depth].to_numpy(dtype=float)
    y = np.log(rows[time].to_numpy(dtype=float))
    span = d.max() - d.min() if d.size else 0.0
    x = (d - d.min()) / span if span > 0 else np.zeros_like(d)
    seeds = rows[seed].to_numpy()
    labels = list(dict.fromkeys(seeds.tolist()))
    index = {s: np.flatnonzero(seeds == s) for s in labels}
    per_seed = tuple(_slope(x[index[s]], y[index[s]]) for s in labels)
    slope = _slope(x, y) if x.size else math.nan
    low = high = math.nan
    if len(labels) >= 2 and math.isfinite(slope):
        if resamples < 1:
            raise ValueError(f"resamples must be >= 1, got {resamples!r}")
        rng = np.random.default_rng(rng_seed)
        draws = rng.integers(0, len(labels), size=(resamples, len(labels)))
        boot = np.empty(resamples)
        for b, drawn in enumerate(draws):
            idx = np.concatenate([index[labels[k]] for k in drawn])
            boot[b] = _slope(x[idx], y[idx])
        boot = boot[np.isfinite(boot)]
        if boot.size:
            tail = (1 - confidence) / 2 * 100
            low, high = (float(v) for v in np.percentile(boot, [tail, 100 - tail]))
    return DepthTrend(
        slope=float(slope),
        ci_low=low,
        ci_high=high,
        seeds=len(labels),
        points=int(x.size),
        missing=int(np.sum(~keep)),
        per_seed=per_seed,
    )
