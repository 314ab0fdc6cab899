"""``extractor run``: the daemon, or one cycle for cron (``--once``), optionally over some sources only."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from extractor.cli.common import EXIT_FAILED, EXIT_OK, check_repository, print_json, start_kb, usage_error
from extractor.cli.output import configure_json_logging, configure_text_logging, is_interactive

if TYPE_CHECKING:
    from extractor.core.records import SourceOutcome
    from extractor.core.settings import Settings
    from extractor.llm.client import StructuredClient
    from extractor.run.scheduler import CycleReport, Runner
    from extractor.run.workers import Pool
    from extractor.store.state import StateStore

Output = Literal["bar", "log", "none"]


def client_for(kb_root: Path, settings: Settings, cache: StateStore | None = None) -> StructuredClient:
    from extractor.llm.connect import structured_client

    return structured_client(kb_root, settings, cache=cache)


def quiet_stdout() -> None:
    """The reader of stdout went away (``| head``): later lines go nowhere, and the run goes on."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def one_cycle(
    kb_root: Path,
    settings: Settings,
    output: Output,
    force: bool = False,
    mode: str = "once",
    only: list[str] | None = None,
    verbose: bool = False,
) -> CycleReport:
    """Lock, start the endpoint and the workers, run one cycle, and record it. ``output``: a progress bar and
    a line per source for people, JSON log lines for cron, or nothing (``--json``, ``-q``)."""
    from extractor.cli.commands.lines import summary
    from extractor.kb.locks import kb_lock
    from extractor.llm.endpoint import llm_endpoint

    interactive = output == "bar"
    logger = configure_json_logging(verbose=verbose) if output == "log" else None
    if verbose and output != "log":
        configure_text_logging(verbose)
    with kb_lock(kb_root, "run"), writer_lock(settings):
        idle = nothing_to_ask(kb_root, settings, force, only)
        if idle:
            only = []  # the cycle scans, publishes and records, and takes no source: none was due a moment ago
        asks_nothing = idle or (settings.compute == "queue" and not settings.reviews)  # workers elsewhere ask
        with nullcontext(settings) if asks_nothing else llm_endpoint(settings) as live:
            report = _cycle_with(kb_root, live, interactive, logger, force, mode, only)
    if logger is not None:
        for note in report.recovered:
            logger.info("recovered", extra={"note": note})
        logger.info("cycle", extra={"summary": summary(report), **report.model_dump(exclude={"outcomes"})})
    elif interactive:
        for note in report.recovered:
            print(note)
    return report


def writer_lock(settings: Settings) -> AbstractContextManager[None]:
    """One writer per KB across hosts when the state is shared (see :func:`extractor.run.remote.writer_lock`)."""
    if settings.state_url is None:
        return nullcontext()
    from extractor.run import remote

    return remote.writer_lock(settings)


def make_pool(kb_root: Path, settings: Settings, store: StateStore) -> Pool:
    """The run's own worker processes, or the queue that workers on other hosts take sources from."""
    if settings.compute == "queue":
        from extractor.run.remote import QueuePool

        return QueuePool(kb_root, settings, store)
    from extractor.run.workers import WorkerPool

    return WorkerPool(settings.workers, kb_root, settings)


def nothing_to_ask(kb_root: Path, settings: Settings, force: bool, only: list[str] | None) -> bool:
    """No source is due and no branch waits for a reviewer: the embedded model (seconds of CPU to start) is
    not started for a cycle with nothing to ask it. A configured endpoint costs nothing to "start"."""
    from extractor.run.queue import queued_files
    from extractor.run.scheduler import choose_due, scan_inbox
    from extractor.store.state import open_store

    if settings.has_endpoint or settings.reviews or queued_files(kb_root / settings.ingest_queue_dir):
        return False
    store = open_store(kb_root, settings)
    try:
        scan_inbox(kb_root, settings, store)
        return not choose_due(store, 1, include_parked=force, only=only)
    finally:
        store.close()


def _cycle_with(
    kb_root: Path,
    live: Settings,
    interactive: bool,
    logger: logging.Logger | None,
    force: bool,
    mode: str,
    only: list[str] | None,
) -> CycleReport:
    """The cycle itself, on a started endpoint: the workers, the progress bar, the cycle's record."""
    from tqdm import tqdm

    from extractor.cli.commands.lines import describe
    from extractor.run.scheduler import Runner
    from extractor.store.state import open_store

    store = open_store(kb_root, live)
    pool = make_pool(kb_root, live, store)
    shown = interactive and sys.stderr.isatty()  # lines for people; the bar only where it can redraw
    bar = tqdm(desc="extracting", unit="source", disable=not shown, file=sys.stderr)

    def on_outcome(outcome: SourceOutcome) -> None:
        try:
            if logger is not None:
                log_outcome(logger, outcome)
            elif interactive:
                bar.write(describe(outcome, worker=True), file=sys.stdout)
        except BrokenPipeError:
            quiet_stdout()
        bar.update(1)

    runner = Runner(kb_root, live, pool, store, on_outcome=on_outcome)
    cycle_id = store.start_cycle(mode)
    previous = graceful_stop(runner, logger)
    try:
        report = runner.cycle(force_parked=force, on_start=lambda n: bar.reset(total=n), only=only)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        bar.close()
        pool.close()
    store.finish_cycle(
        cycle_id, report.taken, len(report.outcomes) - len(report.failed), len(report.failed), note=report.budget
    )
    store.close()
    return report


def log_outcome(logger: logging.Logger, outcome: SourceOutcome) -> None:
    """A source's JSON line: a failure at WARNING, so a collector can alert on it."""
    logger.log(logging.INFO if outcome.ok else logging.WARNING, "source", extra=outcome.log_line())


def graceful_stop(runner: Runner, logger: logging.Logger | None) -> dict[signal.Signals, Any]:
    """First SIGTERM or Ctrl-C: take no new work, finish in-flight sources; a second one: leave now."""
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}

    def stop(signum: int, frame: object) -> None:
        if runner.stop.is_set():
            raise KeyboardInterrupt
        runner.stop.set()
        message = f"stopping after in-flight sources (up to {runner.settings.shutdown_grace:.0f}s)"
        if logger is not None:
            logger.info("stopping", extra={"signal": signal.Signals(signum).name})
        else:
            print(message, file=sys.stderr)

    for signum in previous:
        signal.signal(signum, stop)
    return previous


def run_run(args: argparse.Namespace) -> int:
    from extractor.cli.commands.lines import summary
    from extractor.cli.commands.selection import source_patterns
    from extractor.core.settings import unenforceable_budget

    if args.workers is not None and args.workers < 1:
        return usage_error("--workers must be 1 or more")
    if args.sources and not args.once:
        return usage_error("naming sources needs --once: the daemon polls every due source")
    kb_root, settings = start_kb(args)
    if (why := unenforceable_budget(settings)) is not None:
        return usage_error(why)
    check_repository(kb_root, settings)
    if not args.once:
        return daemon(kb_root, settings, args.verbose)
    output: Output = "none" if args.json or args.quiet else "bar" if is_interactive() else "log"
    only = source_patterns(kb_root, args.sources) if args.sources else None
    report = one_cycle(kb_root, settings, output, force=args.force, only=only, verbose=args.verbose)
    if args.json:
        print_json(report.model_dump(mode="json"))
    elif output != "log":
        print(summary(report))
    unmatched = unmatched_patterns(only or [], [outcome.source_path for outcome in report.outcomes])
    for pattern in unmatched:
        print(f"extractor: {pattern}: no due source matches (not in the inbox, already processed, or waiting to "
              "be retried: see extractor status, extractor retry)", file=sys.stderr)  # fmt: skip
    if only and len(unmatched) == len(only) and not report.budget:
        return EXIT_FAILED  # sources were named and none could be taken
    return EXIT_FAILED if report.failed else EXIT_OK


def unmatched_patterns(patterns: list[str], taken: list[str]) -> list[str]:
    """The named sources (paths or globs) that matched none of the sources a cycle took."""
    from extractor.run.scheduler import matches_any

    return [pattern for pattern in patterns if not any(matches_any(path, [pattern]) for path in taken)]


def daemon(kb_root: Path, settings: Settings, verbose: bool) -> int:
    """Poll until SIGTERM or Ctrl-C, then let in-flight sources finish within the grace period."""
    from extractor.cli.commands.lines import summary
    from extractor.kb.locks import kb_lock
    from extractor.llm.endpoint import llm_endpoint
    from extractor.run.scheduler import Runner, run_daemon
    from extractor.store.state import open_store

    logger = configure_json_logging(verbose=verbose)
    asks_nothing = settings.compute == "queue" and not settings.reviews
    with (
        kb_lock(kb_root, "run"),
        writer_lock(settings),
        nullcontext(settings) if asks_nothing else llm_endpoint(settings) as live,
    ):
        store = open_store(kb_root, live)
        pool = make_pool(kb_root, live, store)
        runner = Runner(kb_root, live, pool, store, on_outcome=lambda outcome: log_outcome(logger, outcome))

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
