"""Markdown for the review page: the source and the drafts rendered by markdown-it (CommonMark, raw HTML and
images off, links only to http, https and mailto), and the evidence highlights put into the rendered source
on the right characters. Pure: text in, HTML out.

Highlights are placed with private-use sentinel characters at each segment's boundaries before rendering,
moved off block and inline markup so the markdown still parses the same, and turned into ``<mark>``
elements afterwards, one per run of text between tags, so a mark never straddles an element.
"""

from __future__ import annotations

import bisect
import re
import string
import sys
import unicodedata
import urllib.parse
from collections.abc import Callable
from typing import Any, NamedTuple

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup, escape
from pydantic import BaseModel, Field


class Segment(BaseModel):
    """A stretch of the source body; marked when evidence items cover it (``evidence`` lists their ids)."""

    text: str
    evidence: list[str] = Field(default_factory=list)
    mark_id: str | None = None

    @property
    def link(self) -> str | None:
        return self.evidence[0] if self.evidence else None


#
# The source body is rendered as markdown with each marked segment highlighted on the characters it covers.
# markdown-it gives no character offsets for inline text, so the segment boundaries travel through the parser
# as sentinels: private-use characters (a start or an end, then the mark's number in private-use digits)
# inserted into the body. They are plain text to markdown, come out in the HTML where their characters do, and
# are then turned into <mark> elements, one per run of text between two tags, so no mark ever straddles an
# element. A sentinel placed inside block markup (a list marker, a heading's "#") or an emphasis run would
# change how the body parses, so boundaries are first moved off markup onto the nearest text.

LINK_SCHEMES = ("http", "https", "mailto")
LINK_REL = "noreferrer noopener"
MARK_START, MARK_END = "\ue000", "\ue001"
_DIGIT_ZERO = 0xE010
_SENTINEL = re.compile("[\ue000\ue001][\ue010-\ue019]+")
_RESERVED = re.compile("[\ue000-\ue01f]")  # the sentinels' characters: replaced when a text brings its own
_TAG = re.compile(r"(<[^>]*>)")
_TAG_NAME = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)")
_VOID_TAGS = {"br", "hr", "img", "input", "wbr"}
# Elements whose whitespace shows as a space: a marked space there is highlighted, elsewhere it is left alone.
_INLINE_HOLDERS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "a", "code", "td", "th"}

_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_THEMATIC_OR_UNDERLINE = re.compile(r" {0,3}(?:([-*_])(?:[ \t]*\1){2,}|=+|-+)[ \t\r]*$")
_PREFIX = re.compile(r"(?:[ \t]*(?:>|[-+*](?=[ \t]|$)|\d{1,9}[.)](?=[ \t]|$)))*[ \t]*(?:(#{1,6})(?=[ \t]|$)[ \t]*)?")
_HEADING_END = re.compile(r"(?:[ \t]+#+)?[ \t\r]*$")
_LINE_END = re.compile(r"[ \t\r]*$")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{0,31});")
_AUTOLINK = re.compile(r"<[A-Za-z][A-Za-z0-9+.\-]{1,31}:[^<>\x00-\x20]*>")
_LINK_TAIL = re.compile(r"\]\([^()\s]*(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")


def _sentinel(kind: str, number: int) -> str:
    return kind + "".join(chr(_DIGIT_ZERO + int(digit)) for digit in str(number))


def _sentinel_number(sentinel: str) -> int:
    return int("".join(str(ord(char) - _DIGIT_ZERO) for char in sentinel[1:]))


class _Markdown(MarkdownIt):
    """CommonMark with raw HTML and images off, links only to http(s) and mailto.

    Sentinels are stripped before a link's address is checked or normalised (so a mark's boundary can neither
    hide a ``javascript:`` scheme nor be percent-encoded into an address) and kept, raw, at the end of the
    address, where :func:`_made_safe` takes them out and puts them back into the text.
    """

    def __init__(self) -> None:
        super().__init__("commonmark", {"html": False})
        self.disable("image")

    def validateLink(self, url: str) -> bool:  # noqa: N802 - markdown-it's naming
        plain = _SENTINEL.sub("", url)
        scheme = urllib.parse.urlsplit(plain).scheme.lower() if ":" in plain else ""
        return super().validateLink(plain) and scheme in LINK_SCHEMES

    def normalizeLink(self, url: str) -> str:  # noqa: N802
        return super().normalizeLink(_SENTINEL.sub("", url)) + "".join(_SENTINEL.findall(url))


_MARKDOWN: list[_Markdown] = []


def _markdown() -> _Markdown:
    if not _MARKDOWN:
        _MARKDOWN.append(_Markdown())
    return _MARKDOWN[0]


def _made_safe(tokens: list[Token]) -> list[Token]:
    """Links get rel="noreferrer noopener"; sentinels in attributes are taken out, and those the link's text
    does not hold already are put back as text right after the link (so a mark still opens or closes)."""
    for token in tokens:
        token.info = _SENTINEL.sub("", token.info)  # a fence's info string becomes a class attribute
        if not token.children:
            continue
        children: list[Token] = []
        moved: list[str] = []
        seen: set[str] = set()
        for child in token.children:
            if child.type == "link_open":
                moved, seen = [], set()
                for name in ("href", "title"):
                    value = child.attrGet(name)
                    if value is not None:
                        moved += _SENTINEL.findall(str(value))
                        child.attrSet(name, _SENTINEL.sub("", str(value)))
                child.attrSet("rel", LINK_REL)
            elif child.type == "link_close":
                children.append(child)
                if lost := [sentinel for sentinel in moved if sentinel not in seen]:
                    children.append(Token("text", "", 0, content="".join(lost)))
                moved = []
                continue
            else:
                seen.update(_SENTINEL.findall(child.content))
            children.append(child)
        token.children = children
    return tokens


def render_markdown(text: str, inline: bool = False) -> Markup:
    """A claim's or a note's markdown as HTML: raw HTML escaped, links checked. The one text marked safe."""
    markdown = _markdown()
    env: dict[str, Any] = {}
    clean = _RESERVED.sub("\ufffd", text)
    tokens = markdown.parseInline(clean, env) if inline else markdown.parse(clean, env)
    return Markup(markdown.renderer.render(_made_safe(tokens), markdown.options, env))


class _Line(NamedTuple):
    start: int
    content_start: int  # the inline text of the line, markup aside; empty for a line of markup alone
    content_end: int


def _lines(body: str) -> list[_Line]:
    """Each line's inline text: after its block markup (quote, list marker, heading), before trailing blanks.
    Fence lines, thematic breaks, setext underlines and blank lines have none; code in a fence is all text."""
    lines: list[_Line] = []
    fence: str | None = None
    position = 0
    for text in body.split("\n"):
        start, end = position, position + len(text)
        position = end + 1
        opening = _FENCE.match(text)
        if fence is not None:
            closing = opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence)
            if opening and closing and not text[opening.end() :].strip():
                fence = None
                lines.append(_Line(start, end, end))
                continue
            lines.append(_Line(start, start, end) if text.strip() else _Line(start, end, end))
            continue
        if opening:
            fence = opening.group(1)
            lines.append(_Line(start, end, end))
            continue
        if _THEMATIC_OR_UNDERLINE.match(text) or not text.strip():
            lines.append(_Line(start, end, end))
            continue
        prefix = _PREFIX.match(text)
        content = prefix.end() if prefix else 0
        heading = bool(prefix and prefix.group(1))
        if _THEMATIC_OR_UNDERLINE.match(text, content):  # a break inside a list item or a quote
            lines.append(_Line(start, end, end))
            continue
        if not heading and (inner := _FENCE.match(text, content)):  # in a list item or a quote (its end: roughly)
            fence = inner.group(1)
            lines.append(_Line(start, end, end))
            continue
        # A heading's closing "#"s may follow the very blank that ends its opening ones ("# #": empty).
        tail = (_HEADING_END if heading else _LINE_END).search(text, max(content - 1, 0) if heading else content)
        close = tail.start() if tail else len(text)
        lines.append(_Line(start, start + content, start + max(close, content)))
    return lines


def _fit_start(position: int, lines: list[_Line], starts: list[int], size: int) -> int:
    """A start moved forward onto inline text (past block markup, blank and markup-only lines)."""
    index = bisect.bisect_right(starts, position) - 1
    while index < len(lines):
        line = lines[index]
        if line.content_start < line.content_end:
            if position < line.content_start:
                return line.content_start
            if position < line.content_end:
                return position
        index, position = index + 1, -1
    return size


def _fit_end(position: int, lines: list[_Line], starts: list[int]) -> int:
    """An end moved back onto inline text (before a newline rather than after the next line's markup)."""
    index = bisect.bisect_right(starts, position) - 1
    while index >= 0:
        line = lines[index]
        if line.content_start < line.content_end:
            if position > line.content_end:
                return line.content_end
            if position > line.content_start:
                return position
        index, position = index - 1, sys.maxsize
    return 0


def _word(char: str) -> bool:
    return not char.isspace() and char not in string.punctuation and not unicodedata.category(char).startswith("P")


def _settle(body: str, position: int) -> int:
    """A boundary moved out of inline syntax it would break: an entity, an autolink, a link's ``](address)``,
    a backtick run, a backslash escape and an emphasis run (put on the side where the run touches a word, so the run's
    flanking, and with it the emphasis, stays as it was). One position maps to one place whatever the
    boundary's kind, so segments stay in order."""
    size = len(body)
    for pattern in (_ENTITY, _AUTOLINK, _LINK_TAIL):
        for found in pattern.finditer(body, max(0, position - 300), min(size, position + 300)):
            if found.start() < position < found.end():
                position = found.end() if pattern is _LINK_TAIL else found.start()
    while 0 < position < size and body[position - 1] == "`" and body[position] == "`":
        position -= 1
    runs = []
    if position < size and body[position] in "*_":
        runs.append(_run(body, position))
    if position > 0 and body[position - 1] in "*_" and (not runs or body[position - 1] != body[position]):
        runs.append(_run(body, position - 1))
    for low, high in runs:
        before = body[low - 1] if low > 0 else "\n"
        after = body[high] if high < size else "\n"
        if _word(after) and not _word(before):
            return _unescaped(body, high)
        if _word(before):
            return _unescaped(body, low)
    inside = next((low for low, high in runs if low < position < high), position)  # never split a run
    return _unescaped(body, inside)


def _run(body: str, position: int) -> tuple[int, int]:
    """The run of ``body[position]`` (an emphasis character) around ``position``."""
    char, low, high = body[position], position, position + 1
    while low > 0 and body[low - 1] == char:
        low -= 1
    while high < len(body) and body[high] == char:
        high += 1
    return low, high


def _unescaped(body: str, position: int) -> int:
    """A boundary between a backslash and what it escapes (or the line break it makes) moved before it."""
    if 0 < position < len(body) and body[position - 1] == "\\" and body[position] in string.punctuation + "\n":
        return position - 1
    return position


def fit_marks(body: str, spans: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Marked spans (number, start, end), in order and apart, moved so that sentinels at their boundaries
    leave the body's markdown parsing as it was; spans left with no text are dropped.

    Starts only move forward over markup and ends back (then both the same way out of inline syntax), so
    spans stay in order and apart; the steps repeat until nothing moves, as one move can bring a boundary
    next to other markup.
    """
    lines = _lines(body)
    starts = [line.start for line in lines]

    def settled(position: int, fit: Callable[[int], int]) -> int:
        position = fit(position)
        for _ in range(32):
            moved = fit(_settle(body, position))
            if moved == position:
                break
            position = moved
        return position

    fitted = []
    for number, start, end in spans:
        start = settled(start, lambda at: _fit_start(at, lines, starts, len(body)))
        end = settled(end, lambda at: _fit_end(at, lines, starts))
        if start < end:
            fitted.append((number, start, end))
    return fitted


def _with_sentinels(body: str, spans: list[tuple[int, int, int]]) -> str:
    events = sorted(
        [(end, 0, _sentinel(MARK_END, number)) for number, _, end in spans]
        + [(start, 1, _sentinel(MARK_START, number)) for number, start, _ in spans]
    )
    pieces, position = [], 0
    for at, _, sentinel in events:
        pieces += [body[position:at], sentinel]
        position = at
    return "".join([*pieces, body[position:]])


def _marks_in(html: str, segments: dict[int, Segment]) -> tuple[str, list[str]]:
    """Sentinels in rendered HTML turned into flat <mark> elements: one per run of text, the first carrying
    the id; returns the HTML and the ids of the marks it holds."""
    out: list[str] = []
    stack: list[str] = []
    shown: list[str] = []
    current: int | None = None

    def wrap(text: str) -> str:
        segment = segments.get(current) if current is not None else None
        if segment is None or not text:
            return text
        inline = bool(stack) and stack[-1] in _INLINE_HOLDERS
        if not text.strip() and (not inline or "\n" in text):
            return text  # whitespace between blocks: nothing shows
        classes = ["overlap"] if len(segment.evidence) > 1 else []
        ident = ""
        if segment.mark_id and segment.mark_id not in shown:
            shown.append(segment.mark_id)
            ident = f' id="{escape(segment.mark_id)}"'
        else:
            classes.append("cont")
        evidence = escape(" ".join(segment.evidence))
        attributes = f'{ident} data-evidence="{evidence}"'
        if classes:
            attributes += f' class="{" ".join(classes)}"'
        attributes += f' title="evidence {escape(", ".join(segment.evidence))}"'
        if "a" in stack:  # inside a link of the source: no link inside a link
            return f"<mark{attributes}>{text}</mark>"
        return f'<mark{attributes}><a href="#{escape(segment.link or "")}">{text}</a></mark>'

    for part in _TAG.split(html):
        if part.startswith("<"):
            if tag := _TAG_NAME.match(part):
                name = tag.group(2).lower()
                if tag.group(1):
                    if name in stack:
                        del stack[len(stack) - 1 - stack[::-1].index(name) :]
                elif name not in _VOID_TAGS and not part.endswith("/>"):
                    stack.append(name)
            out.append(part)
            continue
        position = 0
        for found in _SENTINEL.finditer(part):
            out.append(wrap(part[position : found.start()]))
            number = _sentinel_number(found.group(0))
            if found.group(0)[0] == MARK_START:
                current = number
            elif current == number:
                current = None
            position = found.end()
        out.append(wrap(part[position:]))
    return "".join(out), shown


def render_source(segments: list[Segment]) -> tuple[str, list[str]]:
    """The source body as markdown HTML with every marked segment highlighted on its own characters; and the
    ids of the marks shown (a segment of markup alone, such as a list marker, shows none)."""
    body = _RESERVED.sub("\ufffd", "".join(segment.text for segment in segments))
    numbered: dict[int, Segment] = {}
    spans: list[tuple[int, int, int]] = []
    position = 0
    for segment in segments:
        if segment.mark_id:
            number = int(segment.mark_id.removeprefix("mark-"))
            numbered[number] = segment
            spans.append((number, position, position + len(segment.text)))
        position += len(segment.text)
    markdown = _markdown()
    env: dict[str, Any] = {}
    tokens = _made_safe(markdown.parse(_with_sentinels(body, fit_marks(body, spans)), env))
    html = markdown.renderer.render(tokens, markdown.options, env)
    return _marks_in(html, numbered)
