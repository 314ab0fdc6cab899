"""The review page: one extraction branch as an HTML page a reviewer reads in a browser.

Three steps, kept apart so the middle and the last can be tested without git:

1. :func:`read_input` (I/O): the branch's texts from git (the source at the
   branch's base, the claim files and enriched claims as they are on the
   branch), the extraction's report and the reviewer model's reviews from the
   state store, if it has them.
2. :func:`build_page` (pure): anchors each evidence item in the source body,
   cuts the body into segments at every span boundary, renders the body as
   markdown with each segment highlighted, and diffs the enriched files, into
   a :class:`ReviewPage`.
3. :func:`render_page` (pure): the page model to an HTML string through a
   Jinja2 template with autoescaping on.

Markdown is rendered by markdown-it (CommonMark, raw HTML off, images off,
links only to http, https and mailto). Its output, with the ``<mark>``
elements this module puts in, is the only HTML marked safe: raw HTML in a
source or a claim comes out as escaped text, and everything else from the
source or the model is escaped by the template. The written page has no
script; :func:`serve` adds one small script of its own (keyboard shortcuts)
and forms that accept or reject a branch, guarded by a per-session token.
"""

from __future__ import annotations

import difflib
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Literal

import jinja2
from markupsafe import Markup
from pydantic import BaseModel

from extractor.core.records import Anchor, BranchReview, ExtractionReport, Flag, Method, branch_verdict
from extractor.core.settings import Settings
from extractor.extraction.anchoring import anchor_claims
from extractor.extraction.gates import GATES
from extractor.kb.claims import ClaimParseError, parse_claim
from extractor.kb.sources import SourceError, parse_source
from extractor.review.branches import (
    ItemVerdict,
    PendingReview,
    branch_for,
    describe_branch,
    pending,
    text_at,
    verdicts_for,
)
from extractor.review.entitychanges import EntityChange, entity_change
from extractor.review.markdown import Segment, render_markdown, render_source
from extractor.store.state import open_store

# The written page: no script, no form. The served pages run one script of their own and post to themselves.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
SERVED_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
DIFF_CONTEXT = 3
MAX_FORM_BYTES = 64 * 1024  # a decision's form is a token and a reason; anything bigger is refused


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
    reviews: list[BranchReview] = []  # the reviewer model's latest review of this commit, per reviewer
    reviewers: list[str] = []  # the reviewers configured, for the branch's verdict
    reviewing: bool = False  # a reviewer model is configured: "not reviewed" means something


# --- the page model -------------------------------------------------------------


class SourceView(BaseModel):
    path: str
    title: str
    url: str | None  # only http(s) URLs; anything else is shown as text
    url_text: str | None
    author: str | None
    date: str | None
    segments: list[Segment]
    error: str | None = None
    html: str = ""  # the body rendered as markdown with the segments marked (see render_source)


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


class ReviewView(BaseModel):
    """One reviewer's review of the branch as a whole, for the page's header."""

    reviewer: str
    agent: str
    model: str
    verdict: str
    summary: str
    cost: float | None


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
    verdicts: list[ItemVerdict] = []  # the reviewer model's, one per reviewer
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
    verdicts: list[ItemVerdict] = []


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
    verdict: str | None = None  # approved | changes | rejected | unreviewed; None: no reviewer model, no review
    reviews: list[ReviewView] = []
    review_cost: float | None = None


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
    verdict: str | None = None  # as ReviewPage.verdict
    flags: int = 0  # items the gates flagged for the reviewer
    cost: float | None = None  # the extraction's and its reviews' (None: no price known)


# --- gathering (I/O) --------------------------------------------------------------


def read_input(kb: Path, slug: str, settings: Settings) -> PageInput:
    """Read what the page of ``extract/<slug>`` shows; raises :class:`ReviewError` for an unknown branch."""
    item = describe_branch(kb, branch_for(slug), settings)
    base = item.base
    store = open_store(kb, settings)
    try:
        report = store.extraction_for(item.extraction_commit or item.commit)
        reviews = store.reviews_for(item.commit)
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
        reviews=reviews,
        reviewers=list(settings.review_agents),
        reviewing=settings.review_model is not None,
    )


def gather(kb: Path, slug: str, settings: Settings) -> ReviewPage:
    return build_page(read_input(kb, slug, settings))


def review_href(slug: str) -> str:
    return "/review/" + urllib.parse.quote(slug, safe="")


def index_entries(kb: Path, settings: Settings) -> list[IndexEntry]:
    """The pending branches with what the state store knows of each: verdict, flags and cost."""
    items = pending(kb, settings)
    store = open_store(kb, settings)
    try:
        known = {
            item.commit: (store.extraction_for(item.extraction_commit or item.commit), store.reviews_for(item.commit))
            for item in items
        }
    finally:
        store.close()
    entries = []
    for item in items:
        report, reviews = known[item.commit]
        entries.append(
            IndexEntry(
                slug=item.slug,
                href=review_href(item.slug),
                source=item.source,
                agent=item.agent,
                model=item.model,
                claims=len(item.claims),
                enrichments=len(item.enrichments),
                entities=len(item.entities_created) + len(item.entities_updated),
                warnings=len(item.warnings),
                verdict=_verdict(reviews, list(settings.review_agents), settings.review_model is not None),
                flags=sum(len(claim.flags) for claim in report.claims) if report else 0,
                cost=_total_cost([report.cost] if report else [], reviews),
            )
        )
    return entries


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


def _verdict(reviews: list[BranchReview], reviewers: list[str], reviewing: bool) -> str | None:
    """The branch's verdict; None when no reviewer model is configured and none reviewed it."""
    if not reviews and not reviewing:
        return None
    return branch_verdict(reviews, reviewers)


def _total_cost(costs: list[float | None], reviews: list[BranchReview]) -> float | None:
    """The sum of the costs that are known; None when none is."""
    known = [cost for cost in [*costs, *(review.usage.cost for review in reviews)] if cost is not None]
    return sum(known) if known else None


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
    source.html, shown = render_source(source.segments)
    marks: dict[str, list[str]] = {}
    for segment in source.segments:
        if segment.mark_id in shown:  # a stretch of markup alone (a list marker, "**") has nothing to highlight
            for ident in segment.evidence:
                marks.setdefault(ident, []).append(segment.mark_id)
    for claim in claims:
        claim.verdicts = verdicts_for(claim.path, data.reviews)
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
                verdicts=verdicts_for(path, data.reviews),
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
        verdict=_verdict(data.reviews, data.reviewers, data.reviewing),
        reviews=[
            ReviewView(
                reviewer=review.reviewer,
                agent=review.agent,
                model=review.model,
                verdict=review.verdict,
                summary=review.summary,
                cost=review.usage.cost,
            )
            for review in data.reviews
        ],  # fmt: skip
        review_cost=_total_cost([], data.reviews),
    )


# --- rendering (pure) ------------------------------------------------------------

METHOD_LABELS: dict[str, str] = {
    "exact": "found verbatim",
    "normalised": "found once quotes, dashes and spaces are normalised",
    "fuzzy": "found approximately",
    "paraphrase": "paraphrase: not found in the source",
}
VERDICT_LABELS: dict[str, str] = {
    "approve": "approve",
    "request_changes": "changes requested",
    "reject": "reject",
    "approved": "approved",
    "changes": "changes requested",
    "rejected": "rejected",
    "unreviewed": "not reviewed",
}
ACTIONS = ("accept", "reject", "retry")


class Served(BaseModel):
    """What a page served by ``review serve`` adds to the written one: the forms' token, the links to the
    previous and next pending branch, and what the last decision did (or why it failed)."""

    token: str
    previous: str | None = None
    next: str | None = None
    done: str | None = None
    error: str | None = None


def _dollars(cost: float | None) -> str:
    if cost is None:
        return "unknown"
    return "$" + (("%.6f" if cost < 0.01 else "%.4f") % cost)


def _source_html(source: SourceView) -> Markup:
    """The source body's HTML as :func:`render_source` made it: markdown-it's output and this module's marks."""
    return Markup(source.html)


def _environment() -> jinja2.Environment:
    # autoescape=True for every template: the file name ends in .j2, which select_autoescape would not
    # recognise as HTML. Only markdown-it's output is marked safe (render_markdown, _source_html).
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("extractor.review", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals.update(
        csp=CSP, gates=GATES, method_labels=METHOD_LABELS, verdict_labels=VERDICT_LABELS, source_html=_source_html,
        review_href=review_href,
    )  # fmt: skip
    environment.filters["markdown"] = render_markdown
    environment.filters["markdown_inline"] = lambda text: render_markdown(text, inline=True)
    environment.filters["dollars"] = _dollars
    return environment


_ENVIRONMENT: list[jinja2.Environment] = []


def environment() -> jinja2.Environment:
    if not _ENVIRONMENT:
        _ENVIRONMENT.append(_environment())
    return _ENVIRONMENT[0]


def _render(
    page: ReviewPage | None,
    index: list[IndexEntry] | None,
    message: str | None,
    served: Served | None,
    heading: str = "Not found",
) -> str:
    template = environment().get_template("review.html.j2")
    return template.render(
        page=page, index=index, message=message, served=served, csp=SERVED_CSP if served else CSP, heading=heading
    )


def render_page(page: ReviewPage, served: Served | None = None) -> str:
    """The review page as one HTML document: self-contained and without script unless ``served``."""
    return _render(page, None, None, served)


def render_index(entries: list[IndexEntry], served: Served | None = None) -> str:
    """The server's front page: the pending extraction branches, each linking to its page."""
    return _render(None, entries, None, served)


def render_not_found(message: str, served: Served | None = None, heading: str = "Not found") -> str:
    """A page with one message: something not found, or a request refused."""
    return _render(None, None, message, served, heading)
