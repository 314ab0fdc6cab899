"""``extractor retry``: failed or parked sources due now, with their attempts counted afresh."""

from __future__ import annotations

import argparse
import sys

from extractor.cli.common import EXIT_FAILED, EXIT_OK, print_json, start_kb, usage_error


def run_retry(args: argparse.Namespace) -> int:
    from extractor.cli.commands.selection import source_patterns
    from extractor.run.scheduler import matches_any
    from extractor.store.state import SourceState, open_store

    if not (args.sources or args.failed or args.parked):
        return usage_error("name the sources to retry, or --failed, or --parked")
    kb_root, settings = start_kb(args)
    patterns = source_patterns(kb_root, args.sources) if args.sources else None
    states = {SourceState.FAILED, SourceState.PARKED} if patterns else set()
    states |= {SourceState.FAILED} if args.failed else set()
    states |= {SourceState.PARKED} if args.parked else set()
    store = open_store(kb_root, settings)
    try:
        rows = [
            row
            for row in store.all_sources().values()
            if row.state in states and (patterns is None or matches_any(row.path, patterns))
        ]
        for row in rows:
            store.update(row.path, state=SourceState.DUE, attempts=0, next_retry_at=None)
        unmatched = [p for p in patterns or [] if not any(matches_any(row.path, [p]) for row in rows)]
    finally:
        store.close()
    retried = sorted(row.path for row in rows)
    code = EXIT_FAILED if unmatched and not retried else EXIT_OK
    if args.json:
        print_json({"retried": retried, "unmatched": unmatched})
        return code
    for path in retried:
        print(f"due now: {path}")
    for pattern in unmatched:
        print(f"extractor: {pattern}: no failed or parked source matches (see extractor status)", file=sys.stderr)
    print(f"{len(retried)} source(s) due again, with their attempts counted afresh: they join the due sources "
          "(extractor run --once SOURCE... takes just those)")  # fmt: skip
    return code
