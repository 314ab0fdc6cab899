"""``extractor costs``: tokens and dollars of the logged LLM calls, grouped."""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from extractor.cli.common import EXIT_OK, kb_root_of, print_json, settings_for
from extractor.cli.parser import COST_GROUPS

TOP_SOURCES = 10


def cost_table(by: str, rows: list[dict[str, Any]], label: str | None = None) -> list[str]:
    """Rows as aligned text: the key, calls (cache hits), tokens in (cached) and out, dollars."""
    lines = [f"by {label or by}:"]
    for row in rows:
        unpriced = f" (+{row['unpriced_calls']} unpriced)" if row["unpriced_calls"] else ""
        lines.append(
            f"  {row[by]!s:<48} {row['calls']:>6} call(s) {row['cache_hits']:>5} cached  "
            f"{row['prompt_tokens']:>10} in ({row['cached_tokens']} cached) {row['completion_tokens']:>9} out  "
            f"${row['cost']:.4f}{unpriced}"
        )
    return lines


def run_costs(args: argparse.Namespace) -> int:
    from extractor.core.errors import ConfigurationError
    from extractor.kb.worktree import GitError
    from extractor.store.state import open_store

    try:
        kb_root = kb_root_of(args)
    except GitError as exc:
        raise ConfigurationError(str(exc)) from None
    since = datetime.datetime.combine(args.since, datetime.time()).timestamp() if args.since else None
    store = open_store(kb_root, settings_for(kb_root, args.config))
    try:
        groups = {by: store.cost_report(by, since) for by in ([args.by] if args.by else COST_GROUPS)}
        totals = store.cost_report("day", since)
        stages = {row["stage"]: row for row in store.cost_report("stage", since)}
    finally:
        store.close()
    total: dict[str, float] = {
        key: sum(int(row[key] or 0) for row in totals)
        for key in ("calls", "cache_hits", "prompt_tokens", "cached_tokens", "completion_tokens", "unpriced_calls")
    }
    total["cost"] = sum(float(row["cost"]) for row in totals)
    reviews = stages.get("review")
    total["review_cost"] = float(reviews["cost"]) if reviews else 0.0
    total["review_calls"] = int(reviews["calls"]) if reviews else 0
    if args.json:
        print_json({"since": args.since.isoformat() if args.since else None, "total": total, **groups})
        return EXIT_OK
    print(
        f"{total['calls']} call(s) ({total['cache_hits']} from the cache), {total['prompt_tokens']} tokens in, "
        f"{total['completion_tokens']} out: ${total['cost']:.4f}"
        + (f" (reviews: {total['review_calls']} call(s), ${total['review_cost']:.4f})" if reviews else "")
        + (f"; {total['unpriced_calls']} call(s) to models with no known price" if total["unpriced_calls"] else "")
    )
    for by, rows in groups.items():
        top = not args.by and by == "source"  # all sources only when asked for
        label = f"source (top {TOP_SOURCES})" if top else None
        print("\n".join(cost_table(by, rows[:TOP_SOURCES] if top else rows, label)))
    return EXIT_OK
