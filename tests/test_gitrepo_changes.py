"""A branch's changed files, read in-process, are exactly what ``git diff --name-status --no-renames`` says."""

from __future__ import annotations

import os
from pathlib import Path

from extractor.kb.gitrepo import changed_paths
from tests.conftest import commit_all, git, init_repo


def test_changed_paths_match_git_for_every_kind_of_change(tmp_path: Path) -> None:
    kb = init_repo(tmp_path / "kb")
    for path in ("a/keep.md", "a/edit.md", "a/gone.md", "a/mode.sh", "a/link-later.md", "b/c/deep.md", "file"):
        (kb / path).parent.mkdir(parents=True, exist_ok=True)
        (kb / path).write_text(f"{path}\n", encoding="utf-8")
    commit_all(kb, "base")
    base = git(kb, "rev-parse", "HEAD").strip()
    (kb / "a" / "edit.md").write_text("changed\n", encoding="utf-8")
    (kb / "a" / "gone.md").unlink()
    (kb / "a" / "mode.sh").chmod(0o755)
    (kb / "a" / "link-later.md").unlink()
    os.symlink("keep.md", kb / "a" / "link-later.md")
    (kb / "b" / "c" / "new.md").write_text("new\n", encoding="utf-8")
    (kb / "file").unlink()
    (kb / "file").mkdir()
    (kb / "file" / "inside.md").write_text("now a folder\n", encoding="utf-8")
    commit_all(kb, "changes")
    for old, new in ((base, "HEAD"), ("HEAD", base)):
        listing = git(kb, "diff", "--name-status", "--no-renames", old, new)
        expected = sorted((tuple(line.split("\t", 1)) for line in listing.splitlines()), key=lambda c: c[1])
        assert changed_paths(kb, old, new) == expected
    assert ("T", "a/link-later.md") in changed_paths(kb, base, "HEAD")
