"""Proportions with 95 % Wilson score intervals: a committee compares topics with a handful of
answered cards to topics with thousands, and the normal approximation's interval is wrong
(it can leave [0, 1]) exactly where the counts are small."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95 %


@dataclass(frozen=True)
class Rate:
    """``successes`` of ``trials`` with its 95 % Wilson interval; no trials, no rate."""

    successes: int
    trials: int

    @property
    def value(self) -> float | None:
        return self.successes / self.trials if self.trials else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson(self.successes, self.trials)


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion (Wilson 1927; Brown, Cai and DasGupta
    2001 recommend it for small n)."""
    if trials <= 0:
        return None
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)
