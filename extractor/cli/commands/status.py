"""``extractor status``: what the state store knows: counts, failures and when each is retried, spending."""

from __future__ import annotations

import argparse
import time
from typing import Any

from extractor.cli.common import EXIT_OK, print_json, start_kb


def retry_note(failure: dict[str, Any], now: float) -> str:
    """When a failed source is tried again, as people say it: "retried in 4m (at 14:52)", "retried at the
    next cycle"; a parked one waits for ``extractor retry``."""
    from extractor.cli.commands.lines import age

    if failure["state"] == "parked":
        return "waits for extractor retry"
    at = failure["next_retry_at"]
    if at is None or at < now + 1:
        return "retried by the next cycle"
    clock = time.strftime("%H:%M" if at - now < 86400 else "%Y-%m-%d %H:%M", time.localtime(at))
    return f"retried in {age(at - now)} (at {clock})"


def run_status(args: argparse.Namespace) -> int:
    from extractor.core.budget import start_of_today
    from extractor.core.redact import scrub_data
    from extractor.store.state import SourceState, open_store

    kb_root, settings = start_kb(args)
    store = open_store(kb_root, settings)
    try:
        last_cycle = store.last_cycle()
        data = {
            "kb": str(kb_root),
            "counts": store.counts(),
            "recent_failures": [
                {
                    "path": r.path,
                    "state": r.state.value,
                    "attempts": r.attempts,
                    "error": r.last_error,
                    "next_retry_at": r.next_retry_at,
                }
                for r in store.recent_failures()
            ],  # fmt: skip
            "totals": store.totals(),
            "changed_after_processing": store.changed_after_processing(),
            "last_cycle": last_cycle,
            "spending": {
                "today": store.spent_since(start_of_today()),
                "budget_per_day": settings.budget_per_day,
                "budget_per_cycle": settings.budget_per_cycle,
                "stopped_by_budget": last_cycle["note"] if last_cycle and last_cycle["note"] else None,
            },
            "evidence_anchored": {  # evidence items found in their source, of all evidence items written
                "last_cycle": store.anchored_share_since(last_cycle["started_at"]) if last_cycle else None,
                "all": store.anchored_share_since(0.0),
            },
        }
    finally:
        store.close()
    data = scrub_data(data)  # rows written before errors were redacted
    if args.json:
        print_json(data)
        return EXIT_OK
    counts = ", ".join(f"{n} {state}" for state, n in sorted(data["counts"].items())) or "nothing tracked yet"
    totals = data["totals"]
    print(f"sources: {counts}")
    print(
        f"LLM: {totals['calls']} call(s), {totals['prompt_tokens']} tokens in, "
        f"{totals['completion_tokens']} out, cost {totals['cost']:.4f}"
    )
    last = data["last_cycle"]
    if last:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["started_at"]))
        print(
            f"last cycle: {when} ({last['mode']}): {last['taken']} taken, {last['done']} done, {last['failed']} failed"
        )
    spending = data["spending"]
    daily = f" of a ${spending['budget_per_day']:.2f} daily budget" if spending["budget_per_day"] is not None else ""
    print(f"spent today: ${spending['today']:.4f}{daily}")
    if spending["stopped_by_budget"]:
        print(f"  the last cycle stopped taking sources: {spending['stopped_by_budget']}")
    anchored = data["evidence_anchored"]
    if anchored["all"][1]:
        cycle = anchored["last_cycle"]
        recent = f"last cycle {cycle[0]} of {cycle[1]}, " if cycle and cycle[1] else ""
        found, items = anchored["all"]
        print(f"evidence found in its source: {recent}all {found} of {items} ({found / items:.0%})")
    now = time.time()
    for failure in data["recent_failures"]:
        if failure["state"] == SourceState.INVALID:
            print(f"  invalid: {failure['path']}: {failure['error']}")
        else:
            print(
                f"  {failure['state']} after {failure['attempts']} attempt(s), {retry_note(failure, now)}: "
                f"{failure['path']}: {failure['error']}"
            )
    for path in data["changed_after_processing"]:
        print(f"  changed after processing (not re-extracted): {path}")
    return EXIT_OK
