"""Claims chosen among a source's numbered sentences: the answer a small model gives, and drafts made from it.

The schema lets the model name only sentence numbers that exist (an enum the
llama.cpp grammar enforces), so every evidence item is a verbatim sentence of the
source by construction. What the model writes itself (a title, a description, a
limitation) is used only when it passes the same gates a drafted claim passes and
says what the chosen sentences say; otherwise the source's own text is used, and the
reviewer is told.
"""

from __future__ import annotations

import functools
import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, create_model, field_validator
from pydantic.json_schema import SkipJsonSchema
from rapidfuzz import fuzz

from extractor.core.records import Flag
from extractor.core.text import normalise, one_line
from extractor.extraction.answer import (
    WORST_CHARS_PER_TOKEN,
    ClaimDraft,
    EnrichmentDraft,
    EnrichmentKind,
    bounded_schema,
    fit_to,
    letter_words,
)
from extractor.extraction.gates import (
    PARAPHRASE_SCORE,
    TITLE_MAX,
    content_stems,
    gate_description,
    gate_title,
    has_finite_verb,
    is_placeholder,
    markup_problems,
)
from extractor.extraction.grounding import SourceFacts, check_text
from extractor.extraction.prose import is_prose, shown
from extractor.extraction.sentences import Sentence, checkability, has_plain_verb, starts_subjectless
from extractor.kb.claims import Confidence

TITLE_SUPPORT = 0.6  # share of a rewritten title's words that the chosen sentences hold
DESCRIPTION_SUPPORT = 0.7  # share of the model's description's words the passage around them holds
LIMITATION_SUPPORT = 0.6  # share of the model's limitation's words the window holds
# One sentence chosen by a small model is not proof: its confidence is capped here, for the reviewer to raise.
CONFIDENCE_CAP = {Confidence.PROVEN: Confidence.LIKELY}
ARGUMENT_MAX = 900
SENTENCE_END = (".", "!", "?", '."', ".)")

SELECT_BOUNDS: dict[str, dict[str, dict[str, int]]] = {
    "SelectionAnswer": {"enrichments": {"maxItems": 1}},
    "SelectedClaim": {
        "sentences": {"minItems": 1, "maxItems": 2},
        "title": {"maxLength": 150},
        "description": {"maxLength": 200},
        "limitation": {"maxLength": 160},
    },
}


class SelectedClaim(BaseModel):
    """One claim: the sentences that state it, then the model's short phrasing of it."""

    model_config = ConfigDict(extra="forbid")

    sentences: list[int]
    title: str
    description: str
    limitation: str
    confidence: Confidence

    @field_validator("sentences")
    @classmethod
    def _some(cls, numbers: list[int]) -> list[int]:
        numbers = list(dict.fromkeys(numbers))
        if not numbers:
            raise ValueError("name the number of at least one sentence that states the claim")
        if len(numbers) > 2:  # the grammar's bound; an endpoint without one is told
            raise ValueError("name at most two sentences for one claim")
        return numbers

    @field_validator("title", "description", "limitation")
    @classmethod
    def _line(cls, value: str) -> str:
        return one_line(value)  # judged when the draft is made: a poor phrasing is replaced, not re-asked


class SelectedEnrichment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str
    sentence: int
    kind: EnrichmentKind


class SelectionAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_claims: ClassVar[int] = 3

    claims: list[SelectedClaim]
    enrichments: list[SelectedEnrichment] = []

    @field_validator("claims")
    @classmethod
    def _at_most(cls, claims: list[SelectedClaim]) -> list[SelectedClaim]:
        return claims[: cls.max_claims]

    @classmethod
    def grammar_schema(cls, max_tokens: int | None = None) -> dict[str, Any]:
        schema = bounded_schema(cls, SELECT_BOUNDS)
        schema["properties"]["claims"]["maxItems"] = cls.max_claims
        return fit_to(schema, int(max_tokens * WORST_CHARS_PER_TOKEN)) if max_tokens else schema


@functools.lru_cache(maxsize=512)  # a daemon reads windows without end
def selection_model(
    numbers: tuple[int, ...], targets: tuple[str, ...] = (), max_claims: int = 3
) -> type[SelectionAnswer]:
    """The answer whose sentence numbers must be among ``numbers`` (a window's selectable sentences) and whose
    enrichment targets among ``targets`` (no enrichment field at all when there are none). Cached per window."""
    number = Literal[numbers]  # type: ignore[valid-type]
    claim = create_model("SelectedClaim", __base__=SelectedClaim, sentences=(list[number], ...))
    if targets:
        target = Literal[targets]  # type: ignore[valid-type]
        enrichment = create_model(
            "SelectedEnrichment", __base__=SelectedEnrichment, target=(target, ...), sentence=(number, ...)
        )
        enrichments: Any = (list[enrichment], [])
    else:
        enrichments = (SkipJsonSchema[list[SelectedEnrichment]], [])
    model = create_model(
        "SelectionAnswer", __base__=SelectionAnswer, claims=(list[claim], ...), enrichments=enrichments
    )
    model.max_claims = max_claims
    return model


# --- from choices to drafts -----------------------------------------------------------

# Reporting frames and openers a sentence of a paper starts with: a claim's title states the proposition itself.
_FRAME = re.compile(
    r"^(?:(?:however|moreover|furthermore|in addition|additionally|overall|thus|therefore|importantly|notably|"
    r"in short|in sum|finally|first|second|third|indeed|in fact|crucially|instead|still|yet|so|and|but)\s*,?\s+)?"
    r"(?:(?:the|this|our|these)\s+(?:paper|study|article|report|authors?|researchers?|results?|findings?|analysis|"
    r"evidence|data|essay|post|piece|experiment|review)|we)\s+"
    r"(?:also\s+)?(?:argues?|argued|finds?|found|shows?|showed|suggests?|suggested|claims?|claimed|contends?|"
    r"demonstrates?|demonstrated|concludes?|concluded|reports?|reported|notes?|noted|observes?|observed|"
    r"proposes?|proposed|believes?|believed|maintains?|holds?|estimates?|estimated|predicts?|predicted|"
    r"indicates?|indicated|reveals?|revealed|confirms?|confirmed)\s+that\s+",
    re.IGNORECASE,
)
_OPENER = re.compile(
    r"^(?:however|moreover|furthermore|in addition|additionally|overall|thus|therefore|importantly|notably|"
    r"in short|in sum|finally|indeed|in fact|crucially|instead|still|so|and|but)\s*,\s*",
    re.IGNORECASE,
)
_BARE_CONJUNCTION = re.compile(r"^(?:and|but|yet|or)\s+(?!for\b)", re.IGNORECASE)  # "But one week is short": no comma
_AUXILIARY = re.compile(r"\b(?:is|are|was|were|has|have|had|will|would|can|could|do|does|did)\b", re.IGNORECASE)
_LABEL = re.compile(
    r"^(?P<bold>\*\*)?(?P<label>[^:.!?*]{2,60})(?:\*\*:|:\*\*|:)\s+(?P<rest>\S.*)$"
)  # "Key data: contested decisions show..."
_CITATION = re.compile(r"\s*\[(?:\d+(?:[-–,]\s*\d+)*)\]")
# A subject that points to an earlier sentence: "It depends on...", "These are set out...", "This meant...".
_POINTS_BACK = re.compile(
    r"^(?:it|its|they|their|he|she|(?:this|these|that|those|such)\s+(?:is|are|was|were|has|have|had|meant|means|"
    r"can|could|will|would|may|might|made|makes|led|leads|shows?|showed|suggests?|suggested|did|does|do|"
    r"represents?|reflects?|implies|marks?|remains?|becomes?|creates?|enables?|explains?)\b)\b",
    re.IGNORECASE,
)
_MARKUP = re.compile(r"\*\*|`")  # not "__": identifiers hold it (__init__)


def _is_label(label: str, bold: bool) -> bool:
    """A heading-like lead-in ("Key data", "**Discovery shift**"), not a clause ("Prices rose for one reason")."""
    words = label.split()
    if _AUXILIARY.search(label) or len(words) > (6 if bold else 3):
        return False
    return bold or not has_plain_verb(" ".join(words[1:]))


def proposition(sentence: str) -> str:
    """A source sentence as a claim title: a short label before a colon ("Key data: ..."), its reporting
    frame ("The paper argues that": a frame followed by a clause, so "Hanson proposes a form of government" stays
    a sentence), an opener ("However,", a bare "But") and citation marks removed, markup dropped, the first
    letter upper case, no final full stop."""
    text = _CITATION.sub("", one_line(sentence))
    if (labelled := _LABEL.match(text)) and _is_label(labelled["label"], bool(labelled["bold"])):
        rest = labelled["rest"]
        if letter_words(rest) >= 4 and has_finite_verb(rest):
            text = rest  # the statement after its label
    text = _MARKUP.sub("", text)
    for pattern in (_FRAME, _OPENER, _BARE_CONJUNCTION):
        stripped = pattern.sub("", text, count=1)
        if letter_words(stripped) >= 4:
            text = stripped
    text = text.strip().rstrip(".").rstrip()
    return text[:1].upper() + text[1:]


def quote(sentence: Sentence) -> str:
    """An evidence item: the sentence in quotation marks (as it is, when it holds quotation marks itself)."""
    return sentence.text if '"' in sentence.text else f'"{sentence.text}"'


class SelectionContext(BaseModel):
    """What turning choices into drafts needs to know of the source."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    sentences: dict[int, Sentence]
    facts: Any  # SourceFacts: a dataclass
    vocabulary: set[str]
    attribution: str  # "Title (Author, year)": the description of last resort
    title_bound: int = 150  # the title's maxLength in the schema the model was sent

    def neighbours(self, chosen: list[Sentence]) -> list[Sentence]:
        """The sentences of the same block just before and after the chosen ones."""
        numbers = {s.number for s in chosen}
        around = [chosen[0].number - 1, chosen[-1].number + 1]
        blocks = {s.block for s in chosen}
        return [self.sentences[n] for n in around if n in self.sentences and n not in numbers
                and self.sentences[n].block in blocks]  # fmt: skip


def _unverified_figure(text: str, facts: SourceFacts) -> bool:
    return any(f.verdict == "unverified" and f.kind == "figure" for f in check_text(text, facts, prose=True))


def shape_problem(title: str) -> str | None:
    """What makes a title unfit whoever wrote it: the title gates, stray markup, a subject that points to
    another sentence, or none at all."""
    if problems := gate_title(title) + markup_problems("title", title):
        return problems[0].message.removeprefix("the title ")
    if _POINTS_BACK.match(title):
        return "starts with a word that points to another sentence"
    if starts_subjectless(title):
        return "has no subject"
    return None


@functools.cache  # one value per max_tokens; every source asks
def title_bound(max_tokens: int | None) -> int:
    """The title's length bound in the schema a model is sent (smaller when ``max_tokens`` is)."""
    schema = SelectionAnswer.grammar_schema(max_tokens)
    return int(schema["$defs"]["SelectedClaim"]["properties"]["title"]["maxLength"])


def title_problem(title: str, written: str, chosen: list[Sentence], context: SelectionContext) -> str | None:
    """Why the model's title (``written``, and ``title`` once normalised) cannot stand (None: it can): the
    drafted-claim gates, prose, and support by the chosen sentences (a title that says what they do not is not
    their claim)."""
    if not title or not is_prose(title, context.vocabulary, TITLE_MAX):
        return "is not a readable sentence"
    if len(written.strip()) >= context.title_bound - 2:
        return "was cut off at its length bound"
    if problem := shape_problem(title):
        return problem
    stems = content_stems(title)
    held = content_stems(" ".join(s.text for s in chosen))
    if not stems or len(stems & held) / len(stems) < TITLE_SUPPORT:
        return "says what the chosen sentences do not"
    if _unverified_figure(title, context.facts):
        return "has a figure the source does not give"
    return None


def fallback_title(chosen: list[Sentence]) -> tuple[Sentence, str] | None:
    """The best-scoring chosen sentence that reads as a title once normalised, with that title."""
    for sentence in sorted(chosen, key=lambda s: (-checkability(s), s.number)):
        if sentence.text.count('"') % 2 or sentence.text.count("“") != sentence.text.count("”"):
            continue  # a quotation cut by the sentence's end: no title
        title = proposition(sentence.text)
        if shape_problem(title) is None:
            return sentence, title
    return None


def supported(text: str, passage: str, share: float) -> bool:
    """Most of the text's words are the passage's: it restates the source rather than adds to it."""
    stems = content_stems(text)
    return bool(stems) and len(stems & content_stems(passage)) / len(stems) >= share


def description_for(
    written: str, title: str, chosen: list[Sentence], title_from: Sentence | None, context: SelectionContext
) -> str:
    """The model's description when it is prose, adds to the title, and says what the passage around the chosen
    sentences says (a small model's own additions are rarely true); else another chosen sentence, a
    neighbouring one, and last the source's attribution."""
    passage = " ".join(s.text for s in [*chosen, *context.neighbours(chosen)])
    whole = written.endswith(SENTENCE_END)  # one cut off at its length bound is not a sentence
    options = [written] if whole and supported(written, passage, DESCRIPTION_SUPPORT) else []
    options += [s.text for s in chosen if s is not title_from] + [s.text for s in context.neighbours(chosen)]
    for option in options:
        if (
            is_prose(option, context.vocabulary)
            and not gate_description(title, option)
            and not _unverified_figure(option, context.facts)
        ):
            return one_line(_MARKUP.sub("", option))  # a source sentence's bold is not the description's
    return context.attribution


# Words with which a source qualifies its own findings.
_CAVEAT_WORDS = (
    r"caution(?:s|ed)?|limitations?|limited|caveats?|uncertain(?:ty)?|unclear|not statistically|"
    r"not significant|may not|might not|too short|too small|small sample|cannot be|should not be|only one|"
    r"one state|wide|confound(?:ed|s)?|self-reported|not generali[sz]e|not randomi[sz]ed"
)
_CAVEAT = re.compile(rf"\b(?:{_CAVEAT_WORDS})\b", re.IGNORECASE)


# What a model's limitation must hold: a caveat, or a word that qualifies ("not", "only", "although").
_QUALIFIES = re.compile(
    rf"\b(?:{_CAVEAT_WORDS}|not|no|only|unless|except|although|though|but|whether)\b", re.IGNORECASE
)


def limitations_for(written: str, title: str, chosen: list[Sentence], window: list[Sentence],
                    context: SelectionContext) -> list[str]:  # fmt: skip
    """A sentence of the window that qualifies the chosen ones (a caveat sharing their words), verbatim; else
    the model's limitation when it is prose in the window's words, not a placeholder and not the title again;
    else none."""
    held = content_stems(" ".join(s.text for s in chosen))
    numbers = {s.number for s in chosen}
    caveats = [
        (len(content_stems(s.text) & held), -abs(s.number - chosen[0].number), s)
        for s in window
        if s.number not in numbers and _CAVEAT.search(s.text)
    ]
    shared, _, best = max(caveats, key=lambda c: c[:2], default=(0, 0, None))
    if best is not None and shared >= 2:
        return [best.text]
    if (
        written.endswith(SENTENCE_END)
        and _QUALIFIES.search(written)  # a limitation qualifies; a restated finding is not one
        and letter_words(written) >= 4
        and is_prose(written, context.vocabulary)
        and supported(written, " ".join(s.text for s in window), LIMITATION_SUPPORT)
        and not is_placeholder(written)
        and fuzz.token_sort_ratio(normalise(title), normalise(written)) < PARAPHRASE_SCORE
        and not _unverified_figure(written, context.facts)
    ):
        return [written]
    return []


def argument_for(chosen: list[Sentence], context: SelectionContext) -> str:
    """The passage that states the claim, verbatim: the chosen sentences with their neighbours, in order."""
    around = sorted({*chosen, *context.neighbours(chosen)}, key=lambda s: s.number)
    text = " ".join(s.text for s in around)
    if len(text) > ARGUMENT_MAX:
        text = " ".join(s.text for s in chosen)
    return text


class DraftFromChoice(BaseModel):
    draft: ClaimDraft
    flags: list[Flag] = []


def draft_from_choice(
    choice: SelectedClaim, window: list[Sentence], context: SelectionContext
) -> DraftFromChoice | None:
    """A claim draft whose evidence is the chosen sentences; its title the model's, or the best chosen
    sentence's own words, flagged, when the model's fails. None when no title can be made at all."""
    chosen = sorted({context.sentences[n] for n in choice.sentences if n in context.sentences}, key=lambda s: s.number)
    if not chosen:
        return None
    flags: list[Flag] = []
    title, title_from = proposition(choice.title.strip().lstrip("# ")), None  # its frame goes too
    problem = title_problem(title, choice.title, chosen, context)
    if problem is not None:
        fallback = fallback_title(chosen)
        if fallback is None:
            return None
        title_from, title = fallback
        flags.append(
            Flag(
                gate="title-fallback",
                where="title",
                text=shown(choice.title),
                reason=f"the model's title {shown(problem)}; the title is sentence {title_from.number} of the "
                "source, with its reporting frame removed",  # a gate's message may quote the model's title
            )
        )
    draft = ClaimDraft.model_construct(
        evidence=[quote(s) for s in chosen],
        argument=argument_for(chosen, context),
        limitations=limitations_for(choice.limitation, title, chosen, window, context),
        title=title,
        description=description_for(choice.description, title, chosen, title_from, context),
        confidence=CONFIDENCE_CAP.get(choice.confidence, choice.confidence),
        secondary_domains=[],
        related=[],
    )
    try:
        return DraftFromChoice(draft=ClaimDraft.model_validate(draft.model_dump()), flags=flags)
    except ValueError:
        return None  # a title or description past what a claim allows: the choice is dropped, and said so


def enrichment_from_choice(choice: SelectedEnrichment, context: SelectionContext) -> EnrichmentDraft | None:
    sentence = context.sentences.get(choice.sentence)
    if sentence is None:
        return None
    return EnrichmentDraft(target=choice.target, evidence=quote(sentence), kind=choice.kind)
