"""File names from titles: kebab-case ASCII, bounded, never a reserved name, numbered when taken."""

from __future__ import annotations

from typing import Protocol

from slugify import slugify

SLUG_MAX = 120
WINDOWS_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(10)),
    *(f"lpt{i}" for i in range(10)),
}


def slug_for(title: str) -> str:
    """A file stem for a title: kebab-case ASCII, bounded at a word boundary, never a reserved name."""
    slug = bounded(slugify(title)) or "claim"
    if slug in WINDOWS_RESERVED:
        slug += "-claim"
    return slug


def bounded(slug: str, limit: int = SLUG_MAX) -> str:
    """The slug cut to ``limit`` characters at its last ``-`` (a word boundary); cut hard only when its first
    word alone is longer. Never ends with ``-``."""
    if len(slug) <= limit:
        return slug
    cut = slug.rfind("-", 0, limit + 1)
    return (slug[:cut] if cut > 0 else slug[:limit]).rstrip("-")


class Names(Protocol):
    """Case-folded names already taken; a given name is added."""

    def __contains__(self, name: object, /) -> bool: ...

    def add(self, name: str, /) -> None: ...


def unique_name(slug: str, taken: Names) -> str:
    """``slug.md``, or ``slug-2.md``, ``slug-3.md``... when taken (case-insensitively); a numbered name's stem
    is shortened at a word boundary so the whole stays within :data:`SLUG_MAX`."""
    name, number = f"{slug}.md", 2
    while name.casefold() in taken:
        suffix = f"-{number}"
        name, number = f"{bounded(slug, SLUG_MAX - len(suffix))}{suffix}.md", number + 1
    taken.add(name.casefold())
    return name
