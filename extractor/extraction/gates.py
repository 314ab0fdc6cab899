"""Quality gates: every drafted claim passes them before anything is written.

Each gate is a pure function that returns the problems it found, as short
messages the model can act on when re-asked and a reviewer can read in
``extraction_notes``. The same checks, where they apply to stored files, lint
a KB (``extractor validate``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from pydantic import BaseModel
from rapidfuzz import fuzz

from extractor.core.records import Flag
from extractor.core.text import normalise
from extractor.extraction.answer import ClaimDraft, letter_words
from extractor.extraction.grounding import Finding, SourceFacts, check_text
from extractor.kb.claims import WIKI_LINK, Confidence
from extractor.kb.index import KBIndex

_WORD = re.compile(r"[^\W\d_]{4,}")
STOPWORDS = frozenset(
    "that this with from have their they them than then there these those which while where when what would "
    "could should will into more most also only other such some many much because about over under between "
    "being been were does each every very just make makes made like".split()
)
STEM = 5
ON_TOPIC_SHARE = 0.4
TITLE_MAX = 260
DUPLICATE_SCORE = 85.0
PARAPHRASE_SCORE = 90.0

# Words that make "This note argues that <title>" a sentence when no other verb form shows.
FINITE_VERBS = frozenset(
    "is are was were be been being am has have had do does did can could will would shall should may might "
    "must need needs cannot won't isn't aren't doesn't don't didn't can't wasn't weren't hasn't haven't "
    "outperform outperforms beat beats lead leads drive drives cause causes fail fails require requires "
    "remain remains become becomes make makes create creates reduce reduces increase increases lower lowers "
    "raise raises enable enables prevent prevents shift shifts depend depends explain explains show shows "
    "mean means grow grows win wins lose loses emerge emerges work works hold holds produce produces "
    "applies implies relies varies carries supplies justifies amplifies identifies satisfies intensifies "
    "qualifies modifies simplifies signifies clarifies specifies diversifies multiplies occupies embodies "
    "denies defies unifies "
    # irregular past forms and frequent base forms after plural subjects
    "grew rose fell became won lost led drove took gave saw found built left began brought kept ran spent sold "
    "paid bought cut set put hit outgrew confirm confirms excel excels prove proves suggest suggests "
    "predict predicts determine determines matter matters differ differs compete competes".split()
)
NOT_VERBS_ENDING_S = ("ss", "us", "is", "ics", "ous", "ies")


class GateFailure(BaseModel):
    gate: str
    message: str

    def __str__(self) -> str:
        return f"{self.gate}: {self.message}"


def content_stems(text: str) -> set[str]:
    """Word stems that carry meaning: lower case, 4+ letters, no stopwords, cut to 5 letters."""
    return {w[:STEM] for w in (m.group(0).casefold() for m in _WORD.finditer(text)) if w not in STOPWORDS}


# --- single-claim gates ---------------------------------------------------


def has_finite_verb(title: str) -> bool:
    words = [w.casefold().strip(".,;:'\"()") for w in re.split(r"[\s-]+", title)]
    for position, word in enumerate(words):
        if word in FINITE_VERBS:
            return True
        if position == 0 or len(word) < 4 or not word.isalpha():
            continue
        if word.endswith("ed") or (word.endswith("s") and not word.endswith(NOT_VERBS_ENDING_S)):
            return True
    return False


def gate_title(title: str) -> list[GateFailure]:
    problems = []
    if letter_words(title.replace("-", " ")) < 4:
        problems.append("is a bare topic: write a complete proposition someone could disagree with")
    elif not has_finite_verb(title):
        problems.append('has no verb: "This note argues that <title>" must read as a sentence')
    if len(title) > TITLE_MAX:
        problems.append(f"is {len(title)} characters; keep it under {TITLE_MAX}")
    if title.rstrip().endswith("?"):
        problems.append("is a question, not a proposition")
    return [GateFailure(gate="title", message=f"the title {p}") for p in problems]


def gate_description(title: str, description: str) -> list[GateFailure]:
    new = content_stems(description) - content_stems(title)
    # token_sort_ratio, not token_set_ratio: a description holding the title's words and a clause more adds
    # that clause, where a set comparison would score it 100 and call it a restatement.
    paraphrase = fuzz.token_sort_ratio(normalise(title), normalise(description)) >= PARAPHRASE_SCORE
    if letter_words(description) < 3:
        return [GateFailure(gate="description", message="the description must be a sentence")]
    if paraphrase or len(new) < 2:
        return [GateFailure(gate="description", message="the description restates the title; add new information")]
    return []


def gate_evidence(draft: ClaimDraft) -> list[GateFailure]:
    if not any(item.strip() for item in draft.evidence):
        return [GateFailure(gate="evidence", message="the claim has no evidence item")]
    return []


def _flag(gate: str, where: str, finding: Finding) -> Flag:
    return Flag(gate=gate, where=where, text=finding.text, reason=finding.reason, verdict=finding.verdict)


def ground_claim(draft: ClaimDraft, facts: SourceFacts) -> ClaimGrounding:
    """Each figure and quotation of a draft, judged against its source, by where it sits.

    The title and description are what a reader remembers, so an unverified figure there is a hard failure;
    an unverified item of the argument or of the evidence is a flag for the reviewer, unless no evidence
    item is left grounded.
    """
    failures: list[GateFailure] = []
    flags: list[Flag] = []
    grounded: list[Flag] = []
    fields = [("title", draft.title), ("description", draft.description), ("argument", draft.argument)]
    fields += [(f"evidence[{i}]", item) for i, item in enumerate(draft.evidence)]
    for where, text in fields:
        for finding in check_text(text, facts, prose=not where.startswith("evidence")):
            if finding.verdict != "unverified":
                if finding.verdict != "pass":
                    grounded.append(_flag("grounding", where, finding))
            elif where in ("title", "description") and finding.kind == "figure":
                failures.append(GateFailure(gate="grounding", message=f"in the {where}, {finding.reason}"))
            else:
                flags.append(_flag("grounding", where, finding))
    unverified_items = {flag.where for flag in flags if flag.where.startswith("evidence[")}
    if draft.evidence and len(unverified_items) == len(draft.evidence):
        failures.append(
            GateFailure(gate="grounding", message="no evidence item is grounded: " + "; ".join(f.reason for f in flags))
        )
    return ClaimGrounding(failures=failures, flags=flags, grounded=grounded)


class ClaimGrounding(BaseModel):
    failures: list[GateFailure]
    flags: list[Flag]  # unverified items of the argument and evidence: shown to the reviewer, or removed
    grounded: list[Flag]  # derived figures and near quotations: grounded, shown so they are checked in one look


# A claim whose evidence shares less than this with the source's vocabulary is flagged: paraphrase keeps the
# source's words (no claim people accepted on the corpus is under 36%), evidence from elsewhere does not.
EVIDENCE_SHARE = 0.3
EVIDENCE_SHARE_MIN_WORDS = 5


def evidence_share_flags(draft: ClaimDraft, source_stems: set[str]) -> list[Flag]:
    stems = content_stems(" ".join(draft.evidence))
    if len(stems) < EVIDENCE_SHARE_MIN_WORDS:
        return []
    share = len(stems & source_stems) / len(stems)
    if share >= EVIDENCE_SHARE:
        return []
    reason = f"only {share:.0%} of the evidence's words occur in the source"
    return [Flag(gate="evidence-share", where="evidence", text="", reason=reason)]


def gate_grounding(texts: Iterable[str], source_text: str) -> list[GateFailure]:
    """The unverified figures and quotations of some texts, as gate failures (every quotation checked)."""
    facts = SourceFacts.of(source_text)
    problems = [
        GateFailure(gate="grounding", message=finding.reason)
        for text in texts
        for finding in check_text(text, facts)
        if finding.verdict == "unverified"
    ]
    return list({p.message: p for p in problems}.values())


# Evidence and limitation items that say nothing: the older job wrote these rather than leave a list empty.
_PLACEHOLDER = re.compile(
    r"^[\s(\[*_-]*(?:no(?:ne)?(?: (?:evidence|limitations?|data))?(?: (?:recorded|stated|given|noted|identified|"
    r"provided|found|known))?|n/?a|tbd|todo|to be (?:added|determined)|not (?:stated|applicable|available|provided)|"
    r"placeholder|\.\.\.|…|-+)[\s)\].*_.!]*$",
    re.IGNORECASE,
)


def is_placeholder(item: str) -> bool:
    return bool(item.strip() and _PLACEHOLDER.match(item.strip()))


def gate_placeholder(draft: ClaimDraft) -> list[GateFailure]:
    return [
        GateFailure(gate="placeholder", message=f'the {label} item "{item.strip()[:40]}" is a placeholder')
        for label, items in (("evidence", draft.evidence), ("limitations", draft.limitations))
        for item in items
        if is_placeholder(item)
    ]


_EMPHASIS_MARK = re.compile(r"\*\*")  # not "__": identifiers hold it (__init__, window.__name)


_BRACES = re.compile(r"[{}]")  # no accepted title or description of the corpus has one; "{{#}}" is debris


def markup_problems(where: str, text: str) -> list[GateFailure]:
    """Stray markdown in one line read as plain text: an unpaired ``**`` or backtick, or (in a title or a
    description) a leading heading, list or quote mark."""
    if len(_EMPHASIS_MARK.findall(text)) % 2 or text.count("`") % 2:
        return [GateFailure(gate="markup", message=f"the {where} has stray markup: {text.strip()[:60]}")]
    if where in ("title", "description") and text.lstrip().startswith(("#", "- ", "* ", ">")):
        return [GateFailure(gate="markup", message=f"the {where} starts with a markdown mark")]
    if where in ("title", "description") and _BRACES.search(text):
        return [GateFailure(gate="markup", message=f"the {where} holds JSON or template braces")]
    return []


def gate_markup(draft: ClaimDraft) -> list[GateFailure]:
    return [
        problem
        for where, text in [
            ("title", draft.title),
            ("description", draft.description),
            *((f"evidence item {i + 1}", item) for i, item in enumerate(draft.evidence)),
        ]  # fmt: skip
        for problem in markup_problems(where, text)
    ]


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def gate_degenerate(draft: ClaimDraft) -> list[GateFailure]:
    problems = []
    sentences = [" ".join(s.casefold().split()) for s in _SENTENCE.split(draft.argument) if len(s.split()) >= 4]
    if len(sentences) != len(set(sentences)):
        problems.append("the argument repeats a sentence")
    if not draft.argument.strip():
        problems.append("the argument is empty")
    if any(not item.strip() for item in [*draft.evidence, *draft.limitations]):
        problems.append("a list item is empty")
    words = draft.argument.casefold().split()
    if any(len(set(words[i : i + 4])) == 1 for i in range(max(0, len(words) - 3))):
        problems.append("the argument repeats a word in a loop")
    return [GateFailure(gate="degenerate", message=p) for p in problems]


def gate_allowed(draft: ClaimDraft, domain: str, domains: list[str]) -> list[GateFailure]:
    problems = []
    if draft.confidence not in set(Confidence):
        problems.append(GateFailure(gate="allowed", message=f"confidence {draft.confidence!r} is not allowed"))
    if domain not in domains:
        problems.append(GateFailure(gate="allowed", message=f"domain {domain!r} is not one of the KB's domains"))
    return problems


def gate_on_topic(draft: ClaimDraft, source_stems: set[str], threshold: float = ON_TOPIC_SHARE) -> list[GateFailure]:
    stems = content_stems(" ".join([draft.title, *draft.evidence]))
    share = len(stems & source_stems) / len(stems) if stems else 0.0
    if share < threshold:
        return [GateFailure(gate="off-topic", message=f"only {share:.0%} of the claim's words occur in the source")]
    return []


def similar_titles(a: str, b: str) -> float:
    return fuzz.token_set_ratio(normalise(a), normalise(b))


def gate_duplicate(title: str, index: KBIndex, earlier: list[str], ignore: set[str]) -> list[GateFailure]:
    """Near-duplicates of a KB claim (BM25 finds the candidates) or of an earlier draft."""
    for ref in index.related(title, 5):
        if ref.path not in ignore and similar_titles(title, ref.title) >= DUPLICATE_SCORE:
            return [GateFailure(gate="duplicate", message=f"near-duplicate of the existing claim: {ref.title}")]
    for other in earlier:
        if similar_titles(title, other) >= DUPLICATE_SCORE:
            return [GateFailure(gate="duplicate", message=f"near-duplicate of another draft: {other}")]
    return []


# --- all gates over an answer ----------------------------------------------


# Every gate a drafted claim passes before it is written, in the order they run. Grounding also flags items.
GATES = ("title", "description", "evidence", "placeholder", "markup", "grounding", "degenerate", "allowed",
         "off-topic", "duplicate")  # fmt: skip


class GateReport(BaseModel):
    """Hard failures by the claim's position (the claim is dropped, or re-asked), and each claim's grounding."""

    failures: dict[int, list[GateFailure]]
    grounding: list[ClaimGrounding] = []

    def feedback(self, drafts: list[ClaimDraft]) -> str:
        """A compact re-ask: the failing claims and what to fix, to be answered with those claims alone."""
        lines = [
            f'"{drafts[i].title[:80]}": ' + "; ".join(f.message for f in problems)
            for i, problems in sorted(self.failures.items())
        ]
        return (
            "These claims failed the knowledge base's checks:\n- " + "\n- ".join(lines) + "\n"
            "Reply with the same JSON object holding only these claims, corrected (use only figures and "
            "quotations from the source), and empty enrichments; leave out a claim you cannot fix."
        )


def check_claims(
    drafts: list[ClaimDraft],
    source_text: str,
    domain: str,
    domains: list[str],
    index: KBIndex,
    replaced: set[str] | None = None,
    facts: SourceFacts | None = None,
) -> GateReport:
    """Run every gate on every drafted claim: hard failures by the claim's position, and each one's grounding."""
    source_stems = content_stems(source_text)
    facts = facts or SourceFacts.of(source_text)
    failures: dict[int, list[GateFailure]] = {}
    grounding: list[ClaimGrounding] = []
    earlier: list[str] = []
    for position, draft in enumerate(drafts):
        grounded = ground_claim(draft, facts)
        grounded.flags += evidence_share_flags(draft, source_stems)
        grounding.append(grounded)
        problems = [
            *gate_title(draft.title),
            *gate_description(draft.title, draft.description),
            *gate_evidence(draft),
            *gate_placeholder(draft),
            *gate_markup(draft),
            *grounded.failures,
            *gate_degenerate(draft),
            *gate_allowed(draft, domain, domains),
            *gate_on_topic(draft, source_stems),
            *gate_duplicate(draft.title, index, earlier, replaced or set()),
        ]
        if problems:
            failures[position] = problems
        else:
            earlier.append(draft.title)
    return GateReport(failures=failures, grounding=grounding)


def unlink_unresolved(text: str, index: KBIndex) -> tuple[str, int]:
    """Strip the brackets of wiki links that resolve to no file; returns the text and how many."""
    return unlink_where(text, lambda target: index.resolve_link(target)[0] is not None)


def unlink_where(text: str, resolves: Callable[[str], bool]) -> tuple[str, int]:
    """Strip the brackets of the wiki links whose target ``resolves`` refuses (an alias stays as the text)."""
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        inner = match.group(1)
        # "[[note|alias]]", "[[note\\|alias]]" in a table row, "[[note#section]]", "[[note#^block]]"
        target, _, label = inner.replace("\\|", "|").partition("|")
        if resolves(target.split("#", 1)[0] or target):
            return match.group(0)
        count += 1
        return label or target

    return WIKI_LINK.sub(replace, text), count
