"""Where a domain's claims live: the one answer planning, review and ``init`` all use.

A KB may keep some domains outside ``claims_dir`` (``foundations/collective-intelligence/``,
``core/living-agents/``). The folder of domain D is ``domain_dirs[D]`` when the settings name one; else a
folder named D directly under ``claims_dir`` or one of ``enrich_dirs`` that the KB already has, the first
in that order; else ``claims_dir/D``, made by the first claim written there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from extractor.core.settings import Settings

# A folder name that can be a domain: what a domain's slug looks like.
_DOMAIN_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def claim_roots(settings: Settings) -> list[str]:
    """The folders whose subfolders are domains, in the order they are searched: ``claims_dir``, then
    ``enrich_dirs``."""
    return [_clean(folder) for folder in dict.fromkeys([settings.claims_dir, *settings.enrich_dirs])]


def candidate_folders(domain: str, settings: Settings) -> list[str]:
    """Every folder that may hold claims of ``domain``, whatever the KB holds today, in the order they are
    preferred: ``domain_dirs[domain]`` alone when set, else ``<root>/<domain>`` for each claim root."""
    if domain in settings.domain_dirs:
        return [_clean(settings.domain_dirs[domain])]
    return [str(PurePosixPath(root, domain)) for root in claim_roots(settings)]


def folder_for(domain: str, settings: Settings, has_folder: Callable[[str], bool]) -> str:
    """The folder that holds (and receives new) claims of ``domain``; ``has_folder`` tells whether the KB has
    a folder (the work tree, or the tree of the branch claims are planned against)."""
    candidates = candidate_folders(domain, settings)
    if domain in settings.domain_dirs:
        return candidates[0]
    fallback = str(PurePosixPath(settings.claims_dir, domain))
    return next((folder for folder in candidates if has_folder(folder)), fallback)


def domain_folder(kb_root: Path, settings: Settings, domain: str) -> str:
    """:func:`folder_for` against the KB's work tree."""
    return folder_for(domain, settings, _work_tree(kb_root))


def domain_folders(kb_root: Path, settings: Settings) -> dict[str, str]:
    """Every domain → its claim folder: the settings' domains and ``domain_dirs``, then the folders found
    directly under the claim roots (sorted), each once."""
    found = [
        entry.name
        for root in claim_roots(settings)
        if (kb_root / root).is_dir()
        for entry in sorted((kb_root / root).iterdir())
        if entry.is_dir() and not entry.is_symlink() and _DOMAIN_NAME.match(entry.name)
    ]
    has_folder = _work_tree(kb_root)
    domains = dict.fromkeys([*settings.domains, *settings.domain_dirs, *found])
    return {domain: folder_for(domain, settings, has_folder) for domain in domains}


def domain_of(path: str, settings: Settings) -> str | None:
    """The domain whose claim folder holds the file at ``path``: a ``domain_dirs`` folder's domain, or the
    name of the folder under a claim root when it is one of the settings' domains; None otherwise."""
    where = PurePosixPath(path)
    for domain, folder in settings.domain_dirs.items():  # apart from each other: settings refuse overlaps
        if where.parent.is_relative_to(_clean(folder)):
            return domain
    known = {*settings.domains, *settings.domain_dirs}
    for root in claim_roots(settings):
        if where.is_relative_to(root):
            parts = where.relative_to(root).parts
            if len(parts) >= 2 and parts[0] in known:
                return parts[0]
    return None


def _clean(folder: str) -> str:
    """A folder as settings may spell it (``foundations/ci/``, ``./core``), in the form paths are compared in."""
    return str(PurePosixPath(folder.strip()))


def _work_tree(kb_root: Path) -> Callable[[str], bool]:
    return lambda folder: (kb_root / folder).is_dir()
