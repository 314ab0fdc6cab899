"""Git plumbing: commit exactly the files an extraction wrote.

Objects are read and written in-process (pygit2): the commit is HEAD's or
main's tree with only those paths replaced, so whatever the user has staged
or changed elsewhere is neither committed nor disturbed, and a commit costs
the same in a KB of any size. Refs and the user's index move through git
itself, a ref with a compare-and-swap on its old value.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import os
import subprocess
import tempfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import pygit2
from pygit2.enums import FileMode
from tenacity import RetryError, Retrying, retry_if_exception, retry_if_result, stop_after_delay, wait_random

from extractor.core.errors import ConfigurationError
from extractor.core.records import Record

# re-exported: every git helper is found here
from extractor.kb.worktree import GitError as GitError
from extractor.kb.worktree import git as git
from extractor.kb.worktree import toplevel as toplevel
from extractor.kb.worktree import work_tree_root as work_tree_root


class NotReadyError(GitError, ConfigurationError):
    """The repository cannot take extractions as configured: no commits yet, or no main branch."""


class Identity(Record):
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


def checkout_problem(repo: Path) -> str | None:
    """Why committing onto the checked-out branch now would go wrong, if it would."""
    repository = open_repository(repo)
    if repository.head_is_detached:
        return "HEAD is detached; check out the branch the drafts belong on"
    if repository.state() != pygit2.enums.RepositoryState.NONE:
        return "a merge, rebase, cherry-pick or revert is in progress; finish or abort it"
    if not _index_unlocked(os.path.join(repository.path, "index.lock")):
        return "git's index is locked (.git/index.lock): another git command is running, or one was killed"
    return None


def _index_unlocked(lock: str, wait: float = 10.0) -> bool:
    """Whether git's index lock is free, waiting out one another git process (an editor's status) holds."""
    retrying = Retrying(
        retry=retry_if_result(lambda held: held), stop=stop_after_delay(wait), wait=wait_random(0.02, 0.2)
    )
    try:
        return not retrying(os.path.exists, lock)
    except RetryError:
        return False


def head(repo: Path) -> str | None:
    try:
        repository = open_repository(repo)
        return None if repository.head_is_unborn else str(repository.head.target)
    except (GitError, pygit2.GitError):
        return None


_opened: dict[tuple[str, int], tuple[pygit2.Repository, int]] = {}


def open_repository(repo: Path) -> pygit2.Repository:
    """The repository holding ``repo``, for reading and writing objects in-process.

    The handle is kept per process, so libgit2's object, config and attribute
    caches stay warm from one commit to the next. A forked worker opens its
    own, and once the packs change (``git gc``, a fetch) the next call reopens.
    """
    key = (str(repo), os.getpid())
    kept = _opened.get(key)
    if kept is not None and kept[1] == _packs_stamp(kept[0]):
        return kept[0]
    try:
        repository = pygit2.Repository(str(repo))
    except pygit2.GitError as exc:
        raise GitError(f"{repo} is not a git repository: {exc}") from exc
    _opened[key] = (repository, _packs_stamp(repository))
    return repository


def _packs_stamp(repository: pygit2.Repository) -> int:
    try:
        return os.stat(os.path.join(repository.path, "objects", "pack")).st_mtime_ns
    except OSError:
        return 0


def _commit_at(repository: pygit2.Repository, rev: str) -> pygit2.Commit | None:
    try:
        return repository.revparse_single(rev).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError):
        return None


def _blob(repository: pygit2.Repository, path: str, data: bytes) -> pygit2.Oid:
    """Store ``data`` as git would store the file at ``path``: through its clean filters (line endings)."""
    filters = repository.load_filter_list(path)
    return repository.create_blob(filters.apply_to_buffer(data) if filters else data)


def _tree_with(
    repository: pygit2.Repository, tree: pygit2.Tree | None, files: dict[str, pygit2.Oid | None], where: str = ""
) -> pygit2.Oid | None:
    """``tree`` with ``files`` (paths below it) replaced or deleted; None when nothing is left.

    Only the trees on the changed paths are rebuilt, so a commit costs the same
    whether the KB holds a hundred claims or a hundred thousand elsewhere.
    """
    if (
        tree is not None and where and all("/" not in path for path in files)
        and len(tree.id.raw) == 20 and len(tree) >= LARGE_FOLDER
    ):  # fmt: skip
        return _large_folder_with(repository, tree, files, where)
    builder = repository.TreeBuilder(tree) if tree is not None else repository.TreeBuilder()
    below: dict[str, dict[str, pygit2.Oid | None]] = {}
    for path, blob in files.items():
        name, _, rest = path.partition("/")
        if rest:
            below.setdefault(name, {})[rest] = blob
        elif blob is None:
            if builder.get(name) is not None:
                builder.remove(name)
        else:
            old = builder.get(name)
            if old is not None and old.filemode not in (FileMode.BLOB, FileMode.BLOB_EXECUTABLE):
                raise GitError(f"cannot write {where}{name}: a folder or link of that name exists")
            builder.insert(name, blob, old.filemode if old is not None else FileMode.BLOB)
    for name, inner in below.items():
        old = builder.get(name)
        if old is not None and old.filemode != FileMode.TREE:
            raise GitError(f"cannot write below {where}{name}: a file of that name exists")
        subtree = repository[old.id].peel(pygit2.Tree) if old is not None else None
        new = _tree_with(repository, subtree, inner, f"{where}{name}/")
        if new is None:
            if old is not None:
                builder.remove(name)
        else:
            builder.insert(name, new, FileMode.TREE)
    return builder.write() if len(builder) else None


LARGE_FOLDER = 5000  # entries from which a folder's tree is written from its kept listing, not by libgit2
_MODES = {FileMode.BLOB: b"100644", FileMode.BLOB_EXECUTABLE: b"100755", FileMode.LINK: b"120000",
          FileMode.TREE: b"40000", FileMode.COMMIT: b"160000"}  # fmt: skip
# Per (repository, folder): the trees last written or read there (main's, and the one written on it), by id,
# as their entries' sort keys and bytes; the most recent last.
_folders: dict[tuple[str, str], dict[str, tuple[list[bytes], list[bytes]]]] = {}
KEPT_LISTINGS = 2


def _keep(key: tuple[str, str], tree: str, keys: list[bytes], entries: list[bytes]) -> None:
    kept = _folders.setdefault(key, {})
    kept.pop(tree, None)
    kept[tree] = (keys, entries)
    while len(kept) > KEPT_LISTINGS:
        del kept[next(iter(kept))]


def _folder_entries(repository: pygit2.Repository, where: str, tree: pygit2.Tree) -> tuple[list[bytes], list[bytes]]:
    """The entries of ``tree`` (the folder ``where``), in git's order: each one's sort key (a folder's name
    ends in "/") and its bytes. Carried from the folder's last tree by their difference when only files
    directly inside it changed (a commit on main between two sources), else read from the object."""
    key = (repository.path, where)
    kept = _folders.get(key, {})
    if str(tree.id) in kept:
        keys, entries = kept[str(tree.id)]
        _keep(key, str(tree.id), keys, entries)  # the most recent again: main's listing stays while branches pass
        return keys, entries
    if kept:
        last = next(reversed(kept))
        deltas = list(repository[last].peel(pygit2.Tree).diff_to_tree(tree).deltas)
        if all("/" not in d.old_file.path and "/" not in d.new_file.path for d in deltas):
            keys, entries = list(kept[last][0]), list(kept[last][1])
            for delta in deltas:
                _place(keys, entries, delta.old_file.path.encode(), None)
                if delta.status != pygit2.enums.DeltaStatus.DELETED:
                    _place(keys, entries, delta.new_file.path.encode(), _entry(delta.new_file.path.encode(),
                                                                                delta.new_file.mode,
                                                                                delta.new_file.id))  # fmt: skip
            _keep(key, str(tree.id), keys, entries)
            return keys, entries
    raw, keys, entries, at = tree.read_raw(), [], [], 0
    width = len(tree.id.raw)
    while at < len(raw):
        space = raw.index(b" ", at)
        nul = raw.index(b"\0", space)
        entries.append(raw[at : nul + 1 + width])
        keys.append(raw[space + 1 : nul] + (b"/" if raw[at:space] == b"40000" else b""))
        at = nul + 1 + width
    _keep(key, str(tree.id), keys, entries)
    return keys, entries


def _entry(name: bytes, mode: int, oid: pygit2.Oid) -> bytes:
    return _MODES[FileMode(mode)] + b" " + name + b"\0" + oid.raw


def _place(keys: list[bytes], entries: list[bytes], name: bytes, entry: bytes | None) -> None:
    """Put ``entry`` (a file's) at its place among ``keys``, replacing the file of that name; None removes it."""
    at = bisect.bisect_left(keys, name)
    if at < len(keys) and keys[at] == name:
        del keys[at], entries[at]
    if entry is not None:
        keys.insert(at, name)
        entries.insert(at, entry)


def _large_folder_with(
    repository: pygit2.Repository, tree: pygit2.Tree, files: dict[str, pygit2.Oid | None], where: str
) -> pygit2.Oid | None:
    """:func:`_tree_with` for files directly inside a folder of thousands: libgit2 would parse, sort and
    deflate the whole listing for each commit (about 100 ms at 100,000 files). Here the listing is kept,
    the changed entries are put in their place, and the tree is stored uncompressed, as git does with
    ``core.looseCompression = 0`` (a later ``git gc`` packs it): the same tree object, byte for byte."""
    keys, entries = _folder_entries(repository, where, tree)
    keys, entries = list(keys), list(entries)
    for path, blob in files.items():
        name = path.encode()
        at = bisect.bisect_left(keys, name)
        old = entries[at] if at < len(keys) and keys[at] == name else None
        if blob is None:
            _place(keys, entries, name, None)
            _place(keys, entries, name + b"/", None)
            continue
        folder = bisect.bisect_left(keys, name + b"/")
        if folder < len(keys) and keys[folder] == name + b"/":
            raise GitError(f"cannot write {where}{path}: a folder or link of that name exists")
        mode = FileMode.BLOB if old is None else FileMode(int(old[: old.index(b" ")], 8))
        if mode not in (FileMode.BLOB, FileMode.BLOB_EXECUTABLE):
            raise GitError(f"cannot write {where}{path}: a folder or link of that name exists")
        _place(keys, entries, name, _entry(name, mode, blob))
    if not entries:
        return None
    oid = _store(repository, b"tree", b"".join(entries))
    _keep((repository.path, where), str(oid), keys, entries)
    return oid


def _store(repository: pygit2.Repository, kind: bytes, data: bytes) -> pygit2.Oid:
    """Store an object as a loose file, uncompressed (a deflate stream of stored blocks), as git does with
    ``core.looseCompression = 0``; written to a temporary file and renamed, read-only, like git's own."""
    framed = kind + b" %d\0" % len(data) + data
    oid = pygit2.Oid(hex=hashlib.sha1(framed).hexdigest())
    if oid in repository.odb:
        return oid
    folder = Path(repository.path) / "objects" / str(oid)[:2]
    folder.mkdir(exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix="tmp_obj_", delete=False) as handle:
        handle.write(zlib.compress(framed, 0))
    os.chmod(handle.name, 0o444)
    os.replace(handle.name, folder / str(oid)[2:])
    return oid


def _commit_onto(
    repository: pygit2.Repository, parent: pygit2.Commit | None, files: dict[str, pygit2.Oid | None],
    message: str, author: Identity,
) -> str:  # fmt: skip
    """A commit of ``parent``'s tree with ``files`` changed; no ref moves."""
    tree = _tree_with(repository, parent.tree if parent is not None else None, files)
    if tree is None:
        tree = repository.TreeBuilder().write()
    signature = pygit2.Signature(author.name, author.email)
    parents = [parent.id] if parent is not None else []
    return str(repository.create_commit(None, signature, signature, message, tree, parents))


def build_commit(repo: Path, paths: list[str], message: str, author: Identity) -> tuple[str, str | None]:
    """A commit of the working-tree state of ``paths`` (present or deleted) on HEAD, and its parent.

    HEAD does not move: the caller records the commit first, so a crash
    before or after :func:`move_ref` can be settled either way. Whatever the
    user has staged or changed elsewhere is neither committed nor disturbed.
    """
    repository = open_repository(repo)
    parent = None if repository.head_is_unborn else repository.head.peel(pygit2.Commit)
    files = {
        path: _blob(repository, path, (repo / path).read_bytes()) if (repo / path).is_file() else None for path in paths
    }
    commit = _commit_onto(repository, parent, files, message, author)
    return commit, str(parent.id) if parent is not None else None


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
    repository = open_repository(repo)
    commit = _commit_at(repository, rev)
    try:
        entry = commit.tree[path] if commit is not None else None
    except (KeyError, ValueError):
        return None
    if entry is None or entry.filemode not in (FileMode.BLOB, FileMode.BLOB_EXECUTABLE):
        return None
    # Decoded strictly: text that is not UTF-8 raises UnicodeDecodeError rather than being mangled.
    return repository[entry.id].peel(pygit2.Blob).data.decode("utf-8")


def uncommitted(repo: Path, paths: list[str]) -> dict[str, pygit2.enums.FileStatus]:
    """Those of ``paths`` that a person has changed and not committed (staged, unstaged or untracked), with git's
    status for each; a path absent from HEAD, the index and the work tree is not listed."""
    repository = open_repository(repo)
    changed = {}
    for path in paths:
        try:
            status = pygit2.enums.FileStatus(repository.status_file(path))
        except KeyError:
            continue
        if status & ~pygit2.enums.FileStatus.IGNORED != pygit2.enums.FileStatus.CURRENT:
            changed[path] = status
    return changed


def message_that_added(repo: Path, rev: str, path: str) -> str | None:
    """The message of the last commit in ``rev``'s history that added ``path``, if one did."""
    try:
        message = git(repo, "log", rev, "-1", "--diff-filter=A", "--format=%B", "--", path)
    except GitError:
        return None
    return message or None


class FileEdit(NamedTuple):
    """One commit's change to one file: the commit, its date, its message and the lines it added."""

    commit: str
    date: str
    message: str
    added: list[str]


def lines_added_to(repo: Path, rev: str, path: str) -> list[FileEdit]:
    """Each commit in ``rev``'s history that changed ``path``, newest first, with the lines it added."""
    try:
        log = git(repo, "log", rev, "--format=%x1e%H%x1f%cI%x1f%B%x1f", "--unified=0", "-p", "--", path)
    except GitError:
        return []
    edits = []
    for record in log.split("\x1e")[1:]:
        commit, date, message, patch = record.split("\x1f", 3)
        added = [line[1:] for line in patch.splitlines() if line.startswith("+") and not line.startswith("+++")]
        edits.append(FileEdit(commit, date, message.strip(), added))
    return edits


def _folder_at(repository: pygit2.Repository, rev: str, folder: str) -> pygit2.Object | None:
    """The tree entry of ``folder`` at a revision; None when there is no folder of that name."""
    commit = _commit_at(repository, rev)
    if commit is None:
        raise GitError(f"no commit {rev!r}")
    try:
        entry = commit.tree[folder.strip("/")]
    except (KeyError, ValueError):
        return None
    return entry if entry.filemode == FileMode.TREE else None


def names_at(repo: Path, rev: str, folder: str) -> frozenset[str]:
    """Names of every entry directly inside ``folder`` at a revision."""
    entry = _folder_at(open_repository(repo), rev, folder)
    return _tree_names(repo, str(entry.id)) if entry is not None else frozenset()


def texts_at(repo: Path, rev: str, folder: str, suffix: str = ".md") -> dict[str, str | None]:
    """Every file directly inside ``folder`` at a revision whose name ends in ``suffix``, by name, with its
    text (None for one that is not UTF-8). Empty when the revision or the folder does not exist."""
    repository = open_repository(repo)
    commit = _commit_at(repository, rev)
    try:
        entry = commit.tree[folder.strip("/")] if commit is not None else None
    except (KeyError, ValueError):
        return {}
    if entry is None or entry.filemode != FileMode.TREE:
        return {}
    texts: dict[str, str | None] = {}
    for child in repository[entry.id].peel(pygit2.Tree):
        if child.name and child.name.endswith(suffix) and child.filemode in (FileMode.BLOB, FileMode.BLOB_EXECUTABLE):
            try:
                texts[child.name] = repository[child.id].peel(pygit2.Blob).data.decode("utf-8")
            except UnicodeDecodeError:
                texts[child.name] = None
    return texts


@functools.lru_cache(maxsize=16)
def _tree_names(repo: Path, tree: str) -> frozenset[str]:
    # A tree's id is its content: every source planned against the same main reuses the listing.
    return frozenset(child.name or "" for child in open_repository(repo)[tree].peel(pygit2.Tree))


def local_branches(repo: Path) -> dict[str, str]:
    """Every local branch (name without ``refs/heads/``) and the commit it points at, read in-process."""
    repository = open_repository(repo)
    tips = {}
    for name in repository.branches.local:
        tip = _commit_at(repository, f"refs/heads/{name}")
        if tip is not None:
            tips[name] = str(tip.id)
    return tips


def unmerged_branches(repo: Path, prefix: str, into: str) -> list[str]:
    """``git for-each-ref --no-merged=refs/heads/<into> --sort=committerdate refs/heads/<prefix>``: the local
    branches under ``prefix`` whose tip ``into`` does not contain, oldest tip first."""
    repository = open_repository(repo)
    main = _commit_at(repository, f"refs/heads/{into}")
    if main is None:
        raise GitError(f"git for-each-ref failed: malformed object name refs/heads/{into}")
    found = []
    for name in repository.branches.local:
        tip = _commit_at(repository, f"refs/heads/{name}") if name.startswith(prefix) else None
        if tip is not None and tip.id != main.id and not repository.descendant_of(main.id, tip.id):
            found.append((tip.commit_time, name))
    return [name for _, name in sorted(found)]


def branch_tip(repo: Path, branch: str) -> str | None:
    """The commit local branch ``branch`` points at, looked up by its exact name (``refs/heads/<branch>``): never
    read as a revision expression (``x~1``, ``x^``, ``x@{0}``), a tag or a remote branch; None if there is none."""
    repository = open_repository(repo)
    try:
        reference = repository.references.get(f"refs/heads/{branch}")
    except (ValueError, pygit2.GitError):  # not a valid reference name at all
        return None
    if reference is None:
        return None
    try:
        return str(reference.resolve().peel(pygit2.Commit).id)
    except (KeyError, ValueError, pygit2.GitError):
        return None


def require_main_branch(kb_root: Path, main_branch: str) -> str:
    """The main branch's tip; a :class:`GitError` of one line when the repository has no commits yet or no
    branch of that name, before anything is claimed, drafted or paid for."""
    branches = local_branches(kb_root)
    if main_branch in branches:
        return branches[main_branch]
    if not branches:
        raise NotReadyError(f"{kb_root}: the repository has no commits yet: commit something first")
    # The branches a person made first: extraction branches are the pipeline's own, never a main branch.
    names = sorted(branches, key=lambda name: (name.startswith("extract/"), name))
    shown = ", ".join(names[:5]) + (f", … ({len(names) - 5} more)" if len(names) > 5 else "")
    raise NotReadyError(
        f"{kb_root}: branch {main_branch!r} does not exist; set main_branch in extractor.toml (branches here: {shown})"
    )


def rev_parse(repo: Path, rev: str) -> str | None:
    commit = _commit_at(open_repository(repo), rev)
    return str(commit.id) if commit is not None else None


def commit_tree_on(repo: Path, base: str, files: dict[str, str | None], message: str, author: Identity) -> str:
    """A commit whose tree is ``base``'s with ``files`` replaced (None deletes), without a work tree.

    Nothing outside the object store changes: the user's checkout, index and
    current branch are never touched.
    """
    repository = open_repository(repo)
    parent = _commit_at(repository, base)
    if parent is None:
        raise GitError(f"no commit {base!r}")
    blobs = {
        path: None if text is None else _blob(repository, path, text.encode("utf-8")) for path, text in files.items()
    }
    return _commit_onto(repository, parent, blobs, message, author)


def move_ref(repo: Path, ref: str, new: str, old: str | None) -> None:
    """Point ``ref`` at ``new`` if it still points at ``old`` (None: it must not exist yet).

    A ref locked by another git process is waited for briefly; a ref that moved is an error.
    """
    _on_lock_contention(repo, "update-ref", "-m", "extractor", ref, new, old or ZERO)


def merge_base(repo: Path, one: str, other: str) -> str:
    """Where two histories meet (``git merge-base``), read in-process: no process per branch listed."""
    repository = open_repository(repo)
    found = repository.merge_base(repository.revparse_single(one).id, repository.revparse_single(other).id)
    if found is None:
        raise GitError(f"{one} and {other} share no history")
    return str(found)


def changed_paths(repo: Path, base: str, tip: str) -> list[tuple[str, str]]:
    """``git diff --name-status --no-renames base tip``: (A|M|D|T, path) per file, a rename as D and A. Folders
    whose tree is the same on both sides are not opened: a branch's few changes cost a few folder reads."""
    repository = open_repository(repo)
    old, new = (repository.revparse_single(rev).peel(pygit2.Tree) for rev in (base, tip))
    return tree_changes(old, new)


def tree_changes(old: pygit2.Tree | None, new: pygit2.Tree | None, prefix: str = "") -> list[tuple[str, str]]:
    before = {entry.name or "": entry for entry in old} if old is not None else {}
    after = {entry.name or "": entry for entry in new} if new is not None else {}
    changes: list[tuple[str, str]] = []
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        if a is not None and b is not None and a.id == b.id and a.filemode == b.filemode:
            continue
        path = prefix + name
        a_tree = a if isinstance(a, pygit2.Tree) else None
        b_tree = b if isinstance(b, pygit2.Tree) else None
        if a_tree is not None or b_tree is not None:
            changes += tree_changes(a_tree, b_tree, f"{path}/")
        if a is not None and a_tree is None and b is not None and b_tree is None:  # a file on both sides
            link = FileMode.LINK
            changes.append(("T" if (a.filemode == link) != (b.filemode == link) else "M", path))
        elif a is not None and a_tree is None:
            changes.append(("D", path))
        elif b is not None and b_tree is None:
            changes.append(("A", path))
    return sorted(changes, key=lambda change: change[1])


def commits_between(repo: Path, base: str, tip: str) -> list[tuple[str, str, int]]:
    """``git log --reverse base..tip``: (commit, message, commit time) for each, oldest first."""
    repository = open_repository(repo)
    walker = repository.walk(repository.revparse_single(tip).id, pygit2.enums.SortMode.TOPOLOGICAL)
    walker.hide(repository.revparse_single(base).id)
    return [(str(commit.id), commit.message, commit.commit_time) for commit in walker][::-1]


def commit_time(repo: Path, rev: str) -> int:
    """When ``rev`` was committed (seconds since the epoch)."""
    return int(open_repository(repo).revparse_single(rev).peel(pygit2.Commit).commit_time)


def is_ancestor(repo: Path, commit: str, of: str) -> bool:
    found = subprocess.run(["git", "merge-base", "--is-ancestor", commit, of], cwd=repo, capture_output=True)
    return found.returncode == 0


def checked_out_branches(repo: Path) -> set[str]:
    """The branches checked out in any work tree of the repository (linked ones too): refs a person is
    working on, which the pipeline must not move or delete."""
    try:
        listing = git(repo, "worktree", "list", "--porcelain")
    except GitError:
        return set()
    return {line.removeprefix("branch refs/heads/") for line in listing.splitlines() if line.startswith("branch ")}


# A KB's claim folder of 100,000 files is one tree object of megabytes; libgit2 caches trees of up to 4 KB by
# default, so every diff and every commit parsed it again.
pygit2.settings.cache_object_limit(pygit2.enums.ObjectType.TREE, 64 * 1024 * 1024)


def markdown_changes(repo: Path, old: str | None, new: str) -> list[tuple[str, str | None]]:
    """The ``.md`` files that differ between commits ``old`` and ``new`` (all of ``new``'s when ``old`` is
    None), each with its blob in ``new``, or None where it is gone (or became a link). A rename is a removal
    and an addition; folders equal on both sides are not opened."""
    repository = open_repository(repo)
    new_tree = repository.revparse_single(new).peel(pygit2.Tree)
    if old is None:
        diff = new_tree.diff_to_tree(swap=True)
    else:
        diff = repository.revparse_single(old).peel(pygit2.Tree).diff_to_tree(new_tree)
    changes: list[tuple[str, str | None]] = []
    for delta in diff.deltas:
        path = delta.new_file.path if delta.status != pygit2.enums.DeltaStatus.DELETED else delta.old_file.path
        if not path.endswith(".md"):
            continue
        gone = delta.status == pygit2.enums.DeltaStatus.DELETED or delta.new_file.mode != FileMode.BLOB
        changes.append((path, None if gone else str(delta.new_file.id)))
    return changes


def blob_text(repo: Path, blob: str) -> str:
    """A blob's text; "" when it is not UTF-8."""
    try:
        return open_repository(repo)[blob].peel(pygit2.Blob).data.decode("utf-8")
    except UnicodeDecodeError:
        return ""


def descends_from(repo: Path, commit: str, ancestor: str) -> bool:
    """``commit`` has ``ancestor`` in its history (or is it)."""
    if commit == ancestor:
        return True
    try:
        return bool(open_repository(repo).descendant_of(commit, ancestor))
    except (KeyError, ValueError, pygit2.GitError):
        return False


# Per (repository, folder): the tree last listed and its names, case-folded, with how many entries fold to each.
_folded: dict[tuple[str, str], tuple[str, Counter[str]]] = {}


def folded_names_at(repo: Path, rev: str, folder: str) -> Counter[str]:
    """The names directly inside ``folder`` at a revision, case-folded and counted (read only: it is kept).

    A folder of 100,000 claims changes by a few files from one main to the next: the listing is carried
    from the tree it was last taken of by the difference between the two trees, not taken again.
    """
    repository = open_repository(repo)
    entry = _folder_at(repository, rev, folder)
    if entry is None:
        return Counter()
    key, tree = (str(repo), folder.strip("/")), str(entry.id)
    kept = _folded.get(key)
    if kept is not None and kept[0] == tree:
        return kept[1]
    counts: Counter[str] | None = None
    if kept is not None:
        before, after = (repository[oid].peel(pygit2.Tree) for oid in (kept[0], tree))
        deltas = list(before.diff_to_tree(after).deltas)
        if all("/" not in delta.old_file.path and "/" not in delta.new_file.path for delta in deltas):
            counts = kept[1]
            for delta in deltas:
                if delta.status == pygit2.enums.DeltaStatus.DELETED:
                    name = delta.old_file.path.casefold()
                    counts[name] -= 1
                    if counts[name] <= 0:
                        del counts[name]
                elif delta.status == pygit2.enums.DeltaStatus.ADDED:
                    counts[delta.new_file.path.casefold()] += 1
    if counts is None:  # the first listing, or a subfolder came or went
        counts = Counter((child.name or "").casefold() for child in repository[entry.id].peel(pygit2.Tree))
    _folded[key] = (tree, counts)
    return counts


def is_folder_at(repo: Path, rev: str, folder: str) -> bool:
    """``folder`` is a folder at a revision."""
    return _folder_at(open_repository(repo), rev, folder) is not None
