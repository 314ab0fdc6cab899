"""Which draft is which accepted claim: titles and descriptions compared, best pairs first."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel
from rapidfuzz import fuzz

from extractor.core.text import normalise

# A draft recovers an accepted claim when their titles (or titles and descriptions together) score this.
MATCH_SCORE = 70.0
# Pairs scoring between this and MATCH_SCORE are asked of the judge model, when there is one.
JUDGE_FLOOR = 45.0


class Pair(BaseModel):
    draft: int
    accepted: int
    score: float
    judged: bool = False  # decided by the judge model


def similarity(draft: tuple[str, str], accepted: tuple[str, str]) -> float:
    """0-100: the better of the titles' similarity and the similarity of title and description together."""
    titles = fuzz.token_set_ratio(normalise(draft[0]), normalise(accepted[0]))
    both = fuzz.token_set_ratio(normalise(" ".join(draft)), normalise(" ".join(accepted)))
    return max(titles, both)


def match_claims(
    drafts: list[tuple[str, str]],
    accepted: list[tuple[str, str]],
    judge: Callable[[tuple[str, str], tuple[str, str]], bool] | None = None,
) -> list[Pair]:
    """Pairs of (draft, accepted claim), each used once, greedily from the most similar."""
    scored = sorted(
        ((similarity(d, a), i, j) for i, d in enumerate(drafts) for j, a in enumerate(accepted)), reverse=True
    )
    pairs: list[Pair] = []
    used_drafts: set[int] = set()
    used_accepted: set[int] = set()
    for score, i, j in scored:
        if i in used_drafts or j in used_accepted or score < JUDGE_FLOOR:
            continue
        judged = score < MATCH_SCORE
        if judged and (judge is None or not judge(drafts[i], accepted[j])):
            continue
        pairs.append(Pair(draft=i, accepted=j, score=score, judged=judged))
        used_drafts.add(i)
        used_accepted.add(j)
    return pairs
