"""A converted document as an inbox source: its file name as the KB names sources, and its frontmatter.
Computed only; the caller writes."""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from slugify import slugify

from extractor.core.text import one_line
from extractor.ingest.document import Document
from extractor.kb.names import bounded

TITLE_SLUG_MAX = 60
WHO_SLUG_MAX = 24
_HANDLE = re.compile(r"\(.*?\)|@\S+")


def who_slug(document: Document) -> str:
    """The first author's surname, else the site, else ``unknown``: ``2024-03-05-lovelace-...``."""
    if document.authors:
        name = _HANDLE.sub(" ", document.authors[0]).strip()
        if "," in name:  # "Lovelace, Ada"
            name = name.split(",")[0]
        words = name.split()
        if words:
            return bounded(slugify(words[-1]), WHO_SLUG_MAX) or "unknown"
    if document.site:
        return bounded(slugify(document.site.removeprefix("www.")), WHO_SLUG_MAX) or "unknown"
    if document.url:
        try:
            host = urlsplit(document.url).hostname or ""
        except ValueError:
            host = ""
        return bounded(slugify(host.removeprefix("www.")), WHO_SLUG_MAX) or "unknown"
    return "unknown"


def source_name(document: Document, today: datetime.date) -> str:
    """``<date>-<first author or site>-<title slug>.md``, the corpus's naming; a source without a date is named
    for the day it came in."""
    day = document.date or today.isoformat()
    title = bounded(slugify(document.title or ""), TITLE_SLUG_MAX) or "untitled"
    return f"{day}-{who_slug(document)}-{title}.md"


def canonical_url(url: str) -> str:
    """The URL two ingests of one page share: no fragment, lower-case host, no trailing slash."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # "http://[::1": not a URL anything can fetch; compared as written
        return url.strip()
    path = parts.path.rstrip("/") or ""
    return urlunsplit((parts.scheme.lower(), (parts.netloc or "").lower(), path, parts.query, ""))


def text_hash(text: str) -> str:
    """The hash of a body with its spacing evened out: the same text ingested twice is found whatever its
    line breaks."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def author_line(authors: list[str]) -> str | None:
    """Names joined with commas, or with semicolons when a name has its own comma (``Lee, Ann; Ortiz, Sam``)."""
    names = [one_line(name) for name in authors if one_line(name)]
    return ("; " if any("," in name for name in names) else ", ").join(names) or None


def source_metadata(
    document: Document,
    *,
    domain: str,
    fmt: str | None,
    tags: list[str],
    today: datetime.date,
    domain_chosen_by: str | None,
) -> dict[str, Any]:
    """The frontmatter of the new source. ``ingested`` and ``ingested_from`` say when and how it came in;
    ``domain_chosen_by`` names the model when one chose the domain."""
    return {
        "type": "source",
        "title": one_line(document.title) if document.title else None,
        "author": author_line(document.authors),
        "url": document.url,
        "date": document.date or today.isoformat(),
        "domain": domain,
        "format": fmt or document.format,
        "status": "unprocessed",
        "tags": tags,
        "doi": document.doi,
        "arxiv": document.arxiv,
        "ingested": today.isoformat(),
        "ingested_from": document.kind,
        "domain_chosen_by": domain_chosen_by,
    }
