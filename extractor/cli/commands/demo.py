"""``extractor demo``: a fresh KB from the samples, one cycle on it, and what came of each sample."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from extractor.cli.common import EXIT_FAILED, EXIT_OK, print_json, settings_for


def command_name() -> str:
    """How the user ran this program, for commands to copy: the path they typed, or plain ``extractor``."""
    typed = Path(sys.argv[0])
    return str(typed) if typed.name == "extractor" and len(typed.parts) > 1 else "extractor"


def run_demo(args: argparse.Namespace) -> int:
    from extractor.cli.commands.lines import summary
    from extractor.cli.commands.running import Output, one_cycle
    from extractor.cli.demo import closing_summary, create_demo_kb, report, sample_summary
    from extractor.core.errors import ConfigurationError, ExtractorError
    from extractor.kb.gitrepo import head
    from extractor.store.state import open_store

    target = args.dir.resolve()
    try:
        kb_root = create_demo_kb(target)
    except OSError as exc:
        raise ConfigurationError(f"{target}: {exc.strerror or exc}") from None
    except ExtractorError as exc:  # the folder cannot be the demo's
        raise ConfigurationError(str(exc)) from None
    settings = settings_for(kb_root, args.config)
    start = head(kb_root)
    assert start is not None
    if not args.json:
        print(f"demo knowledge base: {kb_root}", flush=True)
    output: Output = "none" if args.quiet or args.json else "bar"
    report_ = one_cycle(kb_root, settings.model_copy(update={"max_per_cycle": 100}), output, verbose=args.verbose)
    store = open_store(kb_root, settings)
    try:
        samples = [
            sample_summary(outcome, store.extraction_for(outcome.commit) if outcome.commit else None)
            for outcome in report_.outcomes
        ]
    finally:
        store.close()
    code = EXIT_FAILED if report_.failed else EXIT_OK
    if args.json:
        print_json({"kb": str(kb_root), "cycle": report_.model_dump(mode="json"),
                    "samples": [sample.model_dump(mode="json") for sample in samples]})  # fmt: skip
        return code
    print()
    print(report(kb_root, start))
    print(summary(report_))
    embedded = not settings.has_endpoint
    model = "the embedded model" if embedded else settings.model
    strategy = settings.strategy_for(embedded=embedded)
    print()
    print(closing_summary(samples, args.dir, command_name(), model, strategy))
    return code
