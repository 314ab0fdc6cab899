"""Web pages, feeds, markdown and plain text into documents: the main content of a page (trafilatura) with its
metadata, a feed's entries (feedparser), and text files as they are."""

from __future__ import annotations

import codecs
import re
import time
from typing import Any
from urllib.parse import urljoin

from extractor.core.records import Record
from extractor.ingest.document import Document, IngestError, calendar_day
from extractor.kb.yamlio import has_frontmatter, split_document

_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)
MIN_PAGE_CHARS = 50  # less is a menu, a cookie banner or a login wall, not an article
_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?")


def kb_date(value: str | None) -> str | None:
    """``2024-03-05T10:00`` -> ``2024-03-05``; ``2024-03`` -> ``2024-03-00``; ``2024`` -> ``2024-00-00``."""
    match = _DATE.match(value.strip()) if value else None
    if match is None:
        return None
    year, month, day = match.group(1), match.group(2) or "00", match.group(3) or "00"
    if year == "0000" or int(month) > 12 or (month == "00" and day != "00"):
        return None  # not a date: 2024-13-45 would name a file and pass for one
    if day != "00" and not calendar_day(int(year), int(month), int(day)):
        return None  # 2024-02-30
    return f"{year}-{month}-{day}"


def _decoded(data: bytes, charset: str | None) -> str | bytes:
    """The page as text when its server named a charset Python knows; else the bytes, for trafilatura to read
    the page's own ``<meta charset>`` or guess."""
    if charset:
        try:
            codecs.lookup(charset)
        except LookupError:
            return data
        return data.decode(charset, errors="replace")
    return data


def _authors(value: str | None) -> list[str]:
    if not value:
        return []
    return [name.strip() for name in re.split(r";|\s+and\s+|\s*&\s*", value) if name.strip()]


SCHOLAR_KEYS = {
    "citation_title", "citation_author", "citation_publication_date", "citation_date", "citation_online_date",
    "citation_doi", "citation_arxiv_id", "dc.identifier", "prism.doi",
}  # fmt: skip
_DOI = re.compile(r"10\.\d{4,9}/\S+")


def scholar_tags(page: str | bytes) -> dict[str, list[str]]:
    """The Highwire/Dublin Core ``<meta>`` tags publishers put on a paper's page (``citation_doi``,
    ``citation_author``...), by lower-case name; trafilatura reads none of them."""
    from lxml import etree
    from lxml import html as lxml_html

    raw = page.encode("utf-8") if isinstance(page, str) else page
    try:
        tree = lxml_html.fromstring(raw)
    except (ValueError, etree.ParserError):
        return {}
    found: dict[str, list[str]] = {}
    for meta in tree.iter("meta"):
        name = (meta.get("name") or meta.get("property") or "").strip().lower()
        content = " ".join((meta.get("content") or "").split())
        if name in SCHOLAR_KEYS and content:
            found.setdefault(name, []).append(content)
    return found


def paper_fields(tags: dict[str, list[str]]) -> dict[str, Any]:
    """What the scholar tags say, as Document fields; empty when the page has none."""
    fields: dict[str, Any] = {}
    if title := tags.get("citation_title"):
        fields["title"] = title[0]
    if authors := tags.get("citation_author"):
        fields["authors"] = authors
    for key in ("citation_publication_date", "citation_date", "citation_online_date"):
        if key in tags and (day := kb_date(tags[key][0].replace("/", "-"))):
            fields["date"] = day
            break
    for key in ("citation_doi", "prism.doi", "dc.identifier"):
        doi = next((_DOI.search(value) for value in tags.get(key, []) if _DOI.search(value)), None)
        if doi is not None:
            fields["doi"] = doi.group(0).rstrip(".,;")
            break
    if arxiv := tags.get("citation_arxiv_id"):
        fields["arxiv"] = arxiv[0]
    if any(key.startswith("citation_") for key in tags):
        fields["format"] = "paper"
    return fields


def html_document(
    item: str, data: bytes, url: str | None = None, charset: str | None = None, max_bytes: int | None = None
) -> Document:
    """The page's main content as markdown (headings, lists, tables, links kept), with its metadata."""
    import trafilatura

    if max_bytes is not None and len(data) > max_bytes:
        raise IngestError(item, f"a page of {len(data)} bytes of HTML, more than {max_bytes}: save its text instead")
    page = _decoded(data, charset)
    text = trafilatura.extract(
        page,
        url=url,
        output_format="markdown",
        include_links=True,
        include_tables=True,
        include_formatting=True,
        include_comments=False,
        favor_recall=True,
    )
    if not text or len(text.strip()) < MIN_PAGE_CHARS:
        raise IngestError(item, f"no main text found in the page (at least {MIN_PAGE_CHARS} characters)")
    # extensive=False: dates from the page's markup only; its text ("back in 2009...") is no date of it
    meta = trafilatura.extract_metadata(page, default_url=url, extensive=False)
    title = meta.title if meta is not None else None
    if not title and (heading := _HEADING.search(text)):
        title = heading.group(1)
    document = Document(
        text=text.strip(),
        title=title,
        authors=_authors(meta.author if meta is not None else None),
        date=kb_date(meta.date if meta is not None else None),
        url=url,  # where it was fetched from: a page's canonical link may name its site's home page
        site=(meta.sitename or meta.hostname) if meta is not None else None,
        format="article",
        kind="html",
    )
    return document.model_copy(update=paper_fields(scholar_tags(page)))


def text_document(item: str, data: bytes, kind: str) -> Document:
    """Markdown or plain text as it is; a markdown file's own frontmatter gives its metadata."""
    try:
        text = data.decode("utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        raise IngestError(item, f"not UTF-8 text (byte {exc.start}): convert it first") from exc
    metadata: dict[str, Any] = {}
    if kind == "markdown" and has_frontmatter(text):
        try:
            metadata, text = split_document(text)
        except Exception as exc:  # noqa: BLE001 - any frontmatter problem is the item's, said in one line
            raise IngestError(item, f"its frontmatter cannot be read: {exc}") from exc
    text = text.strip()
    if not text:
        raise IngestError(item, "empty: no text to ingest")
    title = metadata.get("title")
    if not title and (heading := _HEADING.search(text)):
        title = heading.group(1)
    author = metadata.get("author") or metadata.get("authors")
    authors = [str(a) for a in author] if isinstance(author, list) else _authors(str(author) if author else None)
    tags = metadata.get("tags")
    if isinstance(tags, str):
        tags = tags.split(",")

    def field(key: str) -> str | None:
        return str(metadata[key]) if metadata.get(key) not in (None, "", []) else None

    return Document(
        text=text,
        title=str(title) if title else None,
        authors=authors,
        date=kb_date(field("date")),
        url=field("url"),
        doi=field("doi"),
        arxiv=field("arxiv"),
        format=field("format"),
        domain=field("domain"),
        tags=[str(tag) for tag in tags] if isinstance(tags, list) else [],
        kind=kind,
    )


class FeedEntry(Record):
    """One entry of a feed: its identity (to remember it), the page it links to, and what the feed says."""

    id: str
    link: str | None = None
    title: str | None = None
    authors: list[str] = []
    date: str | None = None
    content: str | None = None  # HTML the feed carries, used when the entry links nowhere


def _entry_date(entry: Any) -> str | None:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    return time.strftime("%Y-%m-%d", parsed) if parsed else None


def feed_entries(item: str, data: bytes, base_url: str | None = None) -> tuple[str | None, list[FeedEntry]]:
    """The feed's title and its entries, in the feed's order, links made absolute against ``base_url``. Parsed
    from bytes only: feedparser never fetches."""
    import feedparser

    parsed = feedparser.parse(data, response_headers={"content-location": base_url} if base_url else None)
    if not parsed.get("version"):
        problem = parsed.get("bozo_exception")
        raise IngestError(item, f"not an RSS or Atom feed{f' ({problem})' if problem else ''}")
    base_url = base_url or parsed.feed.get("link")  # a feed saved as a file: its own link is the base
    feed_author = parsed.feed.get("author")
    entries = []
    for entry in parsed.entries:
        link = entry.get("link")
        if link and base_url:
            link = urljoin(base_url, link)
        ident = entry.get("id") or link or entry.get("title")
        if not ident:
            continue
        names = [a.get("name") for a in entry.get("authors", []) if a.get("name")] or _authors(feed_author)
        contents = [c.get("value", "") for c in entry.get("content", [])]
        entries.append(
            FeedEntry(
                id=str(ident),
                link=str(link) if link else None,
                title=entry.get("title"),
                authors=names,
                date=_entry_date(entry),
                content="\n".join(contents) or entry.get("summary"),
            )
        )
    return parsed.feed.get("title"), entries
