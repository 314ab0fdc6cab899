"""``extractor ingest``: papers, pages and feeds into the inbox, one line per item."""

from __future__ import annotations

import argparse
import sys

from extractor.cli.common import EXIT_FAILED, EXIT_OK, print_json, start_kb


def run_ingest(args: argparse.Namespace) -> int:
    from extractor.ingest.service import Ingester, IngestOptions
    from extractor.run.queue import domain_chooser
    from extractor.store.state import open_store

    kb_root, settings = start_kb(args)
    tags = [tag.strip() for value in args.tags for tag in value.split(",") if tag.strip()]
    options = IngestOptions(domain=args.domain, format=args.format, tags=tags, commit=args.commit_to)
    store = open_store(kb_root, settings)
    chooser = None if args.domain else domain_chooser(kb_root, settings, store)
    ingester = Ingester(kb_root, settings, store, llm=chooser)
    try:
        report = ingester.ingest(args.items, options)
    finally:
        ingester.close()
        store.close()
    code = EXIT_FAILED if report.failed or report.note else EXIT_OK
    if args.json:
        print_json(report.model_dump())
        return code
    for outcome in report.outcomes:
        if outcome.path is not None:
            chosen = f", chosen by {outcome.domain_chosen_by}" if outcome.domain_chosen_by else ""
            print(f"added {outcome.path}  ({outcome.domain}{chosen}; from {outcome.label})")
        elif outcome.duplicate_of is not None and outcome.error is None:
            print(f"skipped {outcome.label}: already in the inbox as {outcome.duplicate_of}")
        elif outcome.error is not None:
            print(f"extractor: {outcome.error}", file=sys.stderr)
    if not report.outcomes:
        print("nothing new: every entry of the feed(s) was ingested before")
    if report.commit:
        where = report.branch or settings.main_branch
        print(f"committed {len(report.added)} source(s) on {where} ({report.commit[:10]})")
    elif report.added:
        print(f"wrote {len(report.added)} source(s), not committed")
    return code
