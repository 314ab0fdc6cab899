"""Budgets: whether one more priced piece of work (a source, a review) fits the cycle's and the day's limits.
Pure: the caller says what was spent."""

from __future__ import annotations

import datetime
import time

from extractor.core.settings import Settings


def start_of_today(now: float | None = None) -> float:
    """Local midnight: the daily budget's day is the calendar day where the KB runs."""
    today = datetime.datetime.fromtimestamp(now if now is not None else time.time()).date()
    return datetime.datetime.combine(today, datetime.time()).timestamp()


def over_budget(
    settings: Settings, spent_cycle: float, spent_today: float, per_source: float, in_flight: int = 0,
    what: str = "source(s)",
) -> str | None:  # fmt: skip
    """Why one more source would break a budget, or None when it fits.

    Sources in flight have not reported their cost yet: each is counted at the
    estimate, like the next one.
    """
    next_source = per_source * (in_flight + 1)
    if settings.budget_per_cycle is not None and spent_cycle + next_source > settings.budget_per_cycle:
        return (
            f"cycle budget ${settings.budget_per_cycle:.2f} reached (${spent_cycle:.4f} spent, "
            f"next {what} about ${next_source:.4f})"
        )
    if settings.budget_per_day is not None and spent_today + next_source > settings.budget_per_day:
        return (
            f"daily budget ${settings.budget_per_day:.2f} reached (${spent_today:.4f} spent today, "
            f"next {what} about ${next_source:.4f}); the rest waits for tomorrow"
        )
    return None
