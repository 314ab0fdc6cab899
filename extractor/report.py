"""What one extraction did, for the state store and the review page.

Built from the worker's result and the writer's plan once the commit exists:
which claims were written where, the gates they passed, where each evidence
item sits in the source, what was dropped, and what it cost.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from extractor.anchoring import Anchor, anchored_share
from extractor.extract import ExtractionResult
from extractor.validate import GATES
from extractor.writer import ChangeSet


class ClaimReport(BaseModel):
    title: str
    path: str
    gates: list[str] = Field(description="the gates the claim passed (a claim is written only if it passes all)")
    anchors: list[Anchor]
    anchored_share: float


class ExtractionReport(BaseModel):
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


def build_report(
    result: ExtractionResult, changes: ChangeSet, commit: str, branch: str | None, worker: int
) -> ExtractionReport:
    claims = [
        ClaimReport(
            title=resolved.draft.title,
            path=path,
            gates=list(GATES),
            anchors=resolved.anchors,
            anchored_share=anchored_share(resolved.anchors),
        )
        for resolved, path in zip(result.claims, changes.claim_paths, strict=True)
    ]
    return ExtractionReport(
        source_path=result.source_path,
        commit=commit,
        branch=branch,
        worker=worker,
        agent=result.agent,
        model=result.model,
        prompt_hash=result.prompt_hash,
        parts=result.parts,
        claims=claims,
        enriched=changes.enriched_titles,
        dropped=result.dropped,
        part_notes=result.part_notes,
        prompt_tokens=result.usage.prompt_tokens,
        completion_tokens=result.usage.completion_tokens,
        cost=result.usage.cost,
    )
