"""Figures measured several times: the median with min and max, and side-by-side ratios."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from hardflow.errors import HardflowError


@dataclass(frozen=True)
class Stat:
    """A figure measured ``len(values)`` times (seconds, bytes, ...)."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(statistics.median(self.values))

    @property
    def min(self) -> float:
        return float(min(self.values))

    @property
    def max(self) -> float:
        return float(max(self.values))

    def to_json(self) -> dict[str, object]:
        return {
            "median": round(self.median, 3),
            "min": round(self.min, 3),
            "max": round(self.max, 3),
            "runs": [round(v, 3) for v in self.values],
        }


def stat(values: Sequence[float]) -> Stat:
    if not values:
        raise HardflowError("no measurement to summarise: every run of this figure failed")
    return Stat(tuple(float(v) for v in values))


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, or None when either side is missing or theirs is zero."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs
