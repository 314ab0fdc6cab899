"""The review page: one extraction branch as an HTML page a reviewer reads in a browser.

Three steps, kept apart so the middle and the last can be tested without git:

1. :func:`read_input` (I/O): the branch's texts from git (the source at the
   branch's base, the claim files and enriched claims as they are on the
   branch) and the extraction's report from the state store, if it has one.
2. :func:`build_page` (pure): anchors each evidence item in the source body,
   cuts the body into segments at every span boundary, and diffs the enriched
   files, into a :class:`ReviewPage`.
3. :func:`render_page` (pure): the page model to an HTML string through a
   Jinja2 template with autoescaping on. Nothing that came from the source or
   the model is ever marked safe, and a Content-Security-Policy forbids
   scripts anyway; the page has no script and no outside asset.

:func:`serve` runs a small local HTTP server over the same functions.
"""

from __future__ import annotations

import difflib
import http.server
import sys
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import jinja2
from pydantic import BaseModel, Field

from extractor.commit.message import BranchNameError
from extractor.core.records import Anchor, ExtractionReport, Flag, Method
from extractor.core.redact import scrub
from extractor.core.settings import Settings
from extractor.extraction.anchoring import anchor_claims
from extractor.extraction.gates import GATES
from extractor.kb.claims import ClaimParseError, parse_claim
from extractor.kb.gitrepo import git
from extractor.kb.sources import SourceError, parse_source
from extractor.review.branches import PendingReview, ReviewError, branch_for, describe_branch, pending, text_at
from extractor.review.entitychanges import EntityChange, entity_change
from extractor.store.state import StateStore

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
DIFF_CONTEXT = 3


# --- what is read from git and the store --------------------------------------


class PageInput(BaseModel):
    """Everything the page is made from, as read: texts and the stored report (None if the store has none)."""

    review: PendingReview
    base: str
    source_text: str | None  # the source file at the base commit
    source_after: str | None  # the source file on the branch
    claim_texts: dict[str, str | None]  # added claim files, as they are on the branch
    enrichment_texts: dict[str, tuple[str | None, str | None]]  # modified claim files: (at base, on the branch)
    entity_texts: dict[str, tuple[str | None, str | None]] = {}  # entity notes added or changed: (base, branch)
    report: ExtractionReport | None


# --- the page model -------------------------------------------------------------


class Segment(BaseModel):
    """A stretch of the source body; marked when evidence items cover it (``evidence`` lists their ids)."""

    text: str
    evidence: list[str] = Field(default_factory=list)
    mark_id: str | None = None

    @property
    def link(self) -> str | None:
        return self.evidence[0] if self.evidence else None


class SourceView(BaseModel):
    path: str
    title: str
    url: str | None  # only http(s) URLs; anything else is shown as text
    url_text: str | None
    author: str | None
    date: str | None
    segments: list[Segment]
    error: str | None = None


class EvidenceView(BaseModel):
    id: str  # claim-N-evidence-M
    number: int
    text: str
    quote: str
    method: Method
    score: float
    start: int | None
    end: int | None
    mark_ids: list[str]

    @property
    def anchored(self) -> bool:
        return self.method != "paraphrase" and bool(self.mark_ids)


class GateView(BaseModel):
    name: str
    passed: bool


class ClaimView(BaseModel):
    id: str  # claim-N
    number: int
    path: str
    title: str
    description: str | None
    confidence: str | None
    argument: str
    evidence: list[EvidenceView]
    limitations: list[str]
    gates: list[GateView] | None  # None: no report recorded them
    flags: list[Flag] = []  # unverified items, for the reviewer to check
    grounded: list[Flag] = []  # derived figures and near quotations, with their reasons
    error: str | None = None
    raw: str | None = None  # the file's text when it cannot be parsed

    @property
    def anchored(self) -> int:
        return sum(item.anchored for item in self.evidence)


class DiffLine(BaseModel):
    kind: Literal["add", "del", "hunk", "meta", "context"]
    text: str


class DiffView(BaseModel):
    path: str
    lines: list[DiffLine]


class Provenance(BaseModel):
    agent: str
    worker: int | None
    model: str
    prompt_hash: str
    recorded: bool  # the state store has a report of this commit
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float | None
    parts: int | None


class EntityView(BaseModel):
    """An entity note the extraction wrote or updated: its timeline with the added bullets marked, and for an
    update the diff."""

    change: EntityChange
    timeline: list[tuple[str, bool]]  # each bullet's text (the "- " aside) and whether this extraction added it
    diff: DiffView | None


class ReviewPage(BaseModel):
    slug: str
    branch: str
    commit: str
    base: str
    source: SourceView
    claims: list[ClaimView]
    enrichments: list[DiffView]
    entities: list[EntityView] = []
    source_diff: DiffView | None
    warnings: list[str]
    part_notes: list[str]
    provenance: Provenance


class IndexEntry(BaseModel):
    slug: str
    href: str
    source: str
    agent: str
    model: str
    claims: int
    enrichments: int
    entities: int = 0
    warnings: int


# --- gathering (I/O) --------------------------------------------------------------


def read_input(kb: Path, slug: str, settings: Settings) -> PageInput:
    """Read what the page of ``extract/<slug>`` shows; raises :class:`ReviewError` for an unknown branch."""
    item = describe_branch(kb, branch_for(slug), settings)
    base = git(kb, "merge-base", settings.main_branch, item.commit).strip()
    store = StateStore.open(kb)
    try:
        report = store.extraction_for(item.commit)
    finally:
        store.close()
    return PageInput(
        review=item,
        base=base,
        source_text=text_at(kb, base, item.source) if item.source else None,
        source_after=text_at(kb, item.commit, item.source) if item.source else None,
        claim_texts={path: text_at(kb, item.commit, path) for path in item.claims},
        enrichment_texts={path: (text_at(kb, base, path), text_at(kb, item.commit, path)) for path in item.enrichments},
        entity_texts={
            path: (text_at(kb, base, path), text_at(kb, item.commit, path))
            for path in [*item.entities_created, *item.entities_updated]
        },
        report=report,
    )


def gather(kb: Path, slug: str, settings: Settings) -> ReviewPage:
    return build_page(read_input(kb, slug, settings))


def index_entries(kb: Path, settings: Settings) -> list[IndexEntry]:
    return [
        IndexEntry(
            slug=item.slug,
            href="/review/" + urllib.parse.quote(item.slug, safe=""),
            source=item.source,
            agent=item.agent,
            model=item.model,
            claims=len(item.claims),
            enrichments=len(item.enrichments),
            entities=len(item.entities_created) + len(item.entities_updated),
            warnings=len(item.warnings),
        )
        for item in pending(kb, settings)
    ]


# --- building the page model (pure) ----------------------------------------------


def segment_body(body: str, spans: list[tuple[str, int, int]]) -> list[Segment]:
    """Cut ``body`` at every span boundary; each piece lists the ids of the spans covering it.

    Spans may overlap or nest in any way: the pieces never do, so each becomes one flat ``<mark>``
    (or plain text) and the HTML stays well formed. Empty and out-of-range spans are ignored;
    marked pieces are numbered ``mark-1``, ``mark-2``... in document order.
    """
    clean = [(ident, max(0, start), min(len(body), end)) for ident, start, end in spans]
    clean = [(ident, start, end) for ident, start, end in clean if start < end]
    cuts = sorted({0, len(body), *(start for _, start, _ in clean), *(end for _, _, end in clean)})
    segments: list[Segment] = []
    marks = 0
    for start, end in zip(cuts, cuts[1:], strict=False):
        covering = [ident for ident, a, b in clean if a <= start and end <= b]
        if covering:
            marks += 1
            segments.append(Segment(text=body[start:end], evidence=covering, mark_id=f"mark-{marks}"))
        elif segments and not segments[-1].evidence:
            segments[-1].text += body[start:end]
        else:
            segments.append(Segment(text=body[start:end]))
    return segments


def diff_lines(path: str, before: str | None, after: str | None) -> DiffView:
    """A unified diff of one file between the base and the branch, line by line with its kind."""
    old = (before or "").splitlines()
    new = (after or "").splitlines()
    lines: list[DiffLine] = []
    raw = difflib.unified_diff(
        old, new, f"a/{path}" if before is not None else "/dev/null", f"b/{path}" if after is not None else "/dev/null",
        n=DIFF_CONTEXT, lineterm="",
    )  # fmt: skip
    for number, line in enumerate(raw):
        if number < 2:
            kind = "meta"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "context"
        lines.append(DiffLine(kind=kind, text=line))
    return DiffView(path=path, lines=lines)


def _field(metadata: dict[str, object], key: str) -> str | None:
    value = metadata.get(key)
    return None if value in (None, "") else " ".join(str(value).split())


def _source_view(path: str, text: str | None) -> tuple[SourceView, str]:
    """The source's header fields, and the body the spans index into ("" when the source cannot be read)."""
    empty = SourceView(path=path, title=PurePosixPath(path).stem or "(no source)", url=None, url_text=None,
                       author=None, date=None, segments=[])  # fmt: skip
    if not path:
        return empty.model_copy(update={"error": "the commit names no source"}), ""
    if text is None:
        return empty.model_copy(update={"error": "the source is not in the base commit (or is not UTF-8 text)"}), ""
    try:
        source = parse_source(Path(path), text)
    except SourceError as exc:
        return empty.model_copy(update={"error": exc.problem}), ""
    url = source.url
    scheme = urllib.parse.urlsplit(url).scheme.lower() if url else ""
    view = SourceView(
        path=path,
        title=source.title,
        url=url if scheme in ("http", "https") else None,
        url_text=url,
        author=_field(source.metadata, "author"),
        date=source.date,
        segments=[],
    )
    return view, source.body


def _claim_view(
    number: int, path: str, text: str | None, anchors: list[Anchor], report: ExtractionReport | None
) -> ClaimView:
    ident = f"claim-{number}"
    recorded = None
    flags: list[Flag] = []
    grounded: list[Flag] = []
    if report is not None:
        match = next((claim for claim in report.claims if claim.path == path), None)
        if match is not None:
            recorded = [GateView(name=gate, passed=gate in match.gates) for gate in GATES]
            flags, grounded = match.flags, match.grounded
    try:
        if text is None:
            raise ClaimParseError("the file is missing on the branch (or is not UTF-8 text)")
        claim = parse_claim(text, fallback_title=PurePosixPath(path).stem)
    except ClaimParseError as exc:
        return ClaimView(id=ident, number=number, path=path, title=PurePosixPath(path).stem, description=None,
                         confidence=None, argument="", evidence=[], limitations=[], gates=recorded,
                         error=str(exc), raw=text)  # fmt: skip
    evidence = [
        EvidenceView(id=f"{ident}-evidence-{index + 1}", number=index + 1, text=item, quote=anchor.quote,
                     method=anchor.method, score=anchor.score, start=anchor.start, end=anchor.end, mark_ids=[])
        for index, (item, anchor) in enumerate(zip(claim.evidence, anchors, strict=True))
    ]  # fmt: skip
    return ClaimView(
        id=ident,
        number=number,
        path=path,
        title=claim.title,
        description=_field(claim.metadata, "description"),
        confidence=_field(claim.metadata, "confidence"),
        argument=claim.argument,
        evidence=evidence,
        limitations=claim.limitations,
        gates=recorded,
        flags=flags,
        grounded=grounded,
    )


def _evidence_of(text: str | None) -> list[str]:
    if text is None:
        return []
    try:
        return parse_claim(text, fallback_title="-").evidence
    except ClaimParseError:
        return []


def build_page(data: PageInput) -> ReviewPage:
    """The page model: anchors computed afresh from the claim files as they are on the branch."""
    item = data.review
    source, body = _source_view(item.source, data.source_text)
    # In the order the model gave them where the store recorded it; git lists paths alphabetically.
    recorded = {claim.path: position for position, claim in enumerate(data.report.claims)} if data.report else {}
    paths = sorted(data.claim_texts, key=lambda path: (recorded.get(path, len(recorded)), path))
    anchors = anchor_claims([_evidence_of(data.claim_texts[path]) for path in paths], body)
    claims = [
        _claim_view(number, path, data.claim_texts[path], claim_anchors, data.report)
        for number, (path, claim_anchors) in enumerate(zip(paths, anchors, strict=True), start=1)
    ]
    spans = [
        (evidence.id, evidence.start, evidence.end)
        for claim in claims
        for evidence in claim.evidence
        if evidence.method != "paraphrase" and evidence.start is not None and evidence.end is not None
    ]
    source.segments = segment_body(body, spans)
    marks: dict[str, list[str]] = {}
    for segment in source.segments:
        for ident in segment.evidence:
            marks.setdefault(ident, []).append(segment.mark_id or "")
    for claim in claims:
        for evidence in claim.evidence:
            evidence.mark_ids = marks.get(evidence.id, [])
    report = data.report
    source_changed = item.source and data.source_text != data.source_after
    return ReviewPage(
        slug=item.slug,
        branch=item.branch,
        commit=item.commit,
        base=data.base,
        source=source,
        claims=claims,
        enrichments=[diff_lines(path, *texts) for path, texts in data.enrichment_texts.items()],
        entities=[
            EntityView(
                change=change,
                timeline=[(bullet.removeprefix("- "), bullet in change.added) for bullet in change.timeline],
                diff=diff_lines(path, before, after) if before is not None else None,
            )
            for path, (before, after) in data.entity_texts.items()
            if (change := entity_change(path, before, after, report.entity_decisions if report else []))
        ],
        source_diff=diff_lines(item.source, data.source_text, data.source_after) if source_changed else None,
        warnings=report.dropped if report else item.warnings,
        part_notes=report.part_notes if report else [],
        provenance=Provenance(
            agent=item.agent,
            worker=item.worker,
            model=item.model,
            prompt_hash=item.prompt_hash,
            recorded=report is not None,
            prompt_tokens=report.prompt_tokens if report else None,
            completion_tokens=report.completion_tokens if report else None,
            cost=report.cost if report else None,
            parts=report.parts if report else None,
        ),
    )


# --- rendering (pure) ------------------------------------------------------------

METHOD_LABELS: dict[str, str] = {
    "exact": "found verbatim",
    "normalised": "found once quotes, dashes and spaces are normalised",
    "fuzzy": "found approximately",
    "paraphrase": "paraphrase: not found in the source",
}


def _environment() -> jinja2.Environment:
    # autoescape=True for every template: the file name ends in .j2, which select_autoescape would not
    # recognise as HTML. Nothing passed in is ever marked safe.
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("extractor.review", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(csp=CSP, gates=GATES, method_labels=METHOD_LABELS)
    return environment


_ENVIRONMENT: list[jinja2.Environment] = []


def environment() -> jinja2.Environment:
    if not _ENVIRONMENT:
        _ENVIRONMENT.append(_environment())
    return _ENVIRONMENT[0]


def render_page(page: ReviewPage) -> str:
    """The review page as one self-contained HTML document (inline CSS, no script)."""
    return environment().get_template("review.html.j2").render(page=page, index=None, message=None)


def render_index(entries: list[IndexEntry]) -> str:
    """The server's front page: the pending extraction branches, each linking to its page."""
    return environment().get_template("review.html.j2").render(page=None, index=entries, message=None)


def render_not_found(message: str) -> str:
    return environment().get_template("review.html.j2").render(page=None, index=None, message=message)


# --- serving -------------------------------------------------------------------------


def make_server(kb: Path, settings: Settings, port: int = 0) -> http.server.ThreadingHTTPServer:
    """A server on 127.0.0.1 for ``/`` (the index) and ``/review/<slug>``; anything else is a 404.

    Pages are built afresh for each request, so a reviewer's edits on a branch show on reload.
    Requests whose Host is not this loopback address are refused (no DNS rebinding).
    """
    building = threading.Lock()  # one page at a time: git handles are per process, not per thread

    def respond(path: str) -> tuple[int, str]:
        if path == "/":
            with building:
                return 200, render_index(index_entries(kb, settings))
        if path.startswith("/review/"):
            slug = urllib.parse.unquote(path.removeprefix("/review/"))
            try:
                with building:
                    return 200, render_page(gather(kb, slug, settings))
            except (ReviewError, BranchNameError) as exc:  # no such branch, or not a branch's name at all
                return 404, render_not_found(str(exc))
        return 404, render_not_found("no such page")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _handler(respond))
    server.daemon_threads = True
    return server


def _handler(respond: Callable[[str], tuple[int, str]]) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "extractor-review"
        sys_version = ""

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self._answer(with_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(with_body=False)

        def _answer(self, with_body: bool) -> None:
            host, port = _address(self.server.server_address)
            allowed = {f"{host}:{port}", f"localhost:{port}"}
            if self.headers.get("Host", "") not in allowed:
                status, html = 403, render_not_found("this server answers only on its loopback address")
            else:
                path = urllib.parse.urlsplit(self.path).path
                try:
                    status, html = respond(path)
                except Exception as exc:  # noqa: BLE001 - the reviewer sees why, the server goes on
                    status, html = 500, render_not_found(scrub(f"cannot build the page: {type(exc).__name__}: {exc}"))
            data = html.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if with_body:
                self.wfile.write(data)

    return Handler


def _address(address: Any) -> tuple[str, int]:
    """Host and port of a bound TCP server (typed loosely by the standard library, which also serves sockets)."""
    return str(address[0]), int(address[1])


def serve(kb: Path, settings: Settings, port: int = 0, slug: str | None = None) -> None:
    """Serve the review pages until Ctrl-C (or SIGTERM); prints the address first."""
    server = make_server(kb, settings, port)
    host, bound = _address(server.server_address)
    root = f"http://{host}:{bound}/"
    print(f"serving the review pages at {root} (Ctrl-C stops)", flush=True)
    if slug:
        print(f"{root}review/{urllib.parse.quote(slug.removeprefix('extract/'), safe='')}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr, flush=True)
    finally:
        server.server_close()
