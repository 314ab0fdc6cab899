"""``extractor extract``: one source by hand, on its branch (or main), with its drafts listed."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from extractor.cli.common import EXIT_OK, check_repository, fail, print_json, settings_for, usage_error
from extractor.cli.output import is_interactive


def run_extract(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from extractor.cli.commands.lines import describe, dry_run_text
    from extractor.core.errors import ConfigurationError
    from extractor.core.records import OutcomeKind
    from extractor.core.redact import scrub
    from extractor.kb.sources import check_source_file
    from extractor.kb.worktree import GitError, toplevel, work_tree_root
    from extractor.llm.endpoint import llm_endpoint
    from extractor.run.service import MANUAL_RUNNER, SourceService
    from extractor.store.state import open_store

    path: Path = args.path
    if args.worker < 1:
        return usage_error("--worker must be 1 or more")
    if not os.path.lexists(path):
        return usage_error(f"{path}: no such file")
    check_source_file(path)  # before anything follows a link to find the KB
    try:
        kb_root = work_tree_root(args.kb, exact=True) if args.kb else toplevel(path).resolve()
        settings = settings_for(kb_root, args.config, **({"cache": False} if args.no_cache else {}))
    except GitError as exc:
        raise ConfigurationError(str(exc)) from None
    check_repository(kb_root, settings)
    check_source_file(path, settings.max_source_bytes)
    store = open_store(kb_root, settings)
    try:
        shown = is_interactive() and not args.quiet and not args.json
        bar = tqdm(total=1, desc=f"extracting {path.name}", disable=not shown, file=sys.stderr)
        with bar, llm_endpoint(settings) as live:
            from extractor.cli.commands.running import client_for

            service = SourceService(kb_root, live, store, runner=MANUAL_RUNNER, count_failures=False)
            outcome = service.process(path, client_for(kb_root, live, cache=store), worker=args.worker,
                                      force=args.force, dry_run=args.dry_run)  # fmt: skip
            bar.update(1)
    finally:
        store.close()
    if args.json:
        print_json(outcome.model_dump(mode="json", exclude={"calls", "report"}))
        return EXIT_OK if outcome.ok else 1
    if not outcome.ok:
        return fail(f"{outcome.source_path}: {outcome.error}")
    if outcome.kind is OutcomeKind.PLANNED:
        print(dry_run_text(outcome))
        return EXIT_OK
    if outcome.publish_error is not None:
        print(scrub(f"extractor: {outcome.publish_error} (will be retried by the next cycle)"), file=sys.stderr)
    elif outcome.published is not None:
        print(f"published {outcome.branch}" + (f": {outcome.published}" if outcome.published else ""))
    print(describe(outcome))
    for change in outcome.changes:
        print(f"  {'deleted' if change.text is None else 'wrote'} {change.path}")
    return EXIT_OK
