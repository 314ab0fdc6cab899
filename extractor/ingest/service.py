"""``extractor ingest``: items (files, URLs, feeds) into new inbox sources, committed together.

Each item is converted, checked against the sources the inbox already holds (same URL, DOI or text), named
the way the KB names sources, and planned as a new file. Every planned file is then committed at once, on main
or on an ``ingest/`` branch, through the one path that commits to main safely beside people's work; or, with
no commit, written. An item that fails costs its line in the report; the rest go on.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import httpx

from extractor.commit.apply import commit_to_branch, commit_to_main
from extractor.commit.changeset import ChangeSet, WriteError
from extractor.core.errors import ConfigurationError
from extractor.core.records import FileChange, Record
from extractor.core.settings import Settings
from extractor.extraction.extract import prompts_dir
from extractor.ingest.document import Document, IngestError
from extractor.ingest.domain import choose_domain
from extractor.ingest.fetch import USER_AGENT, fetch
from extractor.ingest.kinds import kind_of
from extractor.ingest.known import KnownSources
from extractor.ingest.sourcefile import canonical_url, source_metadata, source_name
from extractor.ingest.web import FeedEntry, feed_entries, html_document, text_document
from extractor.kb.files import atomic_write
from extractor.kb.gitrepo import Identity, rev_parse
from extractor.kb.locks import kb_lock
from extractor.kb.names import bounded, unique_name
from extractor.kb.sources import new_source_text, source_key_order
from extractor.llm.client import LLMError, StructuredClient
from extractor.store.state import StateStore

log = logging.getLogger(__name__)

WRITE_LOCK_WAIT = 120.0
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
    """One item's result: the new source, or why there is none."""

    item: str
    path: str | None = None
    title: str | None = None
    domain: str | None = None
    domain_chosen_by: str | None = None
    error: str | None = None
    duplicate_of: str | None = None  # the inbox source it repeats (an error, but for a feed's entries)


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


def is_url(item: str) -> bool:
    return item.lower().startswith(("http://", "https://"))


def commit_message(outcomes: list[Outcome]) -> str:
    """``ingest: N sources`` and a line per source naming where it came from."""
    count = len(outcomes)
    subject = f"ingest: {outcomes[0].title or outcomes[0].path}" if count == 1 else f"ingest: {count} sources"
    lines = []
    for outcome in outcomes:
        chosen = f"; domain {outcome.domain} chosen by {outcome.domain_chosen_by}" if outcome.domain_chosen_by else ""
        lines.append(f"- {outcome.path} from {outcome.item}{chosen}")
    return f"{bounded(subject, 100) if len(subject) > 100 else subject}\n\n" + "\n".join(lines) + f"\n\n{TRAILER}\n"


class Ingester:
    """Ingests items into one KB's inbox. ``llm`` chooses domains when set; ``http`` fetches URLs."""

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
        self.known = KnownSources.scan(kb_root / settings.inbox_dir, settings.inbox_dir)
        self.key_order = source_key_order(kb_root)
        self.planned: list[tuple[Outcome, FileChange]] = []
        self.feed_marks: list[tuple[str, str, Outcome]] = []  # (feed, entry id, outcome): remembered once committed

    # converting

    def _fetch(self, url: str) -> tuple[str, bytes, str, str | None, str]:
        """(final URL, bytes, content type, charset, kind)."""
        s = self.settings
        got = fetch(
            url, timeout=s.ingest_timeout, max_bytes=s.ingest_max_bytes, max_redirects=s.ingest_max_redirects,
            client=self.http,
        )  # fmt: skip
        return got.url, got.data, got.content_type, got.charset, kind_of(url, got.data, got.content_type)

    def _read(self, item: str) -> tuple[bytes, str]:
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
            document = html_document(item, data, url=url, charset=charset)
        else:
            document = text_document(item, data, kind)
        if url and not document.url:
            document = document.model_copy(update={"url": url})
        return document

    def _documents(self, item: str) -> Iterator[tuple[str, Document | IngestError, tuple[str, str] | None]]:
        """(label, document or why there is none, (feed, entry id) or None) for each document the item gives."""
        if is_url(item):
            if known := self.known.by_url.get(canonical_url(item)):
                raise IngestError(item, f"already in the inbox as {known} (same URL)")
            url, data, content_type, charset, kind = self._fetch(item)
        else:
            data, kind = self._read(item)
            url, charset = None, None
        if kind != "feed":
            yield item, self._convert(item, data, kind, url, charset), None
            return
        _, entries = feed_entries(item, data)
        seen = self.store.seen_feed_entries(item)
        for entry in entries:
            if entry.id in seen:
                continue
            label = entry.link or f"{item} ({entry.title or entry.id})"
            try:
                yield label, self._entry_document(label, entry), (item, entry.id)
            except IngestError as exc:
                yield label, exc, (item, entry.id)

    def _entry_document(self, label: str, entry: FeedEntry) -> Document:
        """The page an entry links to (the feed's own text when it links nowhere), with the feed's metadata
        where the page has none."""
        if entry.link and is_url(entry.link):
            url, data, _, charset, kind = self._fetch(entry.link)
            if kind == "feed":
                raise IngestError(label, "the entry links to another feed")
            document = self._convert(label, data, kind, url, charset)
        elif entry.content:
            document = html_document(label, entry.content.encode("utf-8"), charset="utf-8")
        else:
            raise IngestError(label, "the entry has no link and no text")
        return document.model_copy(
            update={
                "title": entry.title or document.title,
                "authors": document.authors or entry.authors,
                "date": document.date or entry.date,
                "format": document.format or "article",
            }
        )

    # placing

    def _domain(self, document: Document, options: IngestOptions, outcome: Outcome) -> str:
        if options.domain:
            return options.domain
        if self.llm is not None:
            try:
                domain, calls = choose_domain(self.llm, prompts_dir(self.settings), document, self.settings.domains)
            except LLMError as exc:
                self.store.log_calls(outcome.item, None, exc.calls, stage=INGEST_STAGE)
                log.warning(f"{outcome.item}: the model chose no domain ({exc}); {self.settings.ingest_domain()} it is")
                return self.settings.ingest_domain()
            self.store.log_calls(outcome.item, None, calls, stage=INGEST_STAGE)
            outcome.domain_chosen_by = f"model {self.settings.model}"
            return domain
        return self.settings.ingest_domain()

    def _place(self, label: str, document: Document, options: IngestOptions) -> Outcome:
        outcome = Outcome(item=label, title=document.title)
        if (duplicate := self.known.duplicate_of(document)) is not None:
            outcome.error, outcome.duplicate_of = f"{label}: already in the inbox as {duplicate}", duplicate
            return outcome
        outcome.domain = self._domain(document, options, outcome)
        metadata = source_metadata(
            document, domain=outcome.domain, fmt=options.format, tags=options.tags, today=self.today,
            domain_chosen_by=outcome.domain_chosen_by,
        )  # fmt: skip
        text = new_source_text(metadata, document.text, self.key_order)
        size = len(text.encode("utf-8"))
        if size > self.settings.max_source_bytes:
            outcome.error = (
                f"{label}: {size} bytes as a source, more than max_source_bytes ({self.settings.max_source_bytes})"
            )
            return outcome
        name = unique_name(source_name(document, self.today).removesuffix(".md"), self.known.names)
        outcome.path = f"{self.settings.inbox_dir}/{name}"
        self.known.add(document, outcome.path)
        self.planned.append((outcome, FileChange(path=outcome.path, text=text)))
        return outcome

    def ingest(self, items: list[str], options: IngestOptions) -> IngestReport:
        if options.domain is not None and options.domain not in self.settings.domains:
            raise ConfigurationError(f"--domain {options.domain!r} is not one of the KB's domains")
        outcomes: list[Outcome] = []
        for item in items:
            try:
                for label, document, mark in self._documents(item):
                    if isinstance(document, IngestError):
                        outcomes.append(Outcome(item=label, error=str(document)))
                        continue
                    outcome = self._place(label, document, options)
                    if mark is not None:
                        self.feed_marks.append((*mark, outcome))
                        if outcome.duplicate_of is not None:
                            outcome.error = None  # a feed repeating what the inbox holds is no failure
                    outcomes.append(outcome)
            except IngestError as exc:
                outcomes.append(Outcome(item=item, error=str(exc)))
        return self._commit(outcomes, options.commit or self.settings.ingest_commit)

    # committing

    def _commit(self, outcomes: list[Outcome], commit: CommitTo) -> IngestReport:
        report = IngestReport(outcomes=outcomes)
        if not self.planned:
            self._remember_feeds()
            return report
        placed = [outcome for outcome, _ in self.planned]
        changes = [change for _, change in self.planned]
        try:
            if commit == "none":
                self._write_all(changes)
            else:
                report.commit, report.branch = self._commit_changes(placed, changes, commit)
        except (WriteError, OSError) as exc:
            problem = (
                str(exc) if isinstance(exc, WriteError) else f"{exc.filename or self.kb_root}: {exc.strerror or exc}"
            )
            for outcome in placed:
                outcome.error, outcome.path = f"{outcome.item}: not committed: {problem}", None
            report.note = problem
            return report
        self._remember_feeds()
        return report

    def _write_all(self, changes: list[FileChange]) -> None:
        """Every file, or none: a write that fails (a full disk) takes back the ones written before it."""
        written: list[Path] = []
        try:
            for change in changes:
                assert change.text is not None
                atomic_write(self.kb_root / change.path, change.text)
                written.append(self.kb_root / change.path)
        except OSError:
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
        with kb_lock(self.kb_root, "write", wait=WRITE_LOCK_WAIT):
            base = rev_parse(self.kb_root, f"refs/heads/{s.main_branch}")
            if base is None:
                raise WriteError(f"the main branch {s.main_branch!r} does not exist (nothing was written)")
            if commit == "main":
                return commit_to_main(self.kb_root, changeset, author, s.main_branch, base, changes[0].path), None
            stem = Path(changes[0].path).stem
            branch = f"ingest/{stem}"
            number = 2
            while rev_parse(self.kb_root, f"refs/heads/{branch}") is not None:
                branch, number = f"ingest/{stem}-{number}", number + 1
            return commit_to_branch(self.kb_root, changeset, author, base, branch, replace=False), branch

    def _remember_feeds(self) -> None:
        for feed, entry, outcome in self.feed_marks:
            if outcome.path is not None or outcome.duplicate_of is not None:
                self.store.remember_feed_entry(feed, entry, outcome.path)

    def close(self) -> None:
        self.http.close()
