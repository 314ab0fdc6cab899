"""What an item holds, from its bytes first and its label second: a server that calls a PDF ``text/html``
must not have the PDF read as a web page."""

from __future__ import annotations

import re

from extractor.ingest.document import IngestError

HTML_TYPES = {"text/html", "application/xhtml+xml"}
FEED_TYPES = {"application/rss+xml", "application/atom+xml", "application/rdf+xml"}
XML_TYPES = {"application/xml", "text/xml"}
TEXT_TYPES = {"text/plain": "text", "text/markdown": "markdown", "text/x-markdown": "markdown"}
SUFFIXES = {
    ".pdf": "pdf",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rss": "feed",
    ".atom": "feed",
}
_FEED_ROOT = re.compile(rb"<(rss|feed|rdf:RDF)[\s>]", re.IGNORECASE)
_HTML_ROOT = re.compile(rb"<(!doctype html|html|head|body)[\s>]", re.IGNORECASE)


def is_pdf(data: bytes) -> bool:
    return b"%PDF-" in data[:1024]


def _sniffed(head: bytes) -> str | None:
    if _FEED_ROOT.search(head):
        return "feed"
    if _HTML_ROOT.search(head):
        return "html"
    return None


def kind_of(item: str, data: bytes, content_type: str = "", suffix: str = "", charset: str | None = None) -> str:
    """``pdf``, ``html``, ``feed``, ``markdown`` or ``text``; an :class:`IngestError` for anything else. Text in
    UTF-16 or UTF-32 (named by its charset or its byte-order mark) has NUL bytes and is still text."""
    if is_pdf(data):
        return "pdf"
    if content_type == "application/pdf" or suffix == ".pdf":
        raise IngestError(item, "labelled a PDF but it is not one (no %PDF- header)")
    known_type = content_type in HTML_TYPES | FEED_TYPES | XML_TYPES or content_type.startswith("text/")
    if content_type and not known_type:
        raise IngestError(item, f"unsupported content type {content_type}")
    wide = (charset or "").lower().startswith(("utf-16", "utf-32")) or data[:2] in (b"\xff\xfe", b"\xfe\xff")
    if b"\x00" in data[:4096] and not wide:
        raise IngestError(item, f"binary content ({content_type or suffix or 'unknown type'}), not a document")
    sniffed = _sniffed(data[:2048])
    if content_type in FEED_TYPES or (content_type in XML_TYPES and sniffed == "feed"):
        return "feed"
    if content_type in HTML_TYPES:
        return "feed" if sniffed == "feed" else "html"
    if content_type in TEXT_TYPES:
        return TEXT_TYPES[content_type]
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    return sniffed or "text"
