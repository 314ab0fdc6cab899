"""``extractor ingest``: items (files, URLs, feeds) into new inbox sources, committed together.

Each item is converted, checked against the sources the inbox already holds (same URL, DOI or text), named
the way the KB names sources, and planned as a new file. Every planned file is then committed at once, on main
or on an ``ingest/`` branch, through the one path that commits to main safely beside people's work; or, with
no commit, written. An item that fails costs its line in the report; the rest go on.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import httpx

from extractor.commit.apply import commit_to_branch, commit_to_main
from extractor.commit.changeset import ChangeSet, WriteError
from extractor.core.errors import ConfigurationError
from extractor.core.records import FileChange, Record
from extractor.core.settings import Settings
from extractor.core.text import one_line
from extractor.extraction.extract import prompts_dir
from extractor.ingest.document import Document, IngestError
from extractor.ingest.domain import choose_domain
from extractor.ingest.fetch import USER_AGENT, fetch
from extractor.ingest.kinds import kind_of
from extractor.ingest.known import KnownSources
from extractor.ingest.sourcefile import canonical_url, source_metadata, source_name
from extractor.ingest.web import FeedEntry, feed_entries, html_document, text_document
from extractor.kb.files import atomic_write
from extractor.kb.gitrepo import Identity, read_at, require_main_branch, rev_parse
from extractor.kb.locks import WRITE_LOCK_WAIT, kb_lock
from extractor.kb.names import bounded, unique_name
from extractor.kb.sources import new_source_text, source_key_order
from extractor.llm.client import LLMError, StructuredClient
from extractor.store.state import StateStore

log = logging.getLogger(__name__)

INGEST_STAGE = "ingest"
TRAILER = "Ingested-by: extractor ingest"
CommitTo = Literal["main", "branch", "none"]


class IngestOptions(Record):
    """What the person said about this batch; unset fields fall back to the settings and the model."""

    domain: str | None = None
    format: str | None = None
    tags: list[str] = []
    commit: CommitTo | None = None


class Outcome(Record):
    """One item's result: the new source, or why there is none. ``item`` is what was given (a feed's entries
    share their feed's); ``label`` what this result is about (the entry's link for a feed's entry)."""

    item: str
    label: str
    path: str | None = None
    title: str | None = None
    domain: str | None = None
    domain_chosen_by: str | None = None
    error: str | None = None
    duplicate_of: str | None = None  # the source it repeats: an error, except for a feed's entries


class IngestReport(Record):
    outcomes: list[Outcome]
    commit: str | None = None
    branch: str | None = None
    note: str | None = None  # why nothing was committed though sources were planned

    @property
    def failed(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.error is not None]

    @property
    def added(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.path is not None]


class Converted(Record):
    """One document an item gave, before it is placed; or why the item gave none."""

    item: str
    label: str
    document: Document | None = None
    error: str | None = None
    duplicate_of: str | None = None  # found before it was fetched: a URL the KB holds
    feed_entry: tuple[str, str] | None = None  # (feed, entry id), remembered once placed


_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(item: str) -> bool:
    return item.lower().startswith(("http://", "https://"))


def cleaned(document: Document) -> Document:
    """A document's one-line fields without control, bidi or zero-width characters: they reach a file name, a
    commit message and a terminal."""

    def line(value: str | None) -> str | None:
        return one_line(value) or None if value is not None else None

    return document.model_copy(
        update={
            "title": line(document.title),
            "authors": [name for name in (one_line(a) for a in document.authors) if name],
            "url": line(document.url),
            "doi": bare_doi(document.doi),
            "arxiv": line(document.arxiv),
            "site": line(document.site),
            "format": line(document.format),
            "domain": line(document.domain),
            "tags": [tag for tag in (one_line(t) for t in document.tags) if tag],
        }
    )


_DOI_PREFIX = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/|doi:\s*)", re.IGNORECASE)


def bare_doi(value: str | None) -> str | None:
    """``https://doi.org/10.1/x`` and ``doi:10.1/x`` as ``10.1/x``: one spelling, for the file and for duplicates."""
    if value is None:
        return None
    return _DOI_PREFIX.sub("", one_line(value)) or None


def commit_message(outcomes: list[Outcome]) -> str:
    """``ingest: N sources`` and a line per source naming where it came from."""
    count = len(outcomes)
    subject = f"ingest: {outcomes[0].title or outcomes[0].path}" if count == 1 else f"ingest: {count} sources"
    lines = []
    for outcome in outcomes:
        chosen = f"; domain {outcome.domain} chosen by {outcome.domain_chosen_by}" if outcome.domain_chosen_by else ""
        lines.append(f"- {outcome.path} from {outcome.label}{chosen}")
    return f"{bounded(subject, 100) if len(subject) > 100 else subject}\n\n" + "\n".join(lines) + f"\n\n{TRAILER}\n"


class Ingester:
    """Ingests items into one KB's inbox. ``llm`` chooses domains when set; ``http`` fetches URLs.

    Converting (the network, pdfminer) happens first, outside any lock. Placing (the duplicate check against
    what the KB holds, the file name) and committing happen together under the KB's write lock, against main
    as it is then: two ingests at once, or an ingest beside a run, never take one name or one paper twice.
    """

    def __init__(
        self,
        kb_root: Path,
        settings: Settings,
        store: StateStore,
        llm: StructuredClient | None = None,
        http: httpx.Client | None = None,
        today: datetime.date | None = None,
    ) -> None:
        self.kb_root = kb_root
        self.settings = settings
        self.store = store
        self.llm = llm
        self.http = http or httpx.Client(
            follow_redirects=True,
            max_redirects=settings.ingest_max_redirects,
            timeout=settings.ingest_timeout,
            headers={"User-Agent": USER_AGENT},
        )
        self.today = today or datetime.date.today()
        self.key_order = source_key_order(kb_root)
        self.known = self._scan()

    def _scan(self) -> KnownSources:
        return KnownSources.scan(self.kb_root, self.settings.inbox_dir, self.settings.main_branch)

    # converting

    def _fetch(self, url: str) -> tuple[str, bytes, str | None, str]:
        """(final URL, bytes, charset, kind)."""
        s = self.settings
        got = fetch(
            url, timeout=s.ingest_timeout, max_bytes=s.ingest_max_bytes, max_redirects=s.ingest_max_redirects,
            client=self.http,
        )  # fmt: skip
        return got.url, got.data, got.charset, kind_of(url, got.data, got.content_type, charset=got.charset)

    def _read(self, item: str) -> tuple[bytes, str]:
        if _SCHEME.match(item):
            raise IngestError(item, "not an http(s) URL: only http and https are fetched")
        path = Path(item).expanduser()
        try:
            if not path.is_file():
                raise IngestError(item, "no such file" if not path.exists() else "not a regular file")
            size = path.stat().st_size
            if size > self.settings.ingest_max_bytes:
                raise IngestError(item, f"larger than ingest_max_bytes ({size} > {self.settings.ingest_max_bytes})")
            data = path.read_bytes()
        except OSError as exc:
            raise IngestError(item, f"cannot read it: {exc.strerror or exc}") from exc
        return data, kind_of(item, data, suffix=path.suffix.lower())

    def _convert(self, item: str, data: bytes, kind: str, url: str | None, charset: str | None = None) -> Document:
        s = self.settings
        if kind == "pdf":
            from extractor.ingest.pdf import pdf_document_bounded  # pdfminer: only when a PDF comes

            document = pdf_document_bounded(
                data, item, max_pages=s.ingest_max_pages, memory_mb=s.ingest_memory_mb, timeout=s.source_timeout
            )
        elif kind == "html":
            document = html_document(item, data, url=url, charset=charset, max_bytes=4 * s.max_source_bytes)
        else:
            document = text_document(item, data, kind)
        if url and not document.url:
            document = document.model_copy(update={"url": url})
        return cleaned(document)

    def _documents(self, item: str) -> Iterator[Converted]:
        """Each document ``item`` gives: one, or a feed's new entries."""
        label = one_line(item)
        if is_url(item):
            if known := self.known.by_url.get(canonical_url(item)):
                error = f"{label}: already in the inbox as {known} (same URL)"
                yield Converted(item=item, label=label, error=error, duplicate_of=known)
                return
            url, data, charset, kind = self._fetch(item)
        else:
            data, kind = self._read(item)
            url, charset = None, None
        if kind != "feed":
            yield Converted(item=item, label=label, document=self._convert(label, data, kind, url, charset))
            return
        _, entries = feed_entries(label, data, base_url=url)
        seen = self.store.seen_feed_entries(item)
        for entry in entries:
            if entry.id in seen:
                continue
            entry_label = one_line(entry.link or f"{item} ({entry.title or entry.id})")
            mark = (item, entry.id)
            if entry.link and (known := self.known.by_url.get(canonical_url(entry.link))):
                error = f"{entry_label}: already in the inbox as {known} (same URL)"
                yield Converted(item=item, label=entry_label, error=error, duplicate_of=known, feed_entry=mark)
                continue
            try:
                document = self._entry_document(entry_label, entry)
            except IngestError as exc:
                yield Converted(item=item, label=entry_label, error=str(exc), feed_entry=mark)
                continue
            yield Converted(item=item, label=entry_label, document=document, feed_entry=mark)

    def _entry_document(self, label: str, entry: FeedEntry) -> Document:
        """The page an entry links to (the feed's own text when it links nowhere), with the feed's metadata
        where the page has none."""
        if entry.link and is_url(entry.link):
            url, data, charset, kind = self._fetch(entry.link)
            if kind == "feed":
                raise IngestError(label, "the entry links to another feed")
            document = self._convert(label, data, kind, url, charset)
        elif entry.content:  # a fragment: trafilatura reads only whole pages
            page = f"<html><body><article>{entry.content}</article></body></html>"
            document = cleaned(html_document(label, page.encode("utf-8"), charset="utf-8"))
        else:
            raise IngestError(label, "the entry has no link and no text")
        return cleaned(
            document.model_copy(
                update={
                    "title": document.title or entry.title,
                    "authors": document.authors or entry.authors,
                    "date": document.date or entry.date,
                    "format": document.format or "article",
                }
            )
        )

    def convert(self, items: list[str]) -> list[Converted]:
        converted: list[Converted] = []
        for item in items:
            try:
                converted.extend(self._documents(item))
            except IngestError as exc:
                converted.append(Converted(item=item, label=one_line(item), error=str(exc)))
        return converted

    # placing

    def _domain(self, document: Document, options: IngestOptions, label: str) -> tuple[str, str | None]:
        """The domain, and the model that chose it when one did."""
        if options.domain:
            return options.domain, None
        if document.domain in self.settings.domains:
            return document.domain, None
        if self.llm is not None:
            try:
                domain, calls = choose_domain(self.llm, prompts_dir(self.settings), document, self.settings.domains)
            except LLMError as exc:
                self.store.log_calls(label, None, exc.calls, stage=INGEST_STAGE)
                log.warning(f"{label}: the model chose no domain ({exc}); {self.settings.ingest_domain()} it is")
                return self.settings.ingest_domain(), None
            self.store.log_calls(label, None, calls, stage=INGEST_STAGE)
            return domain, f"model {self.settings.model}"
        return self.settings.ingest_domain(), None

    def _place(self, done: Converted, options: IngestOptions, known: KnownSources) -> tuple[Outcome, FileChange | None]:
        outcome = Outcome(item=done.item, label=done.label, error=done.error, duplicate_of=done.duplicate_of)
        document = done.document
        if document is None:
            return outcome, None
        outcome.title = document.title
        if (duplicate := known.duplicate_of(document)) is not None:
            outcome.duplicate_of = duplicate[0]
            outcome.error = f"{done.label}: already in the inbox as {duplicate[0]} ({duplicate[1]})"
            return outcome, None
        outcome.domain, outcome.domain_chosen_by = self._domain(document, options, done.label)
        tags = list(dict.fromkeys([*document.tags, *options.tags]))
        metadata = source_metadata(
            document, domain=outcome.domain, fmt=options.format, tags=tags, today=self.today,
            domain_chosen_by=outcome.domain_chosen_by,
        )  # fmt: skip
        text = new_source_text(metadata, document.text, self.key_order)
        size = len(text.encode("utf-8"))
        if size > self.settings.max_source_bytes:
            outcome.error = (
                f"{done.label}: {size} bytes as a source, more than max_source_bytes ({self.settings.max_source_bytes})"
            )
            return outcome, None
        name = unique_name(source_name(document, self.today).removesuffix(".md"), known.names)
        outcome.path = f"{self.settings.inbox_dir}/{name}"
        known.add(document, outcome.path)
        return outcome, FileChange(path=outcome.path, text=text)

    def ingest(self, items: list[str], options: IngestOptions) -> IngestReport:
        if options.domain is not None and options.domain not in self.settings.domains:
            raise ConfigurationError(f"--domain {options.domain!r} is not one of the KB's domains")
        options = options.model_copy(
            update={"format": one_line(options.format) if options.format else None,
                    "tags": [tag for tag in (one_line(t) for t in options.tags) if tag]}
        )  # fmt: skip
        commit = options.commit or self.settings.ingest_commit
        if commit != "none":  # before any download: a KB whose main branch is missing is a setting to fix
            require_main_branch(self.kb_root, self.settings.main_branch)
        converted = self.convert([item.strip() for item in items])
        with kb_lock(self.kb_root, "write", wait=WRITE_LOCK_WAIT):
            known = self._scan()  # main as it is now, under the lock every writer of the KB takes
            placed = [self._place(done, options, known) for done in converted]
            report = self._commit(placed, commit)
        for done, (outcome, _) in zip(converted, placed, strict=True):
            if done.feed_entry is not None and outcome.duplicate_of is not None:
                outcome.error = None  # a feed repeating what the inbox holds is no failure
            if done.feed_entry is not None and (outcome.path is not None or outcome.duplicate_of is not None):
                self.store.remember_feed_entry(*done.feed_entry, outcome.path)
        return report

    # committing

    def _commit(self, placed: list[tuple[Outcome, FileChange | None]], commit: CommitTo) -> IngestReport:
        report = IngestReport(outcomes=[outcome for outcome, _ in placed])
        new = [(outcome, change) for outcome, change in placed if change is not None]
        if not new:
            return report
        changes = [change for _, change in new]
        try:
            if commit == "none":
                self._write_all(changes)
            else:
                report.commit, report.branch = self._commit_changes([outcome for outcome, _ in new], changes, commit)
        except (WriteError, OSError) as exc:
            problem = (
                str(exc) if isinstance(exc, WriteError) else f"{exc.filename or self.kb_root}: {exc.strerror or exc}"
            )
            for outcome, _ in new:
                outcome.error, outcome.path = f"{outcome.label}: not committed: {problem}", None
            report.note = problem
        return report

    def _write_all(self, changes: list[FileChange]) -> None:
        """Every file, or none: a write that fails (a full disk) takes back the ones written before it. A file
        that appeared meanwhile is never replaced."""
        written: list[Path] = []
        try:
            for change in changes:
                assert change.text is not None
                target = self.kb_root / change.path
                if target.exists():
                    raise WriteError(f"{change.path} appeared while it was being written (nothing was written)")
                atomic_write(target, change.text)
                written.append(target)
        except (OSError, WriteError):
            for path in written:
                path.unlink(missing_ok=True)
            raise

    def _commit_changes(
        self, placed: list[Outcome], changes: list[FileChange], commit: CommitTo
    ) -> tuple[str, str | None]:
        s = self.settings
        author = Identity(name=s.author_name, email=s.author_email)
        changeset = ChangeSet(
            changes=changes, message=commit_message(placed), claim_titles=[], claim_paths=[], enriched_titles=[],
            status="ingested",
        )  # fmt: skip
        base = rev_parse(self.kb_root, f"refs/heads/{s.main_branch}")
        if base is None:
            raise WriteError(f"the main branch {s.main_branch!r} does not exist (nothing was written)")
        if taken := [change.path for change in changes if read_at(self.kb_root, base, change.path) is not None]:
            raise WriteError(f"{taken[0]} is already on {s.main_branch} (nothing was written)")
        if commit == "main":
            return commit_to_main(self.kb_root, changeset, author, s.main_branch, base, changes[0].path), None
        stem = Path(changes[0].path).stem
        branch = f"ingest/{stem}"
        number = 2
        while rev_parse(self.kb_root, f"refs/heads/{branch}") is not None:
            branch, number = f"ingest/{stem}-{number}", number + 1
        return commit_to_branch(self.kb_root, changeset, author, base, branch, replace=False), branch

    def close(self) -> None:
        self.http.close()
