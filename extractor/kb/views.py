"""What the writer reads while planning: the work tree, or the main branch's tree.

Branch mode plans against the tip of the main branch, whatever the user has
checked out or is editing, so drafts never pick up someone's unfinished work.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path, PurePosixPath
from typing import Protocol

from extractor.kb.gitrepo import (
    FileEdit,
    folded_names_at,
    is_folder_at,
    lines_added_to,
    message_that_added,
    names_at,
    read_at,
)


class KBView(Protocol):
    def read(self, path: str) -> str | None: ...

    def names(self, folder: str) -> frozenset[str]: ...

    def is_folder(self, folder: str) -> bool: ...

    def folded_names(self, folder: str) -> Collection[str]:
        """The names in ``folder``, case-folded: what a new file's name must not fold to."""
        ...

    def message_that_added(self, path: str) -> str | None:
        """The message of the commit that added ``path`` (None when none did); its format is the commit layer's."""
        ...

    def lines_added_to(self, path: str) -> list[FileEdit]:
        """Each commit that changed ``path``, newest first: its message and the lines it added."""
        ...


class WorktreeView:
    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, path: str) -> str | None:
        file = self.root / path
        return file.read_text(encoding="utf-8") if file.is_file() else None

    def names(self, folder: str) -> frozenset[str]:
        directory = self.root / folder
        # Every entry, as git's tree listing gives: a new file must not take a folder's or a link's name.
        return frozenset(p.name for p in directory.iterdir()) if directory.is_dir() else frozenset()

    def is_folder(self, folder: str) -> bool:
        return (self.root / folder).is_dir()

    def folded_names(self, folder: str) -> Collection[str]:
        try:
            return frozenset(name.casefold() for name in os.listdir(self.root / folder))
        except OSError:
            return frozenset()

    def message_that_added(self, path: str) -> str | None:
        return message_that_added(self.root, "HEAD", path)

    def lines_added_to(self, path: str) -> list[FileEdit]:
        return lines_added_to(self.root, "HEAD", path)


class RevisionView:
    def __init__(self, root: Path, rev: str) -> None:
        self.root = root
        self.rev = rev
        self._read: dict[str, str | None] = {}

    def read(self, path: str) -> str | None:
        # A commit never changes, so what was read at it can be kept.
        key = str(PurePosixPath(path))
        if key not in self._read:
            self._read[key] = read_at(self.root, self.rev, key)
        return self._read[key]

    def names(self, folder: str) -> frozenset[str]:
        return names_at(self.root, self.rev, folder)

    def is_folder(self, folder: str) -> bool:
        return is_folder_at(self.root, self.rev, folder)

    def folded_names(self, folder: str) -> Collection[str]:
        return folded_names_at(self.root, self.rev, folder).keys()

    def message_that_added(self, path: str) -> str | None:
        return message_that_added(self.root, self.rev, path)

    def lines_added_to(self, path: str) -> list[FileEdit]:
        return lines_added_to(self.root, self.rev, path)
