"""File names from titles: kebab-case ASCII, bounded, never a reserved name, numbered when taken."""

from __future__ import annotations

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
    """A file stem for a title: kebab-case ASCII, bounded, never a reserved name."""
    slug = slugify(title, max_length=SLUG_MAX, word_boundary=True, save_order=True) or "claim"
    if slug in WINDOWS_RESERVED:
        slug += "-claim"
    return slug


def unique_name(slug: str, taken: set[str]) -> str:
    name, number = f"{slug}.md", 2
    while name.casefold() in taken:
        name, number = f"{slug}-{number}.md", number + 1
    taken.add(name.casefold())
    return name
