"""``extractor doctor``: check the state database, and rebuild a damaged (or missing) one from git."""

from __future__ import annotations

import argparse

from extractor.cli.common import EXIT_OK, print_json, start_kb


def run_doctor(args: argparse.Namespace) -> int:
    from extractor.run.doctor import rebuild_state

    kb_root, settings = start_kb(args)
    report = rebuild_state(kb_root, settings, force=args.rebuild)
    if args.json:
        print_json(report.model_dump(mode="json"))
    else:
        print("\n".join(report.lines()))
    return EXIT_OK
