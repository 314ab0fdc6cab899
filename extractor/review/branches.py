"""Review in git: pending extraction branches, what they hold, accepting and rejecting them.

A reviewer never needs the pipeline's internals: every extraction is a branch
``extract/<source>`` with one commit on the main branch's tip. Accepting merges
it; rejecting deletes it and records the decision on the source in main, so
it is not extracted again by itself.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path, PurePosixPath

from extractor.commit.message import (
    BRANCH_PREFIX,
    BranchNameError,
    CommitInfo,
    branch_for,
    parse_message,
    rejection_message,
)
from extractor.core.errors import ConfigurationError, ExtractorError
from extractor.core.records import BranchReview, FileChange, Finding, Flag, Record, branch_verdict
from extractor.core.settings import Settings
from extractor.kb.gitrepo import (
    GitError,
    Identity,
    branch_tip,
    changed_paths,
    commit_time,
    commits_between,
    git,
    identity_env,
    merge_base,
    move_ref,
    read_at,
    rev_parse,
    unmerged_branches,
)
from extractor.kb.yamlio import replace_frontmatter_keys, split_document
from extractor.review.entitychanges import EntityChange, entity_change
from extractor.store.state import SourceState, open_store


class ReviewError(ExtractorError):
    """A review command cannot be carried out; main is left as it was."""


class NotABranchError(ReviewError):
    """A name a reviewer gave (on the command line, in a review page's address) that is no pending extraction
    branch."""


class MalformedSlugError(NotABranchError, ConfigurationError):
    """A name that could be no extraction branch at all (``x~1``, ``../x``): a usage error."""


def pending_branch(kb: Path, slug: str) -> tuple[str, str]:
    """The extraction branch a reviewer names (by its slug, or the branch itself) and its tip.

    Only a name made of a slug's characters that is a local branch ``refs/heads/extract/<slug>`` is one: never
    a revision expression (``x~1``, ``x^``, ``x@{0}``, ``a..b``), a tag or a remote's branch.
    """
    try:
        branch = branch_for(slug)
    except BranchNameError:
        raise MalformedSlugError(f"not an extraction branch: {slug!r}") from None
    tip = branch_tip(kb, branch)
    if tip is None:
        raise NotABranchError(f"not an extraction branch: {slug!r} (no local branch {branch})")
    return branch, tip


class PendingReview(Record):
    slug: str
    branch: str
    commit: str  # the branch's tip
    base: str = ""  # where it leaves the main branch: what its changes are measured against
    extraction_commit: str = ""  # the extraction's own commit: the tip, unless fixes or a person's commits follow
    source: str
    agent: str
    worker: int | None
    model: str
    prompt_hash: str
    claims: list[str]
    enrichments: list[str]
    entities_created: list[str] = []
    entities_updated: list[str] = []
    deleted: list[str] = []  # files the branch deletes (a rename is a deletion and a new file)
    other_changes: list[str] = []  # files added or changed that are neither claims, entity notes nor the source
    warnings: list[str]
    age_seconds: float

    @property
    def null_result(self) -> bool:
        """Nothing drafted: no claim, enrichment or entity note (``review list --null``; ``--with-claims`` is
        ``bool(claims)``)."""
        return not (self.claims or self.enrichments or self.entities_created or self.entities_updated)


def dropped_items(notes: str) -> list[str]:
    """The items of the ``Dropped:`` part that closes a source's ``extraction_notes``.

    Items are joined by "; ", and so are the gates' reasons inside an item's
    parentheses (and a title in quotes may hold one), so only a separator
    outside quotes and parentheses ends an item.
    """
    if "Dropped: " not in notes:
        return []
    text = notes.rsplit("Dropped: ", 1)[1]  # the pipeline's own part comes last, after the model's notes
    items: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    position = 0
    while position < len(text):
        char = text[position]
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth = max(depth - 1, 0)
        elif not quoted and depth == 0 and text.startswith("; ", position):
            items.append("".join(current))
            current, position = [], position + 2
            continue
        current.append(char)
        position += 1
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def describe_branch(kb: Path, branch: str, settings: Settings) -> PendingReview:
    branch, commit = pending_branch(kb, branch)
    base = merge_base(kb, f"refs/heads/{settings.main_branch}", commit)
    extraction, info = extraction_commit(kb, base, commit, settings)
    changes = changed_paths(kb, base, commit)  # a rename: a deletion and a new file
    claims_dirs = [PurePosixPath(d) for d in settings.writable_claim_dirs]

    def in_claims(path: str) -> bool:
        return any(PurePosixPath(path).is_relative_to(d) for d in claims_dirs)

    def in_entities(path: str) -> bool:
        return PurePosixPath(path).is_relative_to(settings.entities_dir)

    source = info.source if info else ""
    known = {path for status, path in changes if status in ("A", "M") and (in_claims(path) or in_entities(path))}
    warnings: list[str] = []
    if info is not None and (text := read_at(kb, commit, info.source)) is not None:
        warnings = dropped_items(str(split_document(text)[0].get("extraction_notes") or ""))
    return PendingReview(
        slug=branch.removeprefix(BRANCH_PREFIX),
        branch=branch,
        commit=commit,
        base=base,
        extraction_commit=extraction,
        source=source,
        agent=info.agent if info else "",
        worker=info.worker if info else None,
        model=info.model if info else "",
        prompt_hash=info.prompt_hash if info else "",
        claims=[path for status, path in changes if status == "A" and in_claims(path)],
        enrichments=[path for status, path in changes if status == "M" and in_claims(path)],
        entities_created=[path for status, path in changes if status == "A" and in_entities(path)],
        entities_updated=[path for status, path in changes if status == "M" and in_entities(path)],
        deleted=[path for status, path in changes if status == "D"],
        other_changes=[path for status, path in changes if status != "D" and path not in known and path != source],
        warnings=warnings,
        age_seconds=time.time() - commit_time(kb, commit),
    )


def extraction_commit(kb: Path, base: str, tip: str, settings: Settings) -> tuple[str, CommitInfo | None]:
    """The branch's extraction commit (the first after ``base`` that says it is one) and what it says; the tip
    and None when no commit does."""
    for sha, message, _ in commits_between(kb, base, tip):
        if (info := parse_message(message, settings.agent_trailer_key)) is not None:
            return sha, info
    return tip, None


def pending(kb: Path, settings: Settings) -> list[PendingReview]:
    branches = unmerged_branches(kb, BRANCH_PREFIX, settings.main_branch)
    # A branch under extract/ that no slug names (a person's extract/a/b) is not the pipeline's: left out.
    return [describe_branch(kb, branch, settings) for branch in branches if _is_slug_branch(branch)]


def _is_slug_branch(branch: str) -> bool:
    try:
        return branch_for(branch) == branch
    except BranchNameError:
        return False


class ItemVerdict(Record):
    """One reviewer's verdict on one claim or entity note, with the reasons per failed criterion."""

    reviewer: str
    agent: str
    model: str
    verdict: str
    findings: list[Finding] = []
    fixes: list[str] = []


def verdicts_for(path: str, reviews: list[BranchReview]) -> list[ItemVerdict]:
    return [
        ItemVerdict(reviewer=review.reviewer, agent=review.agent, model=review.model, verdict=item.verdict,
                    findings=item.findings, fixes=item.fixes)
        for review in reviews
        for item in review.items
        if item.path == path
    ]  # fmt: skip


def verdicts_of(kb: Path, items: list[PendingReview], settings: Settings) -> dict[str, str]:
    """Each branch's verdict (:func:`branch_verdict`) on its tip, by branch name."""
    store = open_store(kb, settings)
    try:
        return {item.branch: branch_verdict(store.reviews_for(item.commit), settings.review_agents) for item in items}
    finally:
        store.close()


class ClaimFlags(Record):
    """What the gates said of one drafted claim: the items to check (unverified) and the grounded-by-reasoning
    ones (derived figures, near quotations). Empty when the state store has no report of the commit. Beside
    them, each reviewer's verdict on it."""

    path: str
    title: str | None
    flags: list[Flag]
    grounded: list[Flag]
    verdicts: list[ItemVerdict] = []


class ReviewShow(Record):
    """``review show --json``: one extraction branch as a program reads it."""

    review: PendingReview
    claims: list[ClaimFlags]
    entities: list[EntityChange] = []  # new notes and updated ones, with the bullets added
    recorded: bool  # the state store has a report of this commit
    verdict: str = "unreviewed"  # the reviewer model's verdict on the tip (branch_verdict)
    reviews: list[BranchReview] = []  # each reviewer's review of the tip
    entity_verdicts: dict[str, list[ItemVerdict]] = {}  # by entity path
    enrichment_verdicts: dict[str, list[ItemVerdict]] = {}  # by enriched claim's path


def flags_of(kb: Path, item: PendingReview, settings: Settings) -> ReviewShow:
    """Each claim's flags from the state store's report of the branch's commit, and the entity notes changed."""
    store = open_store(kb, settings)
    try:
        report = store.extraction_for(item.extraction_commit or item.commit)
        reviews = store.reviews_for(item.commit)
    finally:
        store.close()
    by_path = {claim.path: claim for claim in report.claims} if report else {}
    claims = [
        ClaimFlags(
            path=path,
            title=by_path[path].title if path in by_path else None,
            flags=by_path[path].flags if path in by_path else [],
            grounded=by_path[path].grounded if path in by_path else [],
            verdicts=verdicts_for(path, reviews),
        )
        for path in item.claims
    ]
    decisions = report.entity_decisions if report else []
    base = item.base
    entities = [
        change
        for path in [*item.entities_created, *item.entities_updated]
        if (change := entity_change(path, text_at(kb, base, path), text_at(kb, item.commit, path), decisions))
    ]
    return ReviewShow(
        review=item, claims=claims, entities=entities, recorded=report is not None,
        verdict=branch_verdict(reviews, settings.review_agents), reviews=reviews,
        entity_verdicts={path: verdicts_for(path, reviews) for path in item.entities_created + item.entities_updated},
        enrichment_verdicts={path: verdicts_for(path, reviews) for path in item.enrichments},
    )  # fmt: skip


def text_at(kb: Path, rev: str, path: str) -> str | None:
    """A file's text at a revision; None when it is absent there or not UTF-8 text."""
    try:
        return read_at(kb, rev, path)
    except UnicodeDecodeError:
        return None


def show_data(kb: Path, slug: str, settings: Settings) -> ReviewShow:
    return flags_of(kb, describe_branch(kb, slug, settings), settings)


def flag_lines(claim: ClaimFlags) -> list[str]:
    lines = [f"flag: {flag.where}: {flag.reason} ({flag.gate})" for flag in claim.flags]
    lines += [f"{flag.verdict}: {flag.where}: {flag.text}: {flag.reason}" for flag in claim.grounded]
    return lines + verdict_lines(claim.verdicts)


def verdict_lines(verdicts: list[ItemVerdict]) -> list[str]:
    lines = []
    for given in verdicts:
        lines.append(f"review ({given.reviewer}, {given.agent}, {given.model}): {given.verdict}")
        lines += [f"  {finding.criterion}: {finding.reason}" for finding in given.findings]
        lines += [f"  suggested fix: {fix}" for fix in given.fixes]
    return lines


def show(kb: Path, slug: str, settings: Settings) -> str:
    """The drafts as a reviewer reads them: each claim's flags and file in full, enrichments and the source as
    diffs."""
    data = show_data(kb, slug, settings)
    item = data.review
    lines = [
        f"{item.branch}: {item.source}",
        f"agent {item.agent}, worker {item.worker}, model {item.model}, prompt {item.prompt_hash}",
    ]
    lines += [f"warning: {w}" for w in item.warnings]
    if settings.review_model is not None or data.reviews:
        lines.append(f"review: {data.verdict}" + "".join(f"; {r.reviewer} ({r.model}): {r.verdict}"
                                                         for r in data.reviews))  # fmt: skip
    if not data.recorded:
        lines.append("flags: not recorded (the state store has no report of this commit; see extraction_notes)")
    for claim in data.claims:
        lines += ["", f"==> {claim.path}", *flag_lines(claim), git(kb, "show", f"{item.commit}:{claim.path}").rstrip()]
    for entity in data.entities:
        what = f"new {entity.entity_type}" if entity.change == "new" else f"update: {len(entity.added)} new bullet(s)"
        lines += ["", f"==> {entity.path} ({what})"]
        lines += [f"decision: {entity.decision}"] if entity.decision else []
        lines += verdict_lines(data.entity_verdicts.get(entity.path, []))
        if entity.change == "new":
            lines.append(git(kb, "show", f"{item.commit}:{entity.path}").rstrip())
    base = item.base
    modified = [*item.enrichments, *item.entities_updated, *([item.source] if item.source else [])]
    for path in item.enrichments:
        if data.enrichment_verdicts.get(path):
            lines += ["", f"==> {path} (enrichment)", *verdict_lines(data.enrichment_verdicts[path])]
    if modified:
        lines += ["", git(kb, "diff", base, item.commit, "--", *modified).rstrip()]
    return "\n".join(lines) + "\n"


def _on_main(kb: Path, settings: Settings) -> bool:
    try:
        return git(kb, "symbolic-ref", "-q", "HEAD").strip() == f"refs/heads/{settings.main_branch}"
    except GitError:
        return False


def _identity(settings: Settings) -> Identity:
    return Identity(name=settings.author_name, email=settings.author_email)


def accept(kb: Path, slug: str, settings: Settings, expected_tip: str | None = None) -> str:
    """Merge an extraction branch into main (merge commit or fast-forward); a conflict changes nothing.

    ``expected_tip``: merge only that commit (the one a reviewer approved); a branch that has moved since is
    refused. The commit is merged by its id, so a commit made on the branch meanwhile is never merged unseen,
    and the branch is deleted only if it still points at it.
    """
    branch, tip = pending_branch(kb, slug)
    main = rev_parse(kb, f"refs/heads/{settings.main_branch}")
    if main is None:
        raise ReviewError(f"no branch {settings.main_branch}")
    if expected_tip is not None and tip != expected_tip:
        raise ReviewError(f"{branch} moved since it was reviewed ({expected_tip[:12]}, now {tip[:12]})")
    fast_forward = settings.merge_mode == "fast-forward"
    message = f"Accept {branch}\n\nMerge the drafts extracted from {describe_branch(kb, branch, settings).source}.\n"
    if _on_main(kb, settings):
        flags = ["--ff-only"] if fast_forward else ["--no-ff", "-m", message]
        env = identity_env(_identity(settings))
        try:
            git(kb, "merge", "--no-edit", *flags, tip, env=env)
        except GitError as exc:
            if (kb / ".git" / "MERGE_HEAD").exists():
                subprocess.run(["git", "merge", "--abort"], cwd=kb, capture_output=True)
            raise ReviewError(f"cannot merge {branch}: {exc}") from exc
    else:
        if fast_forward:
            if git(kb, "merge-base", main, tip).strip() != main:
                raise ReviewError(f"{branch} cannot be fast-forwarded onto {settings.main_branch}")
            new = tip
        else:
            merged = subprocess.run(["git", "merge-tree", "--write-tree", main, tip], cwd=kb,
                                    capture_output=True, text=True)  # fmt: skip
            if merged.returncode != 0:
                conflicts = " ".join(merged.stdout.split()[1:])[:300]
                raise ReviewError(f"{branch} conflicts with {settings.main_branch}: {conflicts}")
            tree = merged.stdout.split()[0]
            env = identity_env(_identity(settings))
            new = git(kb, "commit-tree", tree, "-p", main, "-p", tip, "-F", "-", env=env, input=message).strip()
        move_ref(kb, f"refs/heads/{settings.main_branch}", new, main)
    with contextlib.suppress(GitError):  # someone committed on the branch meanwhile: it stays, for the next review
        git(kb, "update-ref", "-d", f"refs/heads/{branch}", tip)
    return rev_parse(kb, f"refs/heads/{settings.main_branch}") or ""


def reject(kb: Path, slug: str, settings: Settings, reason: str | None, retry: bool) -> str | None:
    """Delete an extraction branch; record the rejection on the source in main unless ``retry``."""
    item = describe_branch(kb, slug, settings)
    branch = item.branch
    if retry:
        git(kb, "update-ref", "-d", f"refs/heads/{branch}", item.commit)
        return None
    if not reason or not reason.strip():
        raise ReviewError("reject needs --reason TEXT (or --retry)")
    main = rev_parse(kb, f"refs/heads/{settings.main_branch}")
    assert main is not None
    text = git(kb, "show", f"{main}:{item.source}")
    updated = replace_frontmatter_keys(text, {
        "status": "null-result",
        "review": "rejected",
        "notes": "Rejected in review: " + " ".join(reason.split()),
    })  # fmt: skip
    from extractor.commit.apply import commit_to_main  # the writing path: not loaded to list or show branches
    from extractor.commit.changeset import ChangeSet, WriteError

    message = rejection_message(item.agent, item.source, reason)
    changeset = ChangeSet(changes=[FileChange(path=item.source, text=updated)], message=message,
                          claim_titles=[], claim_paths=[], enriched_titles=[], status="null-result")  # fmt: skip
    try:
        commit = commit_to_main(kb, changeset, _identity(settings), settings.main_branch, main, item.source)
    except (WriteError, GitError) as exc:
        raise ReviewError(f"cannot record the rejection: {exc}") from exc
    git(kb, "update-ref", "-d", f"refs/heads/{branch}", item.commit)
    return commit


def record_decision(kb: Path, source_path: str, state: SourceState, settings: Settings | None = None) -> None:
    """Tell the state store what review decided, so runs and ``status`` agree with git."""
    store = open_store(kb, settings)
    try:
        store.update_or_insert(source_path, state=state, attempts=0, next_retry_at=None, last_error=None)
    finally:
        store.close()
