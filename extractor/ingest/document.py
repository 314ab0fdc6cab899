"""What a converter makes of one item: its text as markdown and the metadata found with it. Data only."""

from __future__ import annotations

import datetime

from extractor.core.errors import ExtractorError
from extractor.core.records import Record
from extractor.core.text import one_line


def calendar_day(year: int, month: int, day: int) -> bool:
    """A day the calendar has: 2024-02-29 is, 2023-02-30 is not."""
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    return True


class IngestError(ExtractorError):
    """One item that cannot be ingested; the message names the item and the problem."""

    def __init__(self, item: str, problem: str) -> None:
        # Both may carry a server's words (a reason phrase, a content type): no escape sequence reaches a terminal.
        self.item = one_line(item)
        self.problem = one_line(str(problem))
        super().__init__(f"{self.item}: {self.problem}")


class Document(Record):
    """One converted item. Every field but ``text`` may be unknown; ``date`` is ``YYYY-MM-DD`` with ``00`` for
    an unknown month or day, as the KB writes partial dates."""

    text: str
    title: str | None = None
    authors: list[str] = []
    date: str | None = None
    url: str | None = None
    doi: str | None = None
    arxiv: str | None = None
    site: str | None = None
    format: str | None = None
    domain: str | None = None  # a markdown file's own, used when it is one of the KB's
    tags: list[str] = []
    kind: str = "text"  # pdf | html | markdown | text | feed-entry: how the text was obtained
