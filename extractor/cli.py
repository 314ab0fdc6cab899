"""The ``extractor`` command."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from extractor import __version__
from extractor.config import Settings, SettingsError, load_settings
from extractor.demo import DemoError, create_demo_kb, report
from extractor.endpoint import llm_endpoint
from extractor.gitrepo import GitError, head, toplevel
from extractor.llm import StructuredClient, make_client
from extractor.localmodel import LocalModelError
from extractor.pipeline import MANUAL_RUNNER, Outcome, OutcomeKind, process_source, run_cycle

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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
    extract.add_argument("--kb", type=Path, help="KB root (default: the git work tree holding PATH)")

    run = commands.add_parser("run", help="extract the inbox's unprocessed sources")
    run.add_argument("--once", action="store_true", help="one cycle, then exit (for cron)")
    run.add_argument("--kb", type=Path, default=Path("."), help="KB root (default: the current folder)")

    demo = commands.add_parser("demo", help="build a demo KB from the samples and run one cycle on it")
    demo.add_argument("--dir", type=Path, default=Path("build/demo-kb"), help="where (default build/demo-kb)")
    return parser


def fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"extractor: {' '.join(message.split())}", file=sys.stderr)
    return code


def client_for(settings: Settings) -> StructuredClient:
    return StructuredClient(make_client(settings), settings)


def describe(outcome: Outcome) -> str:
    if not outcome.ok:
        return f"{outcome.source_path}: {outcome.kind.value}: {outcome.error}"
    changes = outcome.changes
    assert changes is not None
    commit = (outcome.commit or "(dry run)")[:12]
    return (
        f"{commit} {outcome.source_path}: {outcome.kind.value}, "
        f"{len(changes.claim_titles)} claim(s), {len(changes.enriched_titles)} enrichment(s); "
        f"{outcome.usage.prompt_tokens}+{outcome.usage.completion_tokens} tokens, {outcome.seconds:.1f}s"
    )


def print_dry_run(outcome: Outcome) -> None:
    assert outcome.changes is not None
    print(outcome.changes.message)
    for change in outcome.changes.changes:
        print(f"==> {change.path} ({'delete' if change.text is None else 'write'})")
        if change.text is not None:
            print(change.text)


def kb_settings(kb_root: Path, config: Path | None) -> Settings:
    return load_settings(kb_root, config)


def run_extract(args: argparse.Namespace) -> int:
    path: Path = args.path
    if args.worker < 1:
        return fail("--worker must be 1 or more", EXIT_USAGE)
    if not path.is_file():
        return fail(f"{path}: no such file")
    try:
        kb_root = (args.kb or toplevel(path)).resolve()
        settings = kb_settings(kb_root, args.config)
    except (GitError, SettingsError) as exc:
        return fail(str(exc), EXIT_USAGE)
    with llm_endpoint(settings) as live:
        outcome = process_source(
            kb_root, path, live, client_for(live),
            worker=args.worker, runner=MANUAL_RUNNER, force=args.force, dry_run=args.dry_run,
        )  # fmt: skip
    if not outcome.ok:
        return fail(f"{outcome.source_path}: {outcome.error}")
    if outcome.kind is OutcomeKind.PLANNED:
        print_dry_run(outcome)
        return EXIT_OK
    print(describe(outcome))
    assert outcome.changes is not None
    for change in outcome.changes.changes:
        print(f"  {'deleted' if change.text is None else 'wrote'} {change.path}")
    return EXIT_OK


def cycle(kb_root: Path, settings: Settings) -> list[Outcome]:
    with llm_endpoint(settings) as live:
        return run_cycle(kb_root, live, client_for(live), on_outcome=lambda o: print(describe(o), flush=True))


def run_run(args: argparse.Namespace) -> int:
    if not args.once:
        return fail("the polling daemon is not available yet; use --once", EXIT_USAGE)
    try:
        kb_root = toplevel(args.kb).resolve()
        settings = kb_settings(kb_root, args.config)
    except (GitError, SettingsError) as exc:
        return fail(str(exc), EXIT_USAGE)
    outcomes = cycle(kb_root, settings)
    failed = [o for o in outcomes if not o.ok]
    print(f"cycle: {len(outcomes)} source(s), {len(outcomes) - len(failed)} done, {len(failed)} failed")
    return EXIT_FAILED if failed else EXIT_OK


def run_demo(args: argparse.Namespace) -> int:
    target = args.dir.resolve()
    try:
        kb_root = create_demo_kb(target)
        settings = kb_settings(kb_root, args.config)
    except (DemoError, GitError, SettingsError, OSError) as exc:
        return fail(str(exc), EXIT_USAGE)
    start = head(kb_root)
    assert start is not None
    print(f"demo knowledge base: {kb_root}", flush=True)
    outcomes = cycle(kb_root, settings)
    print()
    print(report(kb_root, start))
    failed = [o for o in outcomes if not o.ok]
    print(f"cycle: {len(outcomes)} source(s), {len(outcomes) - len(failed)} done, {len(failed)} failed")
    return EXIT_FAILED if failed else EXIT_OK


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # Unwind like Ctrl-C, so the embedded server and half-done writes are cleaned up.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    handlers = {"extract": run_extract, "run": run_run, "demo": run_demo}
    try:
        return handlers[args.command](args)
    except LocalModelError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
