"""Git plumbing: commit exactly the files an extraction wrote.

The commit is built on a private index (``GIT_INDEX_FILE``) from HEAD plus
those paths, so whatever the user has staged or changed elsewhere is neither
committed nor disturbed. The ref moves with a compare-and-swap on its old value.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random


class GitError(RuntimeError):
    """A git command failed; the message carries git's own words."""


class Identity(BaseModel):
    name: str
    email: str


def identity_env(author: Identity) -> dict[str, str]:
    """Author and committer for git commands, whatever the user's git config says."""
    return {
        "GIT_AUTHOR_NAME": author.name,
        "GIT_AUTHOR_EMAIL": author.email,
        "GIT_COMMITTER_NAME": author.name,
        "GIT_COMMITTER_EMAIL": author.email,
    }


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
    folder = path if path.is_dir() else path.parent
    try:
        return Path(git(folder, "rev-parse", "--show-toplevel").strip())
    except (GitError, FileNotFoundError) as exc:
        raise GitError(f"{path} is not inside a git work tree") from exc


def head(repo: Path) -> str | None:
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", "HEAD").strip() or None
    except GitError:
        return None


PRIVATE_INDEX_PREFIX = "extractor-index-"


@functools.lru_cache(maxsize=64)
def absolute_git_dir(repo: Path) -> Path:
    """The repository's git folder; asked once per process, since every commit needs it."""
    return Path(git(repo, "rev-parse", "--absolute-git-dir").strip())


@contextlib.contextmanager
def private_index(repo: Path) -> Iterator[dict[str, str]]:
    """Environment for git commands that use an index of their own, never the user's.

    The file's name carries the pid, so a crashed run's leftover can be told
    from a live one's and removed (:func:`remove_stale_private_indexes`).
    """
    git_dir = absolute_git_dir(repo)
    fd, index_file = tempfile.mkstemp(prefix=f"{PRIVATE_INDEX_PREFIX}{os.getpid()}-", dir=git_dir)
    os.close(fd)
    os.unlink(index_file)  # git creates it; an empty file is not a valid index
    try:
        yield {"GIT_INDEX_FILE": index_file}
    finally:
        Path(index_file).unlink(missing_ok=True)
        Path(index_file + ".lock").unlink(missing_ok=True)


def remove_stale_private_indexes(repo: Path, alive: Callable[[int], bool]) -> int:
    """Delete private indexes (and their locks) whose process is gone; returns how many."""
    git_dir = absolute_git_dir(repo)
    removed = 0
    for file in git_dir.glob(f"{PRIVATE_INDEX_PREFIX}*"):
        pid = file.name.removeprefix(PRIVATE_INDEX_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or not alive(int(pid)):
            file.unlink(missing_ok=True)
            removed += 1
    return removed


def build_commit(repo: Path, paths: list[str], message: str, author: Identity) -> tuple[str, str | None]:
    """A commit of the working-tree state of ``paths`` (present or deleted) on HEAD, and its parent.

    HEAD does not move: the caller records the commit first, so a crash
    before or after :func:`move_ref` can be settled either way.
    """
    parent = head(repo)
    with private_index(repo) as private:
        git(repo, "read-tree", parent or "--empty", env=private)
        present = [p for p in paths if (repo / p).exists()]
        missing = [p for p in paths if not (repo / p).exists()]
        if present:
            git(repo, "update-index", "--add", "--", *present, env=private)
        if missing:
            git(repo, "update-index", "--force-remove", "--", *missing, env=private)
        tree = git(repo, "write-tree", env=private).strip()
    parents = ["-p", parent] if parent else []
    commit = git(repo, "commit-tree", tree, *parents, "-F", "-", env=identity_env(author), input=message).strip()
    return commit, parent


def _lock_contention(exc: BaseException) -> bool:
    """git could not take a lock file another git process holds (not: a ref moved under us)."""
    return isinstance(exc, GitError) and ".lock" in str(exc) and "File exists" in str(exc)


def _on_lock_contention(*args: Any, **kwargs: Any) -> str:
    """Run :func:`git`, waiting out a lock another git process (an editor, a crashed run's last command) holds."""
    retrying = Retrying(
        retry=retry_if_exception(_lock_contention), stop=stop_after_delay(10), wait=wait_random(0.02, 0.2), reraise=True
    )
    return retrying(git, *args, **kwargs)


def sync_index(repo: Path, commit: str, paths: list[str]) -> bool:
    """Bring the user's index in line with ``commit`` for ``paths`` only; False if it could not."""
    try:
        _on_lock_contention(repo, "reset", "-q", commit, "--", *paths)
    except GitError:
        return False
    return True


def commit_paths(repo: Path, paths: list[str], message: str, author: Identity) -> str:
    """Commit the working-tree state of ``paths`` onto HEAD and move HEAD to it."""
    commit, parent = build_commit(repo, paths, message, author)
    move_ref(repo, "HEAD", commit, parent)
    sync_index(repo, commit, paths)
    return commit


ZERO = "0" * 40


def read_at(repo: Path, rev: str, path: str) -> str | None:
    """A file's text at a revision, or None where it does not exist."""
    result = subprocess.run(["git", "cat-file", "blob", f"{rev}:{path}"], cwd=repo, capture_output=True)
    # Decoded strictly: text that is not UTF-8 raises UnicodeDecodeError rather than being mangled.
    return result.stdout.decode("utf-8") if result.returncode == 0 else None


def source_that_added(repo: Path, rev: str, path: str) -> str | None:
    """The ``- Source:`` line of the extraction commit that added ``path`` in ``rev``'s history, if one did."""
    try:
        message = git(repo, "log", rev, "-1", "--diff-filter=A", "--format=%B", "--", path)
    except GitError:
        return None
    found = re.search(r"^- Source: (.+)$", message, re.M)
    return found.group(1).strip() if found else None


def names_at(repo: Path, rev: str, folder: str) -> set[str]:
    """File names directly inside ``folder`` at a revision."""
    out = git(repo, "ls-tree", "--name-only", rev, f"{folder.rstrip('/')}/")
    return {line.rsplit("/", 1)[-1] for line in out.splitlines() if line}


def rev_parse(repo: Path, rev: str) -> str | None:
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip() or None
    except GitError:
        return None


def commit_tree_on(repo: Path, base: str, files: dict[str, str | None], message: str, author: Identity) -> str:
    """A commit whose tree is ``base``'s with ``files`` replaced (None deletes), without a work tree.

    Nothing outside the object store changes: the user's checkout, index and
    current branch are never touched.
    """
    with private_index(repo) as private:
        git(repo, "read-tree", base, env=private)
        for path, text in files.items():
            if text is None:
                git(repo, "update-index", "--force-remove", "--", path, env=private)
            else:
                blob = git(repo, "hash-object", "-w", "--stdin", "--path", path, input=text).strip()
                git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=private)
        tree = git(repo, "write-tree", env=private).strip()
    identity = identity_env(author)
    return git(repo, "commit-tree", tree, "-p", base, "-F", "-", env=identity, input=message).strip()


def move_ref(repo: Path, ref: str, new: str, old: str | None) -> None:
    """Point ``ref`` at ``new`` if it still points at ``old`` (None: it must not exist yet).

    A ref locked by another git process is waited for briefly; a ref that moved is an error.
    """
    _on_lock_contention(repo, "update-ref", "-m", "extractor", ref, new, old or ZERO)


def is_ancestor(repo: Path, commit: str, of: str) -> bool:
    found = subprocess.run(["git", "merge-base", "--is-ancestor", commit, of], cwd=repo, capture_output=True)
    return found.returncode == 0
