"""A branch's changed files, read in-process, are exactly what ``git diff --name-status --no-renames`` says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from extractor.kb import gitrepo
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


def test_a_commit_in_a_folder_of_thousands_writes_the_tree_libgit2_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kb = init_repo(tmp_path / "kb")
    folder = kb / "claims" / "big"
    folder.mkdir(parents=True)
    for n in range(gitrepo.LARGE_FOLDER + 50):
        (folder / f"claim-{n}.md").write_text(f"claim {n}\n", encoding="utf-8")
    (folder / "claim-1").mkdir()  # a folder sorts as "claim-1/": between "claim-1.md" and "claim-10.md"
    (folder / "claim-1" / "inside.md").write_text("inside\n", encoding="utf-8")
    os.symlink("claim-2.md", folder / "a-link.md")
    (folder / "run.sh").write_text("#!/bin/sh\n", encoding="utf-8")
    (folder / "run.sh").chmod(0o755)
    commit_all(kb, "base")
    author = gitrepo.Identity(name="extractor", email="extractor@localhost")
    files: dict[str, str | None] = {
        "claims/big/claim-0.md": "changed\n", "claims/big/claim-1.md": None, "claims/big/claim-1-b.md": "new\n",
        "claims/big/zz-last.md": "last\n", "claims/big/run.sh": "#!/bin/sh\necho\n", "claims/other.md": "x\n",
    }  # fmt: skip

    stored: list[str] = []
    real_store = gitrepo._store

    def store(repository: object, kind: bytes, data: bytes) -> object:
        stored.append(kind.decode())
        return real_store(repository, kind, data)  # type: ignore[arg-type]

    monkeypatch.setattr(gitrepo, "_store", store)

    def both(base: str) -> tuple[str, str]:
        stored.clear()
        fast = gitrepo.commit_tree_on(kb, base, files, "fast", author)
        assert stored == ["tree"]  # the large folder's tree was written from its kept listing
        monkeypatch.setattr(gitrepo, "LARGE_FOLDER", 10**9)
        slow = gitrepo.commit_tree_on(kb, base, files, "slow", author)
        monkeypatch.setattr(gitrepo, "LARGE_FOLDER", 5000)
        return git(kb, "rev-parse", f"{fast}^{{tree}}").strip(), git(kb, "rev-parse", f"{slow}^{{tree}}").strip()

    fast, slow = both("HEAD")
    assert fast == slow
    assert "100755 blob" in git(kb, "ls-tree", f"{fast}:claims/big", "run.sh")
    # Main moves (someone's commit in the folder, one outside it): the kept listing follows by the difference.
    (folder / "claim-7.md").unlink()
    (folder / "claim-8.md").write_text("edited on main\n", encoding="utf-8")
    (folder / "added-on-main.md").write_text("new on main\n", encoding="utf-8")
    (kb / "elsewhere.md").write_text("elsewhere\n", encoding="utf-8")
    commit_all(kb, "main moves")
    fast, slow = both("HEAD")
    assert fast == slow
    assert git(kb, "fsck", "--strict", "--no-dangling").strip() == ""
    with pytest.raises(gitrepo.GitError, match="a folder or link of that name"):
        gitrepo.commit_tree_on(kb, "HEAD", {"claims/big/a-link.md": "over a link\n"}, "refused", author)
