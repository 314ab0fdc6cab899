"""Quality checks on drafted claims, applied before anything is written."""

from __future__ import annotations

import re

from extractor.answer import ClaimDraft

_WORD = re.compile(r"[^\W\d_]{4,}")
STOPWORDS = frozenset(
    [
        "that",
        "this",
        "with",
        "from",
        "have",
        "their",
        "they",
        "them",
        "than",
        "then",
        "there",
        "these",
        "those",
        "which",
        "while",
        "where",
        "when",
        "what",
        "would",
        "could",
        "should",
        "will",
        "into",
        "more",
        "most",
        "also",
        "only",
        "other",
        "such",
        "some",
        "many",
        "much",
        "because",
        "about",
        "over",
        "under",
        "between",
        "being",
        "been",
        "were",
        "does",
        "each",
        "every",
        "very",
        "just",
        "make",
        "makes",
        "made",
        "like",
    ]
)
STEM = 5
ON_TOPIC_SHARE = 0.4


def content_stems(text: str) -> set[str]:
    """Word stems that carry meaning: lower case, 4+ letters, no stopwords, cut to 5 letters."""
    return {w[:STEM] for w in (m.group(0).casefold() for m in _WORD.finditer(text)) if w not in STOPWORDS}


def topic_share(draft: ClaimDraft, source_stems: set[str]) -> float:
    """Share of the claim's title and evidence vocabulary that the source also uses."""
    stems = content_stems(" ".join([draft.title, *draft.evidence]))
    return len(stems & source_stems) / len(stems) if stems else 0.0


def split_off_topic(
    drafts: list[ClaimDraft], source_text: str, threshold: float = ON_TOPIC_SHARE
) -> tuple[list[ClaimDraft], list[str]]:
    """Keep claims that speak the source's language; name the ones dropped."""
    source_stems = content_stems(source_text)
    kept, dropped = [], []
    for draft in drafts:
        share = topic_share(draft, source_stems)
        if share >= threshold:
            kept.append(draft)
        else:
            dropped.append(f"off-topic claim ({share:.0%} of its words in the source): {draft.title}")
    return kept, dropped
