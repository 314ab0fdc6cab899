"""The review stage: after an extraction branch is committed and before it is published, fix its mechanical
problems, have each configured reviewer persona judge its tip, and apply the accept policy.

One branch at a time, in the writer's process. Each step is keyed on the
branch's tip commit, so a cycle that finds the tip unchanged does nothing
again, and a new commit (a person's, or the pipeline's fix) is fixed once and
reviewed once. The reviewer's calls are logged under the ``review`` stage and
held against the budgets like extractions; a review that fails or does not
fit the budget is left for the next cycle, and the branch is published
without it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field

from extractor.commit.message import fix_message, is_fix_commit
from extractor.core.budget import over_budget, start_of_today
from extractor.core.errors import ExtractorError
from extractor.core.prices import price_for, usage_cost
from extractor.core.records import BranchReview, ExtractionReport
from extractor.core.settings import Settings
from extractor.core.text import one_line
from extractor.extraction.extract import prompts_dir
from extractor.extraction.prompts import Candidate, prompt_hash, template_text
from extractor.kb.gitrepo import GitError, Identity, checked_out_branches, commit_tree_on, git, move_ref, rev_parse
from extractor.kb.index import KBIndex
from extractor.kb.locks import WRITE_LOCK_WAIT, kb_lock
from extractor.kb.sources import SourceError, parse_source
from extractor.llm.client import LLMError, StructuredClient, make_client, response_format
from extractor.llm.ratelimit import SharedLimits, estimated_tokens
from extractor.review.branches import PendingReview, describe_branch, text_at
from extractor.review.decide import Decision, accept_branch
from extractor.review.fixes import fix_file, folder_domain
from extractor.review.reviewer import (
    REVIEW_PROMPT,
    ReviewItem,
    answer_model,
    build_review_messages,
    comment_body,
    outside_territory,
    parse_criteria,
    refusals,
    reviewer_agent,
    to_review,
)
from extractor.store.state import StateStore

REVIEW_STAGE = "review"
ANSWER_TOKENS_PER_ITEM = 60  # a verdict, a criterion or two with a reason: the estimate before a review
RELATED_PER_ITEM = 3
log = logging.getLogger("extractor")


class StageResult(BaseModel):
    """What the review stage did to one branch."""

    branch: str
    source: str = ""
    commit: str | None = None  # the tip that was reviewed
    fix_commit: str | None = None
    fixes: list[str] = Field(default_factory=list)
    reviews: list[BranchReview] = Field(default_factory=list)
    reviewed: bool = False  # a reviewer reviewed the tip in this run (not only before)
    skipped: list[str] = Field(default_factory=list)  # why a reviewer did not review (budget, LLM failure)
    refused: list[str] = Field(default_factory=list)  # why the policy did not accept the branch
    accepted: Decision | None = None

    def comment(self, reviewers: Sequence[str]) -> str | None:
        """The pull-request comment, once there is a review to post."""
        if not self.reviews:
            return None
        return comment_body(self.reviews, reviewers, self.fixes, self.refused)


class ReviewStage:
    """Reviews the extraction branches of one KB with ``settings.review_model``."""

    def __init__(
        self,
        kb_root: Path,
        settings: Settings,
        store: StateStore,
        index: Callable[[], KBIndex],
        client: StructuredClient | None = None,
    ) -> None:
        self.kb_root = kb_root
        self.settings = settings
        self.store = store
        self.index = index
        reviewer = settings.reviewer_settings()
        self.reviewer_settings = reviewer
        self.client = client or StructuredClient(
            make_client(reviewer), reviewer, cache=store, limits=SharedLimits(kb_root, reviewer)
        )
        self.budget_since: float | None = None  # the cycle's start, for the cycle budget

    def pending_work(self, branch: str) -> bool:
        """Whether ``branch``'s tip still waits for its fixes or a reviewer: a cheap look before :meth:`run`."""
        tip = rev_parse(self.kb_root, f"refs/heads/{branch}")
        if tip is None:
            return False
        reviewed = {review.reviewer for review in self.store.reviews_for(tip)}
        if any(name not in reviewed for name in self.settings.review_agents):
            return self.store.review_failures(branch, tip) < self.settings.max_source_attempts
        return not self.store.fix_recorded(branch, tip) and branch not in checked_out_branches(self.kb_root)

    def stored_comment(self, branch: str) -> str | None:
        """The pull-request comment from the stored reviews of the branch's tip (None: not reviewed yet)."""
        tip = rev_parse(self.kb_root, f"refs/heads/{branch}")
        reviews = self.store.reviews_for(tip) if tip else []
        return StageResult(branch=branch, reviews=reviews).comment(self.settings.review_agents)

    def run(self, branch: str) -> StageResult:
        """Fix, review and (by policy) accept ``branch``; every step already done for its tip is skipped."""
        result = StageResult(branch=branch)
        tip = rev_parse(self.kb_root, f"refs/heads/{branch}")
        if tip is None:
            return result
        item = describe_branch(self.kb_root, branch, self.settings)
        result.source = item.source
        if not item.source:
            result.skipped.append("the branch has no extraction commit")
            return result
        tip = self._fix(item, result)
        if tip != item.commit:
            item = describe_branch(self.kb_root, branch, self.settings)
        result.commit = item.commit
        reviews = {review.reviewer: review for review in self.store.reviews_for(item.commit)}
        items = self._items(item) if len(reviews) < len(self.settings.review_agents) else []
        failures = self.store.review_failures(branch, item.commit)
        if items and failures >= self.settings.max_source_attempts:
            result.skipped.append(f"review failed {failures} times on this commit; it waits for a new commit")
            items = []
        for reviewer in self.settings.review_agents:
            if reviewer in reviews or not items:
                continue
            made = self._review(item, reviewer, items, result)
            if made is not None:
                reviews[reviewer] = made
                result.reviewed = True
        result.reviews = [reviews[name] for name in self.settings.review_agents if name in reviews]
        if not items and not (item.claims or item.enrichments or item.entities_created or item.entities_updated):
            result.skipped.append("no claim or entity to review")
        if self.settings.auto_accept == "approved":
            result.refused = self._refusals(item, result.reviews)
        if self.settings.auto_accept == "approved" and not result.refused:
            try:
                tip = item.commit  # what was reviewed: a commit made on the branch since is not merged unseen
                result.accepted = accept_branch(self.kb_root, item.slug, self.settings, expected_tip=tip)
            except ExtractorError as exc:
                result.refused.append(f"accept failed: {one_line(str(exc))}")
        return result

    # mechanical fixes

    def _fix(self, item: PendingReview, result: StageResult) -> str:
        """The tip after the mechanical fixes of this commit (made at most once per commit, never on a commit
        that is itself the pipeline's fix, never under a person's checkout of the branch)."""
        tip = item.commit
        if self.store.fix_recorded(item.branch, tip):
            return tip
        message = git(self.kb_root, "log", "-1", "--format=%B", tip)
        if is_fix_commit(message):
            return tip
        if item.branch in checked_out_branches(self.kb_root):
            result.skipped.append(f"no mechanical fixes: {item.branch} is checked out in a work tree")
            return tip
        files, notes = self._fixed_files(item)
        if not files:
            self.store.record_fix(item.branch, tip, None)
            return tip
        identity = self.settings.agent_identity_for(item.agent)
        text = fix_message(item.agent, item.branch, tip, notes, self.settings.agent_trailer_key, identity)
        author = Identity(name=self.settings.author_name, email=self.settings.author_email)
        try:
            with kb_lock(self.kb_root, "write", wait=WRITE_LOCK_WAIT):
                fixed = commit_tree_on(self.kb_root, tip, dict(files), text, author)
                move_ref(self.kb_root, f"refs/heads/{item.branch}", fixed, tip)  # refused if the branch moved
        except (GitError, ExtractorError) as exc:
            result.skipped.append(f"no mechanical fixes: {one_line(str(exc))}")
            return tip
        self.store.record_fix(item.branch, tip, fixed)
        result.fix_commit, result.fixes = fixed, notes
        log.info("fixed", extra={"branch": item.branch, "commit": fixed, "fixes": notes})
        return fixed

    def _fixed_files(self, item: PendingReview) -> tuple[dict[str, str | None], list[str]]:
        kb, settings = self.kb_root, self.settings
        on_branch = set(git(kb, "ls-tree", "-r", "--name-only", item.commit).splitlines())
        stems = {PurePosixPath(path).stem.casefold() for path in on_branch if path.endswith(".md")}
        index = self.index()

        def resolves(target: str) -> bool:
            name = target.strip().removesuffix(".md")
            return PurePosixPath(name).name.casefold() in stems or index.resolve_link(name)[0] is not None

        created = git(kb, "log", "-1", "--format=%cs", item.extraction_commit or item.commit).strip()
        files: dict[str, str | None] = {}
        notes: list[str] = []
        kinds = [(path, "claim", root) for path in [*item.claims, *item.enrichments]
                 for root in settings.writable_claim_dirs if PurePosixPath(path).is_relative_to(root)]  # fmt: skip
        kinds += [(path, "entity", settings.entities_dir) for path in [*item.entities_created, *item.entities_updated]]
        for path, kind, _root in kinds:
            text = text_at(kb, item.commit, path)
            if text is None:
                continue
            domain = folder_domain(path, settings)
            fixed, fixed_notes = fix_file(path, text, kind, resolves, created, domain)
            if fixed != text:
                files[path], notes = fixed, [*notes, *fixed_notes]
        return files, notes

    # the reviewer's calls

    def _items(self, item: PendingReview) -> list[ReviewItem]:
        kb = self.kb_root
        report = self.store.extraction_for(item.extraction_commit or item.commit)
        base = item.base
        items: list[ReviewItem] = []

        def claim_facts(path: str) -> tuple[list[str], list[str]]:
            recorded = next((claim for claim in report.claims if claim.path == path), None) if report else None
            if recorded is None:
                return [], []
            return recorded.gates, [f"{flag.where}: {flag.reason} ({flag.gate})" for flag in recorded.flags]

        for number, path in enumerate(item.claims, start=1):
            gates, flags = claim_facts(path)
            items.append(ReviewItem(ident=f"claim-{number}", path=path, kind="claim", change="new claim",
                                    text=text_at(kb, item.commit, path) or "", gates=gates, flags=flags))  # fmt: skip
        for number, path in enumerate(item.enrichments, start=len(item.claims) + 1):
            diff = git(kb, "diff", base, item.commit, "--", path)
            items.append(ReviewItem(ident=f"claim-{number}", path=path, kind="claim",
                                    change="enrichment of an existing claim (diff)", text=diff))  # fmt: skip
        entities = [(path, "new entity note") for path in item.entities_created]
        entities += [(path, "entity note update (diff)") for path in item.entities_updated]
        for number, (path, change) in enumerate(entities, start=1):
            new = change == "new entity note"
            text = (text_at(kb, item.commit, path) or "") if new else git(kb, "diff", base, item.commit, "--", path)
            items.append(ReviewItem(ident=f"entity-{number}", path=path, kind="entity", change=change, text=text))
        return items

    def _review(
        self, item: PendingReview, reviewer: str, items: list[ReviewItem], result: StageResult
    ) -> BranchReview | None:
        try:
            messages, shape = self._request(item, reviewer, items)
            if (why := self._over_budget(self._estimate(messages, len(items)))) is not None:
                result.skipped.append(f"{reviewer} review not made: {why}")
                return None
            reply = self.client.ask(messages, shape)
        except LLMError as exc:
            self.store.log_calls(item.source, None, exc.calls, agent=reviewer, stage=REVIEW_STAGE)
            self.store.record_review_failure(item.branch, item.commit, str(exc))
            result.skipped.append(f"{reviewer} review failed: {exc}")
            log.info("review failed", extra={"branch": item.branch, "error": str(exc)})
            return None
        except (ExtractorError, ValueError, OSError) as exc:
            self.store.record_review_failure(item.branch, item.commit, str(exc))
            result.skipped.append(f"{reviewer} review not made: {one_line(str(exc))}")
            return None
        self.store.log_calls(item.source, None, reply.calls, agent=reviewer, stage=REVIEW_STAGE)
        fmt = response_format(self.reviewer_settings.structured_mode, shape, self.reviewer_settings.max_tokens)
        review = to_review(
            reply.value, items, reviewer=reviewer, agent=reviewer_agent(reviewer, item.agent, self.settings),  # type: ignore[arg-type]
            branch=item.branch, commit=item.commit, source_path=item.source, model=self.reviewer_settings.model,
            prompt_hash=prompt_hash(messages, fmt), usage=reply.usage, at=time.time(),
        )  # fmt: skip
        self.store.record_review(review)
        return review

    def _request(
        self, item: PendingReview, reviewer: str, items: list[ReviewItem]
    ) -> tuple[list[dict[str, str]], type[BaseModel]]:
        kb, settings = self.kb_root, self.settings
        text = text_at(kb, item.base, item.source) or text_at(kb, item.commit, item.source) or ""
        try:
            source = parse_source(Path(item.source), text)
            title, body = source.title, source.body
        except SourceError:
            title, body = PurePosixPath(item.source).stem, text
        criteria = parse_criteria(template_text(prompts_dir(self.settings), REVIEW_PROMPT))
        messages = build_review_messages(
            prompts_dir(self.settings), reviewer, settings, branch=item.branch, agent=item.agent,  # type: ignore[arg-type]
            source_path=item.source, source_title=title, source_body=body, related=self._related(items),
            items=items,
        )  # fmt: skip
        return messages, answer_model([entry.ident for entry in items], [name for name, _ in criteria])

    def _related(self, items: list[ReviewItem]) -> list[Candidate]:
        """KB claims the drafts may duplicate or contradict: the closest few to each drafted claim."""
        index = self.index()
        own = {entry.path for entry in items}
        seen: dict[str, Candidate] = {}
        for entry in items:
            if entry.kind != "claim":
                continue
            query = entry.text[:2000]
            for claim in index.related(query, RELATED_PER_ITEM + 1):
                if claim.path not in own and claim.path not in seen:
                    seen[claim.path] = Candidate(title=claim.title, description=claim.description)
        return list(seen.values())[: self.settings.retrieval_k or 10]

    def _estimate(self, messages: list[dict[str, str]], items: int) -> float:
        """What this request should cost: its prompt as sent and an answer of a verdict and a reason or two
        per item, at the reviewer's price; or, if higher, what recent reviews cost."""
        reviewer = self.reviewer_settings
        price = price_for(reviewer.model, reviewer.prices, embedded=reviewer.is_embedded)
        prompt = estimated_tokens(messages, 0)
        expected = usage_cost(price, prompt, ANSWER_TOKENS_PER_ITEM * items + 40) or 0.0
        return max(expected, self.store.review_cost_per_branch())

    def _over_budget(self, estimate: float) -> str | None:
        settings = self.settings
        if settings.budget_per_cycle is None and settings.budget_per_day is None:
            return None
        since = self.budget_since if self.budget_since is not None else time.time()
        return over_budget(
            settings,
            spent_cycle=self.store.spent_since(since),
            spent_today=self.store.spent_since(start_of_today()),
            per_source=estimate,
            what="review",
        )

    # the policy

    def _refusals(self, item: PendingReview, reviews: list[BranchReview]) -> list[str]:
        report: ExtractionReport | None = self.store.extraction_for(item.extraction_commit or item.commit)
        flagged = [f"{claim.path}: {flag.where}: {flag.reason}" for claim in (report.claims if report else [])
                   for flag in claim.flags]  # fmt: skip
        if report is None and item.claims:
            flagged.append("the extraction's gate results are not recorded")
        items = [*item.claims, *item.enrichments, *item.entities_created, *item.entities_updated]
        changed = [*items, *item.deleted, *item.other_changes, *([item.source] if item.source else [])]
        outside = outside_territory(changed, item.agent, item.source, self.settings)
        refused = refusals(reviews, self.settings.review_agents, items, flagged, outside, item.deleted,
                           item.other_changes)  # fmt: skip
        if item.branch in checked_out_branches(self.kb_root):
            refused.append(f"{item.branch} is checked out in a work tree")
        return refused
