"""The entity gates on names, statuses and file names, with what a small model really drafted as cases."""

from __future__ import annotations

import pytest

from extractor.extraction.entity_drafts import proper_name_problem, short_name_fits, status_problem

STATUSES = ["active", "inactive", "acquired", "liquidated", "emerging"]


@pytest.mark.parametrize(
    ("name", "entity_type"),
    [
        ("MetaDAO", "company"),
        ("Ben Hawkins", "person"),
        ("joebuild", "person"),  # a person may go by a lower-case handle
        ("Bank of America", "company"),
        ("The Graph", "protocol"),
        ("ISC (Inflation-Resistant Stablecoin)", "company"),
        ("Claynosaurz Inc.", "company"),
        (
            "Sanctum: Should Sanctum use up to 2.5M CLOUD to incentivise INF-SOL liquidity via Kamino Vaults?",
            "decision_market",
        ),  # fmt: skip
    ],
)
def test_proper_names_pass(name: str, entity_type: str) -> None:
    assert proper_name_problem(name, entity_type) is None


@pytest.mark.parametrize(
    ("name", "entity_type", "problem"),
    [
        ("treasury managers", "person", "no capital letter"),
        ("futarchy", "market", "no capital letter"),
        ("Become a healthcare provider", "drug", "a phrase, not a name"),  # what a small model drafted
        ("The DAO decided to reject the trade after three days", "company", "words in lower case"),
        ("Prediction markets aggregate information better than polls do.", "market", "ends like a sentence"),
    ],
)
def test_descriptions_and_generic_nouns_are_no_names(name: str, entity_type: str, problem: str) -> None:
    assert problem in (proper_name_problem(name, entity_type) or "")


def test_a_status_outside_the_schema_is_flagged_and_a_phrase_is_no_status() -> None:
    assert status_problem("Active", STATUSES) is None
    assert status_problem("declining", STATUSES) == (
        "the status 'declining' is not one the schema lists (active, inactive, acquired, liquidated, emerging)",
        False,
    )
    for junk in ("lack of a financial incentive for people with private information to", "bac-de-lucerneurale"):
        problem = status_problem(junk, STATUSES)
        assert problem is not None and problem[1] and "is not a status" in problem[0]


def test_a_short_name_is_used_only_when_it_names_the_entity() -> None:
    assert short_name_fits("metadao-otc-trade-ben-hawkins", "MetaDAO: Engage in $50,000 OTC Trade with Ben Hawkins")
    assert short_name_fits("deans-list-thailanddao-event-promotion", "Dean's List: ThailandDAO Event Promotion")
    assert short_name_fits("futardio-fund-rug-bounty-program", "FutureDAO: Fund the Rug Bounty Program", "[[futardio]]")
    assert short_name_fits("drift-ai-agent-grants-program", "Drift: Allocate 50,000 DRIFT to the Drift AI Agent grant")
    assert not short_name_fits("value error", "Hanson")  # what a small model drafted
    assert not short_name_fits("", "Hanson")
