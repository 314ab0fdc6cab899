"""Records every layer shares: LLM calls and their usage, evidence anchors, files to write, what one
extraction did (the report the store keeps) and a source's outcome. Data only: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Record(BaseModel):
    """The base of the records every layer passes around. Each builds its validator on first use, not when
    its module is imported: a command pays only for the records it uses (``status`` starts in a fraction of
    the time)."""

    model_config = ConfigDict(defer_build=True)


class CallRecord(Record):
    """One HTTP request to the LLM, as logged."""

    at: float
    model: str
    request_hash: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float
    outcome: str  # ok | invalid | length | refusal | error | cached
    error: str | None = None
    raw_reply: str | None = None
    cached_tokens: int = 0
    cost: float | None = None
    endpoint: str | None = None  # which of several endpoints answered (``endpoints``); None with one


class Usage(Record):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    requests: int = 0
    cost: float | None = None  # dollars; None while no call had a known price

    def merge(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.requests += other.requests
        self.add_cost(other.cost)

    def add_cost(self, cost: float | None) -> None:
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost

    def add(self, usage: Any | None, cost: float | None = None) -> None:
        self.requests += 1
        if usage is not None:
            self.prompt_tokens += token_count(usage, "prompt_tokens")
            self.completion_tokens += token_count(usage, "completion_tokens")
            self.cached_tokens += cached_tokens(usage)
        self.add_cost(cost)


def token_count(usage: Any | None, name: str) -> int:
    """A count of the usage an endpoint reports; anything but a non-negative whole number counts as 0."""
    value = getattr(usage, name, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def cached_tokens(usage: Any | None) -> int:
    """Prompt tokens the provider served from its prompt cache, where the API reports them."""
    details = getattr(usage, "prompt_tokens_details", None)
    return token_count(details, "cached_tokens") if details is not None else 0


Method = Literal["exact", "normalised", "fuzzy", "paraphrase"]


class Anchor(Record):
    """Where one evidence item sits in the source; ``start``/``end`` are ``None`` for a paraphrase."""

    item: int  # index of the evidence item in the claim's evidence list
    quote: str  # the text that was looked for: the quoted part, or the whole item
    start: int | None  # character offsets into the source text given
    end: int | None
    method: Method
    score: float  # 100 for exact/normalised, the rapidfuzz score for fuzzy, 0 for paraphrase


def anchored_share(anchors: list[Anchor]) -> float:
    """Share of evidence items found in the source (any method but paraphrase).

    No items gives 0.0, not 1.0: nothing was anchored, and a claim without evidence already fails the
    evidence gate, so callers that care tell "no evidence" apart by the empty list.
    """
    if not anchors:
        return 0.0
    return sum(anchor.method != "paraphrase" for anchor in anchors) / len(anchors)


class Flag(Record):
    """One figure or quotation of a claim that a gate judged: where it sits and why.

    ``unverified`` items are flagged for the reviewer (or removed, by setting); ``derived`` figures and
    ``near`` quotations are grounded and kept with their reason (the operands, the source's words) so a
    reviewer checks them in one look.
    """

    gate: str
    where: str  # title | description | argument | evidence[i]
    text: str
    reason: str
    verdict: Literal["unverified", "derived", "near", "removed"] = "unverified"


class FileChange(Record):
    path: str  # relative to the KB root
    text: str | None  # None deletes the file


class ClaimReport(Record):
    title: str
    path: str
    gates: list[str] = Field(description="the gates the claim passed (a claim is written only if it passes all)")
    anchors: list[Anchor]
    anchored_share: float
    flags: list[Flag] = Field(default_factory=list, description="unverified items kept for the reviewer")
    grounded: list[Flag] = Field(default_factory=list, description="derived figures and near quotations")


class ExtractionReport(Record):
    source_path: str
    commit: str
    branch: str | None
    worker: int
    agent: str
    model: str
    prompt_hash: str
    parts: int
    claims: list[ClaimReport]
    enriched: list[str]
    entities_created: list[str] = Field(default_factory=list)
    entities_updated: list[str] = Field(default_factory=list)
    # Why each drafted entity is new, an update, merged or dropped: 'update "X": drafted as new, but the KB has it: ...'
    entity_decisions: list[str] = Field(default_factory=list)
    dropped: list[str]
    part_notes: list[str]
    prompt_tokens: int
    completion_tokens: int
    cost: float | None

    @property
    def evidence_items(self) -> int:
        return sum(len(claim.anchors) for claim in self.claims)

    @property
    def anchored_items(self) -> int:
        return sum(anchor.method != "paraphrase" for claim in self.claims for anchor in claim.anchors)


class OutcomeKind(StrEnum):
    PROCESSED = "processed"
    NULL_RESULT = "null-result"
    PLANNED = "planned"  # a dry run: drafts computed, nothing written
    REFUSED = "refused"  # not extracted: already done, being extracted elsewhere, not a source of the KB
    FAILED = "failed"  # retried later (after a backoff, in runs)
    INVALID = "invalid"  # the file cannot be used as a source until it changes
    PARKED = "parked"  # failed too often: waits for ``run --force`` or ``extract``


class SourceOutcome(Record):
    """What happened to one source: the one result of ``extract``, of a cycle and of batch collect.

    The report the store keeps (:class:`ExtractionReport`) is its view of a
    committed extraction; the JSON line a run logs is :meth:`log_line`.
    """

    source_path: str
    kind: OutcomeKind
    worker: int = 0
    error: str | None = None
    commit: str | None = None
    branch: str | None = None  # the extraction branch, in branch mode
    agent: str | None = None
    model: str | None = None
    prompt_hash: str | None = None
    message: str | None = None  # the commit message (planned or made)
    changes: list[FileChange] = Field(default_factory=list)  # every file written (or, in a dry run, to write)
    claims: list[str] = Field(default_factory=list)  # titles of the claims written
    enrichments: list[str] = Field(default_factory=list)  # titles of the claims enriched
    entities_created: list[str] = Field(default_factory=list)  # paths of the entity notes written
    entities_updated: list[str] = Field(default_factory=list)  # paths of the entity notes given new events
    notes: list[str] = Field(default_factory=list)  # what the writer decided that the user should know
    usage: Usage = Field(default_factory=Usage)
    calls: list[CallRecord] = Field(default_factory=list)
    seconds: float = 0.0
    report: ExtractionReport | None = None
    published: str | None = None  # the pull request's URL ("" when only pushed), once published
    publish_error: str | None = None
    review_verdict: str | None = None  # the reviewer model's verdict on the branch (branch_verdict), if reviewed
    review_notes: list[str] = Field(default_factory=list)  # fixes made, reviews skipped, why not auto-accepted
    accepted: str | None = None  # the main branch's commit, when the accept policy merged the branch

    @property
    def ok(self) -> bool:
        return self.kind in (OutcomeKind.PROCESSED, OutcomeKind.NULL_RESULT, OutcomeKind.PLANNED)

    @property
    def done(self) -> bool:
        """Committed: processed or null-result."""
        return self.kind in (OutcomeKind.PROCESSED, OutcomeKind.NULL_RESULT)

    def summary(self) -> SourceOutcome:
        """The outcome without the file texts, the calls and the report: what a cycle's report keeps of each
        source (a cycle of thousands would otherwise hold every file it wrote in memory)."""
        return self.model_copy(update={"changes": [], "calls": [], "report": None})

    def log_line(self) -> dict[str, Any]:
        """The fields a run logs for each source, one JSON object per line."""
        return {
            "source_path": self.source_path,
            "worker": self.worker,
            "ok": self.ok,
            "status": self.kind.value,
            "error": self.error,
            "commit": self.commit,
            "claims": len(self.claims),
            "enrichments": len(self.enrichments),
            "entities_created": len(self.entities_created),
            "entities_updated": len(self.entities_updated),
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "seconds": self.seconds,
            **({"review": self.review_verdict, "accepted": self.accepted} if self.review_verdict else {}),
        }


Verdict = Literal["approve", "request_changes", "reject"]


class Finding(Record):
    """A criterion an item failed, and the reviewer's reason."""

    criterion: str
    reason: str


class ItemReview(Record):
    """A reviewer's verdict on one claim or entity note of a branch; ``path`` is set by the pipeline, never by
    the model (it names items by their number in the prompt)."""

    path: str
    kind: Literal["claim", "entity"]
    verdict: Verdict
    findings: list[Finding] = Field(default_factory=list)
    fixes: list[str] = Field(default_factory=list, description="mechanical fixes the reviewer suggests")


class BranchReview(Record):
    """One reviewer persona's review of one commit of an extraction branch."""

    branch: str
    commit: str
    source_path: str
    reviewer: Literal["lead", "domain"]
    agent: str  # the persona's agent name
    model: str
    prompt_hash: str
    items: list[ItemReview]
    summary: str = ""
    usage: Usage = Field(default_factory=Usage)
    at: float = 0.0

    @property
    def verdict(self) -> Verdict:
        """The branch's verdict by this reviewer: reject if any item is rejected, approve if all are approved."""
        verdicts = {item.verdict for item in self.items}
        if "reject" in verdicts:
            return "reject"
        return "request_changes" if "request_changes" in verdicts else "approve"


def branch_verdict(reviews: list[BranchReview], reviewers: Sequence[str]) -> str:
    """What the reviews of a branch's tip say, for lists and filters: ``approved`` (every configured reviewer
    approved every item), ``rejected``, ``changes`` (changes requested), or ``unreviewed`` (a reviewer has not
    reviewed the tip yet)."""
    by_reviewer: dict[str, BranchReview] = {review.reviewer: review for review in reviews}
    verdicts = {review.verdict for review in by_reviewer.values()}
    if "reject" in verdicts:
        return "rejected"
    if "request_changes" in verdicts:
        return "changes"
    return "approved" if reviews and all(name in by_reviewer for name in reviewers) else "unreviewed"
