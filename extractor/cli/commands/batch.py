"""``extractor batch``: a backlog through the provider's Batch API: submit, status, collect."""

from __future__ import annotations

import argparse

from extractor.cli.common import EXIT_FAILED, EXIT_OK, check_repository, print_json, start_kb, usage_error


def run_batch(args: argparse.Namespace) -> int:
    from extractor.cli.commands.lines import describe
    from extractor.core.settings import unenforceable_budget
    from extractor.kb.locks import kb_lock
    from extractor.llm.client import make_client
    from extractor.run.batch import collect, refresh, submit
    from extractor.run.scheduler import scan_inbox
    from extractor.run.service import BATCH_RUNNER, SourceService
    from extractor.store.state import open_store

    kb_root, settings = start_kb(args)
    if not settings.base_url:
        return usage_error("batch mode needs an endpoint with a Batch API: set base_url")
    if (why := unenforceable_budget(settings)) is not None:
        return usage_error(why)
    check_repository(kb_root, settings)
    client = make_client(settings)
    store = open_store(kb_root, settings)
    try:
        if args.batch_command == "submit":
            with kb_lock(kb_root, "run"):
                scan_inbox(kb_root, settings, store)
                record, budget_note = submit(kb_root, settings, store, client, args.limit)
            if args.json:
                print_json({**record.model_dump(mode="json", exclude={"items"}), "sources": len(record.items),
                            "budget": budget_note})  # fmt: skip
                return EXIT_OK
            print(f"submitted {record.id}: {len(record.items)} source(s), status {record.status}")
            if budget_note:
                print(budget_note)
        elif args.batch_command == "status":
            records = refresh(store, client)
            if args.json:
                print_json([r.model_dump(mode="json", exclude={"items"}) | {"sources": len(r.items)} for r in records])
                return EXIT_OK
            for record in records:
                print(f"{record.id}: {record.status}, {len(record.items)} source(s)")
            if not records:
                print("no batch awaits collection")
        else:
            with kb_lock(kb_root, "run"):
                service = SourceService(kb_root, settings, store, runner=BATCH_RUNNER)
                report = collect(kb_root, settings, store, client, service)
            failed = bool(report.outcomes) and all(not o.ok for o in report.outcomes)
            if args.json:
                print_json({
                    "outcomes": [o.log_line() for o in report.outcomes],
                    "requeued": report.requeued,
                    "skipped": report.skipped,
                    "waiting": report.waiting,
                })  # fmt: skip
                return EXIT_FAILED if failed else EXIT_OK
            for outcome in report.outcomes:
                print(describe(outcome, worker=True))
            for path, why in report.requeued.items():
                print(f"{path}: due again: {why}")
            for path, why in report.skipped.items():
                print(f"{path}: result not used: {why}")
            for batch_id in report.waiting:
                print(f"{batch_id}: still running")
            if failed:
                return EXIT_FAILED
    finally:
        store.close()
    return EXIT_OK
