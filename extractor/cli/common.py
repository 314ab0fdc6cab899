"""What every command shares: exit codes, the one-line error, the KB and settings it works on, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from extractor.core.redact import scrub

if TYPE_CHECKING:
    from extractor.core.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1  # an operation started and failed (some sources failed, a merge was refused, ...)
EXIT_USAGE = 2  # a usage or configuration error: bad arguments or settings, no KB, another run holds the lock
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a program whose reader went away


def fail(message: str, code: int = EXIT_FAILED) -> int:
    """One line on stderr, secrets scrubbed; returns ``code`` for the command to return."""
    print(scrub(f"extractor: {' '.join(message.split())}"), file=sys.stderr)
    return code


def usage_error(message: str) -> int:
    return fail(message, EXIT_USAGE)


def settings_for(kb_root: Path, config: Path | None, **overrides: object) -> Settings:
    """The KB's settings; their secrets are made known to the redaction of everything printed or stored."""
    from extractor.core.redact import register_settings
    from extractor.core.settings import load_settings

    settings = load_settings(kb_root, config, **overrides)
    register_settings(settings)
    return settings


def kb_root_of(args: argparse.Namespace) -> Path:
    """The KB ``--kb`` names (which must be a work tree's top), else the work tree holding the current folder."""
    from extractor.kb.worktree import work_tree_root

    return work_tree_root(args.kb or Path("."), exact=args.kb is not None)


def start_kb(args: argparse.Namespace) -> tuple[Path, Settings]:
    """The KB named by ``--kb`` and its settings (``--workers``/``--no-cache`` applied where the command has
    them). Raises a ConfigurationError (exit 2) for a missing KB or bad settings."""
    from extractor.core.errors import ConfigurationError
    from extractor.kb.worktree import GitError

    try:
        kb_root = kb_root_of(args)
    except GitError as exc:
        raise ConfigurationError(str(exc)) from None
    overrides: dict[str, object] = {"workers": args.workers} if getattr(args, "workers", None) else {}
    if getattr(args, "no_cache", False):
        overrides["cache"] = False
    return kb_root, settings_for(kb_root, args.config, **overrides)


def print_json(data: Any) -> None:
    """One JSON document on stdout, secrets scrubbed."""
    from extractor.core.redact import scrub_data

    print(json.dumps(scrub_data(data), default=str))


def check_repository(kb_root: Path, settings: Settings) -> None:
    """One line at start, not a traceback mid-run: branch mode needs its main branch; main mode a commit."""
    from extractor.kb.gitrepo import NotReadyError, head, require_main_branch

    if settings.commit_mode == "branch":
        require_main_branch(kb_root, settings.main_branch)
    elif head(kb_root) is None:
        raise NotReadyError(f"{kb_root}: the repository has no commits yet: commit something first")
