"""Grounding: each normalisation and derivation with a case that must pass and a near miss that must not."""

from __future__ import annotations

import pytest

from extractor.extraction.grounding import SourceFacts, check_text, dates_in, figures_in, plain, quotations_in


def verdicts(text: str, source: str) -> dict[str, str]:
    return {finding.text: finding.verdict for finding in check_text(text, SourceFacts.of(source))}


def verdict_of(text: str, source: str) -> str:
    found = check_text(text, SourceFacts.of(source))
    assert len(found) == 1, found
    return found[0].verdict


# --- figures: normal forms ------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "source"),
    [
        ("2,000 USDC", "the raise closed at _2000 \\$USDC_ in an hour"),  # markdown emphasis and escapes
        ("12752 holders", "AVICI had 12,752 holders"),  # thousands separators
        ("$90K raised", "raised 90,000 dollars"),  # k suffix
        ("90 thousand", "raised $90k"),
        ("$2.5 billion", "a $2.5bn market"),  # scale words
        ("$1.2M", "1,200,000 USD in fees"),
        ("65 percent", "a 65% decline"),  # percent words
        ("a 3x return", "returned 3 times the stake"),  # times
        ("€40 million", "EUR 40m of deposits"),  # currency symbols and codes
        ("**41%** of users", "41 % of users"),
    ],
)
def test_a_stated_figure_passes_in_any_written_form(claim: str, source: str) -> None:
    assert verdict_of(claim, source) == "pass"


@pytest.mark.parametrize(
    ("claim", "source"),
    [
        ("2,100 USDC", "the raise closed at _2000 \\$USDC_ in an hour"),
        ("$9K raised", "raised 90,000 dollars"),
        ("$2.6 billion", "a $2.5bn market"),
        ("66 percent", "a 65% decline"),
        ("a 4x return", "returned 3 times the stake"),
        ("12753 holders", "AVICI had 12,752 holders"),
        ("€41 million", "EUR 40m of deposits"),
        ("**42%** of users", "41 % of users"),
    ],
)
def test_a_figure_one_step_off_is_unverified(claim: str, source: str) -> None:
    assert verdict_of(claim, source) == "unverified"


def test_a_figure_with_a_unit_is_checked_even_with_one_digit() -> None:
    assert set(verdicts("takes 3-5 years", "we expect results within 2 years").values()) == {"unverified"}
    assert verdicts("takes 3-5 years", "in 3 to 5 years") == {"3 years": "pass", "5 years": "pass"}
    assert check_text("one of 3 options", SourceFacts.of("two options")) == []  # a bare digit is not checked


def test_ranges_take_the_unit_of_their_second_figure() -> None:
    assert [(f.value, f.kind) for f in figures_in("$52–78M")] == [(52e6, ""), (78e6, "")]


# --- figures: rounding ----------------------------------------------------------


def test_a_rounding_to_the_precision_shown_is_derived() -> None:
    found = check_text("$19k–$25k a year", SourceFacts.of("salaries from $19,416 to $24,960"))
    assert [(f.verdict, f.reason) for f in found] == [
        ("derived", "rounded from 19416"),
        ("derived", "rounded from 24960"),
    ]
    assert verdict_of("$11.4M", "a grant of $11,402,898.00") == "derived"


def test_a_rounding_past_the_precision_shown_is_not() -> None:
    assert verdict_of("$11.5M", "a grant of $11,402,898.00") == "unverified"
    assert verdict_of("$20k", "salaries of $19,416") == "unverified"  # 19,416 rounds to 19k, not 20k
    assert verdict_of("20,000 users", "19,416 users") == "unverified"  # two significant digits are meant


def test_estimates_and_bounds_say_how_close_they_are() -> None:
    assert verdict_of("about 20,000 users", "19,416 users") == "derived"  # an estimate: within a tenth
    assert verdict_of("about 25,000 users", "19,416 users") == "unverified"
    assert verdict_of("$100M+ acquisitions", "bought for $112M") == "derived"  # a lower bound the source meets
    assert verdict_of("over $100M", "bought for $112M") == "derived"
    assert verdict_of("over $200M", "bought for $112M") == "unverified"
    assert verdict_of("under $100M", "bought for $112M") == "unverified"
    assert verdict_of("~400x difference", "54% against 0.13%") == "derived"  # a loosely said ratio


def test_units_shared_by_a_list_and_written_with_a_hyphen() -> None:
    assert verdict_of("4.7 percentage points", "gains of 5.0, 4.7, and 3.4 percentage points") == "pass"
    assert verdict_of("a 20-year lag", "the lag is 20 years") == "pass"
    assert verdict_of("6 months", "a 6mo linear vest") == "pass"


def test_not_figures_decades_links_and_wiki_links() -> None:
    assert check_text("people in their 70s and 80s", SourceFacts.of("older people")) == []
    assert check_text("see https://forum.example/t/proposal/1700", SourceFacts.of("a forum")) == []
    assert check_text("as [[25 percent of claims fail]] argues", SourceFacts.of("nothing")) == []
    assert verdicts("grew from $18 billion in 2015", "rose from $18 billion in 2015") == {
        "$18 billion": "pass",
        "2015": "pass",
    }


def test_years_are_not_rounded_and_spans_come_from_two_years() -> None:
    assert verdict_of("by 2030", "planned for 2025") == "unverified"  # 2025 does not round to 2030
    assert verdict_of("in 16 years", "from 19% in 2007 to a majority in 2023") == "derived"
    assert verdict_of("in 15 years", "from 19% in 2007 to a majority in 2023") == "unverified"


# --- figures: derived -----------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "source", "how"),
    [
        ("a 57% decline", "retention fell from 60% to 26% over the year", "the percent change"),
        ("4.2x more likely", "54% of founders and 13% of managers", "the ratio"),
        ("28 percentage points", "70.4% in the treated group against 42% in the control", "the difference"),
        ("112k more users", "312,000 users in May and 200,000 in April", "the difference"),
        ("$52–78M", "10–15% of a stated $520M budget", "the product"),
        ("a 130% increase", "from 26% to 60%", "the percent change"),
        ("2,450 holders in total", "1,200 holders on day one and 1,250 later", "the sum"),
    ],
)
def test_a_figure_computed_from_the_source_is_derived_with_its_operands(claim: str, source: str, how: str) -> None:
    found = check_text(claim, SourceFacts.of(source))
    assert found and all(f.verdict == "derived" for f in found), found
    assert all(f.reason.startswith(how) for f in found), found


@pytest.mark.parametrize(
    ("claim", "source"),
    [
        ("a 45% decline", "retention fell from 60% to 26% over the year"),  # an invented figure next to real ones
        ("5.1x more likely", "54% of founders and 13% of managers"),
        ("31 percentage points", "70.4% in the treated group against 42% in the control"),
        ("$90M", "10–15% of a stated $520M budget"),
        ("2,600 holders in total", "1,200 holders on day one and 1,250 later"),
        ("a 28% drop in cost", "a plan at $1.2M against $520,000 a week"),  # money is not a share of a count
    ],
)
def test_an_invented_figure_beside_real_ones_stays_unverified(claim: str, source: str) -> None:
    assert verdict_of(claim, source) == "unverified"


def test_figures_far_apart_in_a_long_source_are_not_combined() -> None:
    source = "retention was 60% at launch. " + "Unrelated words follow here. " * 100 + "Churn hit 26% later."
    assert verdict_of("a 57% decline", source) == "unverified"


def test_a_year_inferred_from_a_dated_source() -> None:
    assert verdict_of("by March 2028", "date: 2026-03-01\nwe will ship within 2 years") == "derived"
    assert verdict_of("by March 2029", "date: 2026-03-01\nwe will ship within 2 years") == "unverified"


# --- quotations -----------------------------------------------------------------


def test_short_quotations_are_paired_and_scare_quotes_ignored() -> None:
    text = 'classified as "gaming" subject to state rules rather than "swaps"'
    assert quotations_in(text) == ["gaming", "swaps"]
    assert check_text(text, SourceFacts.of("something else entirely")) == []


def test_quotation_marks_straight_curly_single_and_nested() -> None:
    assert quotations_in("he said “markets clear fast” and ‘prices move later’") == [
        "markets clear fast",
        "prices move later",
    ]
    assert quotations_in("the holders' view: 'we don't sell early' was common") == ["we don't sell early"]
    nested = "she wrote \"this is not 'progress as usual' for the sector\""
    assert quotations_in(nested) == ["this is not 'progress as usual' for the sector"]
    source = 'She wrote: this is not "progress as usual" for the sector.'
    assert verdict_of(nested, source) == "pass"
    changed = "she wrote \"this is not 'progress as planned' for the sector\""
    assert verdict_of(changed, source) == "unverified"


def test_elisions_and_bracketed_insertions() -> None:
    source = "The protocol, which launched in May, has grown faster than any rival in the sector."
    assert verdict_of('"The protocol [...] has grown faster than any rival"', source) == "pass"
    assert verdict_of('"The protocol … has grown faster than any rival"', source) == "pass"
    assert verdict_of('"[It] has grown faster than any rival in the sector"', source) == "pass"
    # the pieces must come in the source's order: a splice that reverses them is not the source
    assert verdict_of('"faster than any rival ... The protocol, which launched in May"', source) == "unverified"


def test_quotations_in_prose_are_checked_when_attributed() -> None:
    source = "The report finds that members rarely sell."
    hypothetical = 'A claim about "how agents should be organised" needs all four questions.'
    assert check_text(hypothetical, SourceFacts.of(source), prose=True) == []  # held up, not quoted
    assert verdict_of(hypothetical, source) == "unverified"  # in evidence every quotation is the source's
    said = 'The paper says practitioners are "reinventing the wheel badly" here.'
    assert [f.verdict for f in check_text(said, SourceFacts.of(source), prose=True)] == ["unverified"]
    assert check_text('They ask "which property should we sacrifice?" instead.', SourceFacts.of(source)) == []


def test_one_small_word_dropped_or_a_stretch_left_out_is_near() -> None:
    source = "Given that a majority of the startups in the ecosystem started in hackathons, we can help."
    assert verdict_of('"a majority of startups in the ecosystem started in hackathons"', source) == "near"
    source = "They are judged purely by market pricing. No bias filters their ideas. Good proposals win."
    assert verdict_of('"They are judged purely by market pricing. Good proposals win."', source) == "near"
    source = "Markets do not work well for long-term questions about research grants."
    assert verdict_of('"Markets do work well for long-term questions about research grants"', source) == "unverified"


def test_one_inflected_word_is_near_a_changed_meaning_is_not() -> None:
    source = "Futarchy markets increase the accuracy of treasury decisions over time."
    assert verdict_of('"futarchy markets increased the accuracy of treasury decisions"', source) == "near"
    assert verdict_of('"futarchy markets decrease the accuracy of treasury decisions"', source) == "unverified"
    assert verdict_of('"futarchy markets never increase the accuracy of treasury decisions"', source) == "unverified"


def test_markdown_is_plain_text_for_grounding() -> None:
    assert plain("see [the report](https://x.org) and **bold** _2000 \\$USDC_") == "see the report and bold 2000 $USDC"


def test_a_bound_written_before_its_unit_keeps_the_unit() -> None:
    facts = SourceFacts.of("**Runway: 6+ months** to the store listing, 10+ users")
    assert [(f.text, f.verdict) for f in check_text("a 6-month runway", facts)] == [("6-month", "pass")]
    [figure] = [f for f in figures_in("Runway: 6+ months") if f.checked]
    assert (figure.kind, figure.qualifier) == ("t", "at least")


def test_a_quantity_at_a_price_grounds_the_total() -> None:
    facts = SourceFacts.of("* **Amount**: 13.7M CLOUD (5% of the reserve)\n* **Price**: $0.12 per token")
    [total] = [f for f in check_text("for $1.644M in total", facts)]
    assert (total.verdict, total.reason) == ("derived", "the product of 13.7m and $0.12")
    assert check_text("for $1.9M in total", facts)[0].verdict == "unverified"


def test_dates_a_source_states_in_any_common_form() -> None:
    text = "Created: 2024-02-13. On Friday, Feb 9th the multisig pays; March 5, 2024; 7 May 2023; 2024/1/2; 2024-13-40"
    assert dates_in(text) == {"2024-02-13", "2024-03-05", "2023-05-07", "2024-01-02"}
    assert dates_in(text, year=2024) == {"2024-02-13", "2024-03-05", "2023-05-07", "2024-01-02", "2024-02-09"}
    assert dates_in("the May 2024 report, 12 days") == set()
