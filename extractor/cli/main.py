"""The ``extractor`` command."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from tqdm import tqdm

from extractor import __version__
from extractor.cli import evaluation
from extractor.cli.demo import closing_summary, create_demo_kb, report, sample_summary
from extractor.cli.output import configure_json_logging, is_interactive
from extractor.core.budget import start_of_today
from extractor.core.errors import ExtractorError
from extractor.core.records import OutcomeKind, SourceOutcome
from extractor.core.redact import register_settings, scrub, scrub_data
from extractor.core.settings import Settings, SettingsError, load_settings, unenforceable_budget
from extractor.kb.gitrepo import GitError, head, toplevel, work_tree_root
from extractor.kb.locks import LockHeldError, kb_lock
from extractor.kb.sources import SourceError, check_source_file
from extractor.llm.client import StructuredClient, make_client
from extractor.llm.endpoint import llm_endpoint
from extractor.llm.ratelimit import SharedLimits
from extractor.review import branches as review
from extractor.review import decide
from extractor.review.lint import lint
from extractor.review.provenance import claim_provenance
from extractor.run.batch import collect, refresh, submit
from extractor.run.scheduler import CycleReport, Runner, run_daemon, scan_inbox
from extractor.run.service import BATCH_RUNNER, MANUAL_RUNNER, SourceService
from extractor.run.workers import WorkerPool
from extractor.store.state import SourceState, StateStore

EXIT_OK = 0
EXIT_FAILED = 1  # some sources failed
EXIT_CANNOT_START = 2  # bad settings, no KB, another run holds the lock
EXIT_INTERRUPTED = 130


KB_HELP = "KB root: the top of its git work tree (default: the work tree holding the current folder)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="extractor", description="Draft claims from sources into a git knowledge base."
    )
    parser.add_argument("--version", action="version", version=f"extractor {__version__}")
    parser.add_argument("--config", type=Path, help="settings file (default: <KB>/extractor.toml)")
    commands = parser.add_subparsers(dest="command", required=True)

    extract = commands.add_parser("extract", help="extract claims from one source by hand")
    extract.add_argument("path", type=Path, help="the source file, inside a KB's git work tree")
    extract.add_argument("--force", action="store_true", help="re-extract a processed source, replacing its drafts")
    extract.add_argument("--dry-run", action="store_true", help="print the drafts; write nothing")
    extract.add_argument("--worker", type=int, default=1, help="worker number for provenance (default 1)")
    extract.add_argument("--kb", type=Path, help="KB root: the top of a git work tree (default: the one holding PATH)")
    extract.add_argument("--no-cache", action="store_true", help="ask the model even if the answer is cached")

    run = commands.add_parser("run", help="poll the inbox and extract due sources (daemon), or one cycle")
    run.add_argument("--once", action="store_true", help="one cycle, then exit (for cron)")
    run.add_argument("--kb", type=Path, help=KB_HELP)
    run.add_argument("--workers", type=int, help="worker processes (default: the workers setting)")
    run.add_argument("--force", action="store_true", help="also retry sources parked after repeated failures")
    run.add_argument("--no-cache", action="store_true", help="ask the model even where an answer is cached")

    status = commands.add_parser("status", help="what the state store knows: counts, failures, tokens")
    status.add_argument("--kb", type=Path, help=KB_HELP)
    status.add_argument("--json", action="store_true", help="machine-readable output")

    costs = commands.add_parser("costs", help="tokens and cost of the LLM calls, by day, model, agent and source")
    costs.add_argument("--kb", type=Path, help=KB_HELP)
    costs.add_argument("--by", choices=COST_GROUPS, help="one grouping, every row (default: all, top sources)")
    costs.add_argument("--since", type=datetime.date.fromisoformat, help="from this local date (YYYY-MM-DD)")
    costs.add_argument("--json", action="store_true", help="machine-readable output")

    batch = commands.add_parser("batch", help="extract a backlog through the provider's Batch API, at its price")
    batch_commands = batch.add_subparsers(dest="batch_command", required=True)
    submit = batch_commands.add_parser("submit", help="send due sources as one batch job")
    submit.add_argument("--limit", type=int, default=1000, help="at most this many sources (default 1000)")
    batch_status = batch_commands.add_parser("status", help="the batches not yet collected, as the provider sees them")
    batch_status.add_argument("--json", action="store_true", help="machine-readable output")
    batch_commands.add_parser("collect", help="write the results of finished batches; failed items are due again")
    for sub in batch_commands.choices.values():
        sub.add_argument("--kb", type=Path, help=KB_HELP)

    validate = commands.add_parser("validate", help="check stored claim and source files against the gates")
    validate.add_argument("paths", type=Path, nargs="*", help="files or folders (default: the whole KB)")
    validate.add_argument("--kb", type=Path, help=KB_HELP)
    validate.add_argument("--fix-links", action="store_true", help="unlink wiki links that resolve to no note")

    review = commands.add_parser("review", help="extraction branches awaiting review")
    review.add_argument("--kb", type=Path, help=KB_HELP)
    actions = review.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="pending extraction branches")
    listing.add_argument("--json", action="store_true")
    chosen = listing.add_mutually_exclusive_group()
    chosen.add_argument("--approved", action="store_true", help="only branches every reviewer approved")
    chosen.add_argument("--changes", action="store_true",
                        help="only branches a reviewer asked to change or rejected")  # fmt: skip
    showing = actions.add_parser("show", help="the drafts of one branch")
    showing.add_argument("slug")
    showing.add_argument("--html", action="store_true",
                         help="a self-contained HTML page: the source with each evidence span highlighted, "
                              "the claims with their gates, enrichments as diffs, provenance")  # fmt: skip
    showing.add_argument("--json", action="store_true",
                         help="the branch and each claim's flags: [{gate, where, text, reason}]")  # fmt: skip
    showing.add_argument("--output", type=Path, metavar="FILE", help="write to FILE (default: stdout)")
    serving = actions.add_parser("serve", help="serve the review pages on 127.0.0.1 until Ctrl-C")
    serving.add_argument("slug", nargs="?", help="also print the address of this branch's page")
    serving.add_argument("--port", type=int, default=0, help="port (default 0: a free one; the address is printed)")
    accepting = actions.add_parser("accept", help="merge branches into the main branch")
    accepting.add_argument("slugs", nargs="+")
    rejecting = actions.add_parser("reject", help="delete a branch and record why on the source")
    rejecting.add_argument("slug")
    rejecting.add_argument("--reason", help="why the drafts are rejected (recorded on the source)")
    rejecting.add_argument("--retry", action="store_true", help="instead make the source due again")

    provenance = commands.add_parser("provenance", help="who and what made a claim file")
    provenance.add_argument("path", type=Path)
    provenance.add_argument("--json", action="store_true")

    demo = commands.add_parser("demo", help="build a demo KB from the samples and run one cycle on it")
    demo.add_argument("--dir", type=Path, default=Path("build/demo-kb"), help="where (default build/demo-kb)")
    evaluation.add_parser(commands)
    return parser


def fail(message: str, code: int = EXIT_FAILED) -> int:
    print(scrub(f"extractor: {' '.join(message.split())}"), file=sys.stderr)
    return code


def settings_for(kb_root: Path, config: Path | None, **overrides: object) -> Settings:
    """The KB's settings; their secrets are made known to the redaction of everything printed or stored."""
    settings = load_settings(kb_root, config, **overrides)
    register_settings(settings)
    return settings


def client_for(kb_root: Path, settings: Settings, cache: StateStore | None = None) -> StructuredClient:
    return StructuredClient(make_client(settings), settings, cache=cache, limits=SharedLimits(kb_root, settings))


def describe(outcome: SourceOutcome, worker: bool = False) -> str:
    """One line per source; a run names the worker, ``extract`` the branch and what the writer decided."""
    by = f" (worker {outcome.worker})" if worker else ""
    if not outcome.ok:
        return scrub(f"{outcome.source_path}: {outcome.kind.value}{by}: {outcome.error}")
    commit = (outcome.commit or "(dry run)")[:12]
    where = f" on {outcome.branch}" if outcome.branch and not worker else ""
    entities = (
        f", {len(outcome.entities_created)} entity note(s) new, {len(outcome.entities_updated)} updated"
        if outcome.entities_created or outcome.entities_updated
        else ""
    )
    reviewed = f"; review: {outcome.review_verdict}" if outcome.review_verdict else ""
    if outcome.accepted is not None:
        reviewed += f", accepted into the main branch ({outcome.accepted[:12]})"
    notes = [*outcome.notes, *(f"review: {note}" for note in outcome.review_notes)]
    return (
        f"{commit}{where} {outcome.source_path}: {outcome.kind.value}, "
        f"{len(outcome.claims)} claim(s), {len(outcome.enrichments)} enrichment(s){entities}{by}; "
        f"{outcome.usage.prompt_tokens}+{outcome.usage.completion_tokens} tokens, {outcome.seconds:.1f}s{reviewed}"
    ) + ("" if worker else "".join(f"\n  {note}" for note in notes))


def print_dry_run(outcome: SourceOutcome) -> None:
    print(outcome.message)
    for change in outcome.changes:
        print(f"==> {change.path} ({'delete' if change.text is None else 'write'})")
        if change.text is not None:
            print(change.text)


def run_extract(args: argparse.Namespace) -> int:
    path: Path = args.path
    if args.worker < 1:
        return fail("--worker must be 1 or more", EXIT_CANNOT_START)
    if not os.path.lexists(path):
        return fail(f"{path}: no such file")
    try:
        check_source_file(path)  # before anything follows a link to find the KB
        kb_root = work_tree_root(args.kb, exact=True) if args.kb else toplevel(path).resolve()
        settings = settings_for(kb_root, args.config, **({"cache": False} if args.no_cache else {}))
        check_source_file(path, settings.max_source_bytes)
    except ExtractorError as exc:
        return fail(str(exc), EXIT_FAILED if isinstance(exc, SourceError) else EXIT_CANNOT_START)
    store = StateStore.open(kb_root)
    try:
        bar = tqdm(total=1, desc=f"extracting {path.name}", disable=not is_interactive(), file=sys.stderr)
        with bar, llm_endpoint(settings) as live:
            service = SourceService(kb_root, live, store, runner=MANUAL_RUNNER, count_failures=False)
            outcome = service.process(path, client_for(kb_root, live, cache=store), worker=args.worker,
                                      force=args.force, dry_run=args.dry_run)  # fmt: skip
            bar.update(1)
    finally:
        store.close()
    if not outcome.ok:
        return fail(f"{outcome.source_path}: {outcome.error}")
    if outcome.kind is OutcomeKind.PLANNED:
        print_dry_run(outcome)
        return EXIT_OK
    if outcome.publish_error is not None:
        print(scrub(f"extractor: {outcome.publish_error} (will be retried by the next cycle)"), file=sys.stderr)
    elif outcome.published is not None:
        print(f"published {outcome.branch}" + (f": {outcome.published}" if outcome.published else ""))
    print(describe(outcome))
    for change in outcome.changes:
        print(f"  {'deleted' if change.text is None else 'wrote'} {change.path}")
    return EXIT_OK


def summary(report: CycleReport) -> str:
    failed = len(report.failed)
    text = f"cycle: {report.taken} source(s), {len(report.outcomes) - failed} done, {failed} failed"
    if report.scan.changed_after_processing:
        text += f"; {len(report.scan.changed_after_processing)} changed after processing (not re-extracted)"
    if report.scan.invalid:
        text += f"; {len(report.scan.invalid)} unreadable source file(s)"
    if report.budget:
        text += f"; stopped taking sources: {report.budget}"
    return text


def one_cycle(kb_root: Path, settings: Settings, force: bool, mode: str, interactive: bool) -> CycleReport:
    """Lock, start the endpoint and the workers, run one cycle, and record it."""
    logger = None if interactive else configure_json_logging()
    with kb_lock(kb_root, "run"), llm_endpoint(settings) as live:
        store = StateStore.open(kb_root)
        pool = WorkerPool(live.workers, kb_root, live)
        bar = tqdm(desc="extracting", unit="source", disable=not interactive, file=sys.stderr)

        def on_outcome(outcome: SourceOutcome) -> None:
            if logger is not None:
                logger.info("source", extra=outcome.log_line())
            else:
                bar.write(describe(outcome, worker=True))
            bar.update(1)

        runner = Runner(kb_root, live, pool, store, on_outcome=on_outcome)
        cycle_id = store.start_cycle(mode)
        previous = graceful_stop(runner, logger)
        try:
            report = runner.cycle(force_parked=force, on_start=lambda n: bar.reset(total=n))
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            bar.close()
            pool.close()
        store.finish_cycle(
            cycle_id, report.taken, len(report.outcomes) - len(report.failed), len(report.failed), note=report.budget
        )
        store.close()
    for note in report.recovered:
        (logger.info("recovered", extra={"note": note}) if logger else print(note))
    if logger is not None:
        logger.info("cycle", extra={"summary": summary(report), **report.model_dump(exclude={"outcomes"})})
    return report


def graceful_stop(runner: Runner, logger: object | None) -> dict[signal.Signals, Any]:
    """First SIGTERM or Ctrl-C: take no new work, finish in-flight sources; a second one: leave now."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}

    def stop(signum: int, frame: object) -> None:
        if runner.stop.is_set():
            raise KeyboardInterrupt
        runner.stop.set()
        message = f"stopping after in-flight sources (up to {runner.settings.shutdown_grace:.0f}s)"
        if logger is not None:
            logger.info("stopping", extra={"signal": signal.Signals(signum).name})  # type: ignore[attr-defined]
        else:
            print(message, file=sys.stderr)

    for signum in previous:
        signal.signal(signum, stop)
    return previous


def kb_root_of(args: argparse.Namespace) -> Path:
    """The KB ``--kb`` names (which must be a work tree's top), else the work tree holding the current folder."""
    return work_tree_root(args.kb or Path("."), exact=args.kb is not None)


def start_kb(args: argparse.Namespace) -> tuple[Path, Settings]:
    """The KB named by ``--kb`` and its settings (``--workers`` applied where the command has it)."""
    kb_root = kb_root_of(args)
    overrides: dict[str, object] = {"workers": args.workers} if getattr(args, "workers", None) else {}
    if getattr(args, "no_cache", False):
        overrides["cache"] = False
    return kb_root, settings_for(kb_root, args.config, **overrides)


def run_run(args: argparse.Namespace) -> int:
    try:
        kb_root, settings = start_kb(args)
    except (GitError, SettingsError) as exc:
        return fail(str(exc), EXIT_CANNOT_START)
    if args.workers is not None and args.workers < 1:
        return fail("--workers must be 1 or more", EXIT_CANNOT_START)
    if (why := unenforceable_budget(settings)) is not None:
        return fail(why, EXIT_CANNOT_START)
    try:
        if args.once:
            interactive = is_interactive()
            report = one_cycle(kb_root, settings, args.force, "once", interactive)
            if interactive:
                print(summary(report))
            return EXIT_FAILED if report.failed else EXIT_OK
        return daemon(kb_root, settings)
    except LockHeldError as exc:
        return fail(str(exc), EXIT_CANNOT_START)


def daemon(kb_root: Path, settings: Settings) -> int:
    """Poll until SIGTERM or Ctrl-C, then let in-flight sources finish within the grace period."""
    logger = configure_json_logging()
    with kb_lock(kb_root, "run"), llm_endpoint(settings) as live:
        store = StateStore.open(kb_root)
        pool = WorkerPool(live.workers, kb_root, live)
        runner = Runner(kb_root, live, pool, store, on_outcome=lambda o: logger.info("source", extra=o.log_line()))

        graceful_stop(runner, logger)

        def on_cycle(report: CycleReport) -> None:
            logger.info("cycle", extra={"summary": summary(report), **report.model_dump(exclude={"outcomes"})})

        def cycle_recorded() -> None:
            cycle_id = store.start_cycle("daemon")
            report = runner.cycle()
            store.finish_cycle(
                cycle_id,
                report.taken,
                len(report.outcomes) - len(report.failed),
                len(report.failed),
                note=report.budget,
            )
            on_cycle(report)

        logger.info("started", extra={"kb": str(kb_root), "workers": live.workers, "model": live.model,
                                      "poll_minutes": live.poll_minutes})  # fmt: skip
        try:
            run_daemon(runner, live, cycle_recorded)
        finally:
            pool.close()
            store.close()
        logger.info("stopped")
    return EXIT_OK


def run_status(args: argparse.Namespace) -> int:
    try:
        kb_root, settings = start_kb(args)
    except (GitError, SettingsError) as exc:
        return fail(str(exc), EXIT_CANNOT_START)
    store = StateStore.open(kb_root)
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
        print(json.dumps(data))
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
    for failure in data["recent_failures"]:
        if failure["state"] == SourceState.INVALID:
            print(f"  invalid: {failure['path']}: {failure['error']}")
        else:
            print(f"  {failure['state']} after {failure['attempts']} attempt(s): {failure['path']}: {failure['error']}")
    for path in data["changed_after_processing"]:
        print(f"  changed after processing (not re-extracted): {path}")
    return EXIT_OK


COST_GROUPS = ("day", "stage", "model", "agent", "source")
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
    try:
        kb_root = kb_root_of(args)
    except GitError as exc:
        return fail(str(exc), EXIT_CANNOT_START)
    since = datetime.datetime.combine(args.since, datetime.time()).timestamp() if args.since else None
    store = StateStore.open(kb_root)
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
        print(json.dumps({"since": args.since.isoformat() if args.since else None, "total": total, **groups}))
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


def run_batch(args: argparse.Namespace) -> int:
    try:
        kb_root, settings = start_kb(args)
    except (GitError, SettingsError) as exc:
        return fail(str(exc), EXIT_CANNOT_START)
    if not settings.base_url:
        return fail("batch mode needs an endpoint with a Batch API: set base_url", EXIT_CANNOT_START)
    if (why := unenforceable_budget(settings)) is not None:
        return fail(why, EXIT_CANNOT_START)
    client = make_client(settings)
    store = StateStore.open(kb_root)
    try:
        if args.batch_command == "submit":
            with kb_lock(kb_root, "run"):
                scan_inbox(kb_root, settings, store)
                record, budget_note = submit(kb_root, settings, store, client, args.limit)
            print(f"submitted {record.id}: {len(record.items)} source(s), status {record.status}")
            if budget_note:
                print(budget_note)
        elif args.batch_command == "status":
            records = refresh(store, client)
            if args.json:
                print(json.dumps([r.model_dump(exclude={"items"}) | {"sources": len(r.items)} for r in records]))
            for record in [] if args.json else records:
                print(f"{record.id}: {record.status}, {len(record.items)} source(s)")
            if not records and not args.json:
                print("no batch awaits collection")
        else:
            with kb_lock(kb_root, "run"):
                service = SourceService(kb_root, settings, store, runner=BATCH_RUNNER)
                report = collect(kb_root, settings, store, client, service)
            for outcome in report.outcomes:
                print(describe(outcome, worker=True))
            for path, why in report.requeued.items():
                print(f"{path}: due again: {why}")
            for path, why in report.skipped.items():
                print(f"{path}: result not used: {why}")
            for batch_id in report.waiting:
                print(f"{batch_id}: still running")
            if report.outcomes and all(not o.ok for o in report.outcomes):
                return EXIT_FAILED
    except LockHeldError as exc:
        return fail(str(exc), EXIT_CANNOT_START)
    except ExtractorError as exc:
        return fail(str(exc))
    finally:
        store.close()
    return EXIT_OK


def run_validate(args: argparse.Namespace) -> int:
    try:
        kb_root, settings = start_kb(args)
    except (GitError, SettingsError) as exc:
        return fail(str(exc), EXIT_CANNOT_START)
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        return fail(f"{missing[0]}: no such file or folder", EXIT_CANNOT_START)
    outside = [p for p in args.paths if not p.resolve().is_relative_to(kb_root.resolve())]
    if outside:
        return fail(f"{outside[0]}: not inside the KB at {kb_root} (name the KB with --kb)", EXIT_CANNOT_START)
    result = lint(kb_root, settings, [p.resolve() for p in args.paths] or None, fix_links=args.fix_links)
    for problem in result.problems:
        print(problem)
    for path, count in sorted(result.links_unlinked.items()):
        print(f"{path}: unlinked {count} wiki link(s)")
    totals = ", ".join(f"{n} {check}" for check, n in sorted(result.totals().items())) or "none"
    print(
        f"checked {result.files} file(s): {result.claims} claim(s), {result.sources} source(s), "
        f"{result.entities} entity note(s); "
        f"{len(result.problems)} problem(s): {totals}"
        + (f"; unlinked {sum(result.links_unlinked.values())} link(s)" if args.fix_links else "")
    )
    return EXIT_FAILED if result.problems else EXIT_OK


def age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def run_review(args: argparse.Namespace) -> int:
    try:
        kb_root, settings = start_kb(args)
    except (GitError, SettingsError) as exc:
        return fail(str(exc), EXIT_CANNOT_START)
    try:
        if args.action == "list":
            items = review.pending(kb_root, settings)
            verdicts = review.verdicts_of(kb_root, items, settings)
            if args.approved or args.changes:
                wanted = {"approved"} if args.approved else {"changes", "rejected"}
                items = [item for item in items if verdicts[item.branch] in wanted]
            if args.json:
                print(json.dumps([{**item.model_dump(), "verdict": verdicts[item.branch]} for item in items]))
                return EXIT_OK
            reviewing = settings.review_model is not None or any(v != "unreviewed" for v in verdicts.values())
            for item in items:
                verdict = f"{verdicts[item.branch]:<10}  " if reviewing else ""  # no column without a reviewer
                print(
                    f"{item.slug}  {verdict}{item.source}  {item.agent} (worker {item.worker}) "
                    f"{item.model}  "
                    f"{len(item.claims)} claim(s), {len(item.enrichments)} enrichment(s), "
                    f"{len(item.entities_created) + len(item.entities_updated)} entity note(s), "
                    f"{len(item.warnings)} warning(s), {age(item.age_seconds)} old"
                )
            print(f"{len(items)} extraction(s) awaiting review")
        elif args.action == "show":
            if args.html:
                from extractor.review import page as reviewpage  # Jinja2 is loaded only for the page

                text = reviewpage.render_page(reviewpage.gather(kb_root, args.slug, settings))
            elif args.json:
                text = review.show_data(kb_root, args.slug, settings).model_dump_json() + "\n"
            else:
                text = review.show(kb_root, args.slug, settings)
            if args.output is None:
                print(text, end="")
            else:
                try:
                    args.output.write_text(text, encoding="utf-8")
                except OSError as exc:
                    return fail(f"{args.output}: cannot write: {exc.strerror or exc}")
        elif args.action == "serve":
            from extractor.review import serve as reviewserve

            if not 0 <= args.port <= 65535:
                return fail("--port must be 0 to 65535", EXIT_CANNOT_START)
            if args.slug:
                review.describe_branch(kb_root, review.branch_for(args.slug), settings)  # an unknown slug fails now
            try:
                reviewserve.serve(kb_root, settings, args.port, args.slug)
            except OSError as exc:
                return fail(f"cannot serve on 127.0.0.1:{args.port}: {exc.strerror or exc}", EXIT_CANNOT_START)
        elif args.action == "accept":
            for slug in args.slugs:
                decision = decide.accept_branch(kb_root, slug, settings)
                print(f"accepted {decision.branch} into {settings.main_branch} ({(decision.commit or '')[:12]})")
        elif args.action == "reject":
            decision = decide.reject_branch(kb_root, args.slug, settings, args.reason, args.retry)
            print(f"deleted {decision.branch}; " + ("the source is due again" if args.retry else
                  f"rejection recorded on {decision.source} ({(decision.commit or '')[:12]})"))  # fmt: skip
    except ExtractorError as exc:
        return fail(str(exc))
    return EXIT_OK


def run_provenance(args: argparse.Namespace) -> int:
    path: Path = args.path
    try:
        kb_root = toplevel(path if path.exists() else Path(".")).resolve()
        rel = (path.resolve() if path.exists() else (kb_root / path)).relative_to(kb_root).as_posix()
        settings = settings_for(kb_root, args.config)
    except (GitError, SettingsError, ValueError) as exc:
        return fail(f"{path}: {exc}", EXIT_CANNOT_START)
    try:
        record = claim_provenance(kb_root, rel, settings)
    except ExtractorError as exc:
        return fail(str(exc))
    if args.json:
        print(record.model_dump_json())
    else:
        for key, value in record.model_dump().items():
            print(f"{key}: {value}")
    return EXIT_OK


def run_demo(args: argparse.Namespace) -> int:
    target = args.dir.resolve()
    try:
        kb_root = create_demo_kb(target)
        settings = settings_for(kb_root, args.config)
    except (ExtractorError, OSError) as exc:
        return fail(str(exc), EXIT_CANNOT_START)
    start = head(kb_root)
    assert start is not None
    print(f"demo knowledge base: {kb_root}", flush=True)
    report_ = one_cycle(kb_root, settings.model_copy(update={"max_per_cycle": 100}), False, "once", True)
    print()
    print(report(kb_root, start))
    print(summary(report_))
    store = StateStore.open(kb_root)
    try:
        samples = [
            sample_summary(outcome, store.extraction_for(outcome.commit) if outcome.commit else None)
            for outcome in report_.outcomes
        ]
    finally:
        store.close()
    embedded = not settings.base_url
    model = "the embedded model" if embedded else settings.model
    strategy = settings.strategy_for(embedded=embedded)
    print()
    print(closing_summary(samples, args.dir, command_name(), model, strategy))
    return EXIT_FAILED if report_.failed else EXIT_OK


def command_name() -> str:
    """How the user ran this program, for commands to copy: the path they typed, or plain ``extractor``."""
    typed = Path(sys.argv[0])
    return str(typed) if typed.name == "extractor" and len(typed.parts) > 1 else "extractor"


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # Unwind like Ctrl-C, so the embedded server and half-done writes are cleaned up.
    raise SystemExit(128 + signum)


def run_eval(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        return fail("--limit must be 1 or more", EXIT_CANNOT_START)
    try:
        text, code = evaluation.run_eval(args)
    except ExtractorError as exc:
        return fail(str(exc), EXIT_CANNOT_START)
    print(text, end="")
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # runs replace it with a graceful stop
    handlers = {
        "extract": run_extract,
        "run": run_run,
        "status": run_status,
        "costs": run_costs,
        "batch": run_batch,
        "validate": run_validate,
        "review": run_review,
        "provenance": run_provenance,
        "demo": run_demo,
        "eval": run_eval,
    }
    try:
        return handlers[args.command](args)
    except ExtractorError as exc:  # any expected error a command did not handle itself: one line
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except Exception:  # noqa: BLE001 - a bug: its traceback, as Python would print it, but redacted
        print(scrub(traceback.format_exc()), end="", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
