"""The ``extractor`` command."""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from extractor import __version__
from extractor.config import SettingsError, load_settings
from extractor.extract import extract_source
from extractor.gitrepo import GitError, Identity, toplevel
from extractor.kb import KBIndex
from extractor.llm import LLMError, StructuredClient, make_client
from extractor.prompts import PromptError
from extractor.sources import SourceError, load_source
from extractor.writer import ChangeSet, WriteError, apply_changes, plan_changes

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
MANUAL_RUNNER = "manual extraction"


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
    return parser


def fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"extractor: {' '.join(message.split())}", file=sys.stderr)
    return code


def print_dry_run(changes: ChangeSet) -> None:
    print(changes.message)
    for change in changes.changes:
        print(f"==> {change.path} ({'delete' if change.text is None else 'write'})")
        if change.text is not None:
            print(change.text)


def run_extract(args: argparse.Namespace) -> int:
    path: Path = args.path
    if args.worker < 1:
        return fail("--worker must be 1 or more", EXIT_USAGE)
    if not path.is_file():
        return fail(f"{path}: no such file")
    try:
        kb_root = (args.kb or toplevel(path)).resolve()
        settings = load_settings(kb_root, args.config)
    except (GitError, SettingsError) as exc:
        return fail(str(exc), EXIT_USAGE)
    try:
        source_path = path.resolve().relative_to(kb_root).as_posix()
    except ValueError:
        return fail(f"{path}: not inside the knowledge base {kb_root}")
    try:
        source = load_source(path)
    except SourceError as exc:
        return fail(str(exc))
    if source.is_done and not args.force:
        return fail(f"{source_path}: already {source.status.value}; use --force to re-extract")

    try:
        index = KBIndex.load(kb_root, exclude=[settings.inbox_dir])
        llm = StructuredClient(make_client(settings), settings)
        result = extract_source(source, source_path, settings, llm, index, replace_previous=args.force)
        changes = plan_changes(
            kb_root,
            source,
            result,
            settings,
            index,
            today=datetime.date.today().isoformat(),
            worker=args.worker,
            runner=MANUAL_RUNNER,
            replace_previous=args.force,
        )
        if args.dry_run:
            print_dry_run(changes)
            return EXIT_OK
        commit = apply_changes(kb_root, changes, Identity(name=settings.author_name, email=settings.author_email))
    except LLMError as exc:
        return fail(f"{source_path}: LLM failed: {exc}")
    except (WriteError, GitError, PromptError, OSError) as exc:
        return fail(f"{source_path}: {exc}")
    print(
        f"{commit[:12]} {source_path}: {changes.status}, "
        f"{len(changes.claim_titles)} claim(s), {len(changes.enriched_titles)} enrichment(s); "
        f"{result.usage.prompt_tokens}+{result.usage.completion_tokens} tokens"
    )
    for change in changes.changes:
        print(f"  {'deleted' if change.text is None else 'wrote'} {change.path}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "extract":
        return run_extract(args)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
