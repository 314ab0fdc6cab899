"""Git plumbing: commit exactly the files an extraction wrote.

The commit is built on a private index (``GIT_INDEX_FILE``) from HEAD plus
those paths, so whatever the user has staged or changed elsewhere is neither
committed nor disturbed. The ref moves with a compare-and-swap on its old value.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel


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


@contextlib.contextmanager
def private_index(repo: Path) -> Iterator[dict[str, str]]:
    """Environment for git commands that use an index of their own, never the user's."""
    git_dir = Path(git(repo, "rev-parse", "--absolute-git-dir").strip())
    fd, index_file = tempfile.mkstemp(prefix="extractor-index-", dir=git_dir)
    os.close(fd)
    os.unlink(index_file)  # git creates it; an empty file is not a valid index
    try:
        yield {"GIT_INDEX_FILE": index_file}
    finally:
        Path(index_file).unlink(missing_ok=True)


def commit_paths(repo: Path, paths: list[str], message: str, author: Identity) -> str:
    """Commit the working-tree state of ``paths`` (present or deleted) onto HEAD."""
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
    identity = identity_env(author)
    parents = ["-p", parent] if parent else []
    commit = git(repo, "commit-tree", tree, *parents, "-F", "-", env=identity, input=message).strip()
    git(repo, "update-ref", "-m", "extractor: commit", "HEAD", commit, parent or "0" * 40)
    # Bring the user's index in line with the new HEAD for these paths only. The
    # commit already stands; a failure here only leaves those index entries stale.
    with contextlib.suppress(GitError):
        git(repo, "reset", "-q", commit, "--", *paths)
    return commit


ZERO = "0" * 40


def read_at(repo: Path, rev: str, path: str) -> str | None:
    """A file's text at a revision, or None where it does not exist."""
    result = subprocess.run(["git", "cat-file", "blob", f"{rev}:{path}"], cwd=repo, capture_output=True)
    # Decoded strictly: text that is not UTF-8 raises UnicodeDecodeError rather than being mangled.
    return result.stdout.decode("utf-8") if result.returncode == 0 else None


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
    """Point ``ref`` at ``new`` if it still points at ``old`` (None: it must not exist yet)."""
    git(repo, "update-ref", "-m", "extractor", ref, new, old or ZERO)
