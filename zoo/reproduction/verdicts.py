"""Three-way verdicts for a paper's claims on our numbers: holds, inconclusive, does not hold.

A claim compares two quantities (run means over seeds, or a run against a constant the paper derives). The direction
alone is not a verdict: a difference inside the seeds' uncertainty is **inconclusive**. The test is the two-sided 95 %
confidence interval of the difference of means:

- both sides with n >= 2 seeds: Welch's t interval (unequal variances, Welch-Satterthwaite degrees of freedom);
- one side a single seed (or a constant): the other side's seeds give the spread, and the single value is treated as
  one more draw (prediction interval, s * sqrt(1/n + 1), n - 1 degrees of freedom; a constant adds no draw);
- both sides single seeds: the recorded estimator errors where the protocol gives them (e.g. the standard error of a
  test-set mean, a Monte-Carlo standard error) with a normal interval; without them only the direction is known.
  Either way the verdict is marked "one seed": seed-to-seed variation is not measured.

The claim **holds** when the interval lies wholly on the claimed side of zero, **does not hold** when it lies wholly
on the other side, and is **inconclusive** otherwise. Ties asked with <= / >= hold when the interval straddles zero.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

HOLDS, INCONCLUSIVE, FAILS = "holds", "inconclusive", "does not hold"
LEVEL = 0.95


@dataclass(frozen=True)
class Sample:
    """One side of a comparison: per-seed values, or a constant (`constant=True`, one value, no uncertainty), with an
    optional estimator standard error for a single-seed value."""

    values: tuple[float, ...]
    constant: bool = False
    stderr: float | None = None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def var(self) -> float | None:
        return statistics.variance(self.values) if self.n > 1 else None


@dataclass(frozen=True)
class Verdict:
    """holds / inconclusive / does not hold, how it was decided, and whether only one seed stands behind it."""

    kind: str
    detail: str
    one_seed: bool = False

    def __str__(self) -> str:
        return self.kind + (" (one seed)" if self.one_seed else "")


@dataclass(frozen=True)
class Interval:
    """The difference lhs - rhs with its confidence interval and how it was made."""

    diff: float
    low: float
    high: float
    method: str  # e.g. "Welch's t, df 3.2, n = 3 vs 3"


def _t_quantile(df: float) -> float:
    from scipy.stats import t
    return float(t.ppf(0.5 + LEVEL / 2, df))


def difference_interval(lhs: Sample, rhs: Sample) -> Interval | None:
    """The 95 % interval of mean(lhs) - mean(rhs), or None when nothing measures its uncertainty."""
    diff = lhs.mean - rhs.mean
    if lhs.n > 1 and rhs.n > 1:  # Welch
        a, b = lhs.var / lhs.n, rhs.var / rhs.n
        se = math.sqrt(a + b)
        if se == 0:
            return Interval(diff, diff, diff, f"Welch's t, identical seeds, n = {lhs.n} vs {rhs.n}")
        df = (a + b) ** 2 / (a ** 2 / (lhs.n - 1) + b ** 2 / (rhs.n - 1))
        half = _t_quantile(df) * se
        return Interval(diff, diff - half, diff + half, f"Welch's t, df {df:.1f}, n = {lhs.n} vs {rhs.n}")
    many, one = (lhs, rhs) if lhs.n > 1 else (rhs, lhs) if rhs.n > 1 else (None, None)
    if many is not None:  # the seeds of one side give the spread; a single seed is one more draw from it
        s = math.sqrt(many.var)
        se = s * math.sqrt(1 / many.n + (0 if one.constant else 1))
        half = _t_quantile(many.n - 1) * se
        kind = "against a constant" if one.constant else "against one seed (prediction interval)"
        return Interval(diff, diff - half, diff + half, f"t {kind}, df {many.n - 1}, n = {lhs.n} vs {rhs.n}")
    errors = [x.stderr for x in (lhs, rhs) if not x.constant]
    if errors and all(e is not None for e in errors):
        from scipy.stats import norm
        half = float(norm.ppf(0.5 + LEVEL / 2)) * math.sqrt(sum(e ** 2 for e in errors))
        return Interval(diff, diff - half, diff + half, "one seed: estimator standard errors only, normal interval")
    return None


def verdict(lhs: Sample, op: str, rhs: Sample) -> Verdict:
    """The verdict on `lhs op rhs`, op one of < > <= >=."""
    one_seed = lhs.n <= 1 and rhs.n <= 1
    interval = difference_interval(lhs, rhs)
    if interval is None:  # single values without errors: the direction is all there is
        ok = {"<": lhs.mean < rhs.mean, ">": lhs.mean > rhs.mean, "<=": lhs.mean <= rhs.mean,
              ">=": lhs.mean >= rhs.mean}[op]
        return Verdict(HOLDS if ok else FAILS, f"difference {lhs.mean - rhs.mean:+.3g}; no seed spread and no "
                       f"estimator error: the direction only", one_seed=True)
    below, above = interval.high < 0, interval.low > 0  # wholly below / above zero
    shown = f"difference {interval.diff:+.3g}, 95 % CI [{interval.low:+.3g}, {interval.high:+.3g}] ({interval.method})"
    if op in ("<", "<="):
        good, bad = below, above
    else:
        good, bad = above, below
    if good:
        return Verdict(HOLDS, shown, one_seed)
    if bad:
        return Verdict(FAILS, shown, one_seed)
    if op in ("<=", ">=") and interval.low <= 0 <= interval.high:
        return Verdict(HOLDS, shown + "; equality is allowed and not excluded", one_seed)
    return Verdict(INCONCLUSIVE, shown + "; the interval contains 0", one_seed)


def trend_verdict(samples: list[Sample], increasing: bool) -> Verdict:
    """A monotone trend over runs: holds when every neighbouring step is significant in the claimed direction,
    does not hold when any step is significant against it, inconclusive otherwise."""
    steps = [verdict(a, "<" if increasing else ">", b) for a, b in zip(samples, samples[1:])]
    detail = "; ".join(f"step {i + 1}: {v.kind} ({v.detail})" for i, v in enumerate(steps))
    kinds = [v.kind for v in steps]
    kind = FAILS if FAILS in kinds else HOLDS if all(k == HOLDS for k in kinds) else INCONCLUSIVE
    return Verdict(kind, detail, one_seed=any(v.one_seed for v in steps))
