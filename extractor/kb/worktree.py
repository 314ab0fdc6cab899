"""The git command and the work tree a path lies in: what every command needs before anything else, kept
apart from the in-process object access (pygit2) that only commands reading or writing commits load."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from extractor.core.errors import ExtractorError


class GitError(ExtractorError):
    """A git command failed; the message carries git's own words."""


def git(repo: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **(env or {})},
        input=input,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        problem = " ".join((result.stderr or result.stdout).split())
        raise GitError(f"git {args[0]} failed: {problem}")
    return result.stdout


def toplevel(path: Path) -> Path:
    """The work tree root that contains ``path``."""
    if not path.exists():
        raise GitError(f"{path}: no such file or folder")
    folder = path if path.is_dir() else path.parent
    try:
        return Path(git(folder, "rev-parse", "--show-toplevel").strip())
    except (GitError, FileNotFoundError) as exc:
        raise GitError(f"{path.absolute()} is not inside a git work tree") from exc


def work_tree_root(path: Path, exact: bool) -> Path:
    """The top of the git work tree holding ``path``; with ``exact``, ``path`` must be that top, since every
    path the KB records and commits is relative to it."""
    top = toplevel(path).resolve()
    if exact and top != path.resolve():
        raise GitError(f"{path} is not the top of a git work tree (it lies inside {top}); a KB is a whole repository")
    return top
