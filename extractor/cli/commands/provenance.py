"""``extractor provenance``: who and what made a claim file (and which extractions edited it)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from extractor.cli.common import EXIT_OK, print_json, settings_for


def provenance_lines(record: dict[str, Any]) -> list[str]:
    """``key: value`` lines; lists as comma-separated values, edits one per line, nothing in Python syntax."""
    lines = []
    for key, value in record.items():
        if key == "edits":
            lines.append(f"edits: {len(value)}")
            lines += [
                f"  {edit['date']} {edit['commit'][:12]} {edit['agent']} (worker {edit['worker']}) {edit['model']} "
                f"from {edit['source']}: {len(edit['added'])} line(s) added"
                for edit in value
            ]
        elif isinstance(value, list):
            lines.append(f"{key}: {', '.join(str(item) for item in value) or '-'}")
        else:
            lines.append(f"{key}: {plain(key, value)}")
    return lines


def plain(key: str, value: object) -> str:
    """A value as a person reads it: yes/no, dollars, seconds, '-' for nothing."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"${value:.6f}" if key == "cost" else f"{value:.1f}"
    return str(value)


def run_provenance(args: argparse.Namespace) -> int:
    from extractor.core.errors import ConfigurationError
    from extractor.kb.worktree import GitError, toplevel, work_tree_root
    from extractor.review.provenance import claim_provenance

    path: Path = args.path
    try:
        if args.kb is not None:
            kb_root = work_tree_root(args.kb, exact=True)
        else:
            kb_root = toplevel(path if path.exists() else Path(".")).resolve()
        # a file on disk where it is; one only on a pending branch, as the KB names it
        rel = (path.resolve() if path.exists() else kb_root / path).relative_to(kb_root).as_posix()
    except GitError as exc:
        raise ConfigurationError(str(exc)) from None
    except ValueError:
        raise ConfigurationError(f"{path}: not inside the KB at {kb_root}") from None
    settings = settings_for(kb_root, args.config)
    record = claim_provenance(kb_root, rel, settings)
    if args.json:
        print_json(record.model_dump(mode="json"))
    else:
        print("\n".join(provenance_lines(record.model_dump(mode="json"))))
    return EXIT_OK
