"""The review page's model and rendering, without git: escaping, overlapping spans, the fallback without a report."""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from extractor.core.records import BranchReview, ClaimReport, ExtractionReport, Finding, Flag, ItemReview, Usage
from extractor.core.settings import Settings
from extractor.extraction.gates import GATES
from extractor.kb.sources import parse_source
from extractor.review.branches import PendingReview
from extractor.review.markdown import render_markdown, render_source
from extractor.review.page import (
    ACTIONS,
    CSP,
    SERVED_CSP,
    IndexEntry,
    PageInput,
    ReviewPage,
    Served,
    build_page,
    diff_lines,
    render_index,
    render_not_found,
    render_page,
    segment_body,
)
from extractor.review.serve import make_server
from tests.kbfactory import make_inbox_kb

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
DANGEROUS = {"script", "img", "iframe", "object", "embed", "textarea", "svg", "math", "form", "base", "link", "b", "em"}


class Structure(HTMLParser):
    """Start and end tags must nest properly; collects the tags, attributes and text of a document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(document: str) -> Structure:
    parser = Structure()
    parser.feed(document)
    parser.close()
    assert parser.errors == [] and parser.stack == [], (parser.errors, parser.stack)
    return parser


def marks_of(document: str) -> list[tuple[str, list[str], str]]:
    """(mark id, evidence ids, text) of each mark, in document order."""

    class Marks(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.found: list[tuple[str, list[str], str]] = []
            self.inside = False

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "mark":
                values = dict(attrs)
                self.found.append((values.get("id") or "", (values["data-evidence"] or "").split(), ""))
                self.inside = True

        def handle_endtag(self, tag: str) -> None:
            if tag == "mark":
                self.inside = False

        def handle_data(self, data: str) -> None:
            if self.inside:
                ident, evidence, text = self.found[-1]
                self.found[-1] = (ident, evidence, text + data)

    parser = Marks()
    parser.feed(document)
    return parser.found


BODY = (
    '\nIntro <script>alert("body")</script> & "amp" </textarea> </pre> <!-- c --> ]]>\n'
    "the quick brown fox jumps over the lazy dog, said the reviewer.\n"
    "“Curly quotes and a\nline break” end here.\n"
)
SOURCE = f"""---
type: source
title: "Src </title><script>alert('title')</script> & more"
url: "javascript:alert('url')"
author: "<b>me</b> & you"
date: 2026-01-01
---
{BODY}"""

ALERT = "<script>alert('x')</script>"


def claim_text(title: str, evidence: list[str]) -> str:
    return (
        "---\ntype: claim\ndomain: ai-alignment\n"
        'description: \'Desc <script>alert("d")</script> & "q"\'\n'
        "confidence: likely\nsource: x\ncreated: 2026-01-01\n---\n\n"
        f"# {title}\n\nArgument </textarea><script>alert('arg')</script>\n\n"
        "## Evidence\n\n" + "".join(f"- {item}\n" for item in evidence) + "\n"
        "## Limitations\n\n- <iframe src=\"javascript:alert('lim')\"></iframe>\n\n"
        "---\n\nRelevant Notes:\n- [[x]]\n\nTopics:\n- [[y]]\n"
    )


FIRST = "claims/a/first.md"
SECOND = "claims/a/second <b>.md"
ENRICHED = "claims/a/old.md"
CLAIMS = {
    FIRST: claim_text(
        f'First </h3>{ALERT} & "x"',
        [
            '"the quick brown fox jumps over" — a',  # exact
            '"brown fox jumps over the lazy dog" — overlaps the first',  # exact, overlapping
            'Intro <script>alert("body")</script> & "amp"',  # exact, the hostile text itself
            "nobody said <img src=x onerror=alert(3)> this at all",  # paraphrase
        ],
    ),
    SECOND: claim_text(
        "Second claim",
        [
            '"the quick brown fox jumps over" — the same span as the first claim\'s',  # identical span
            '"quick brown fox jumps" nested inside',  # nested
            '"Curly quotes and a line break" normalised',  # normalised
        ],
    ),
}


def review(**changes: object) -> PendingReview:
    return PendingReview.model_validate(
        {
            "slug": 'slug"<x>',
            "branch": 'extract/slug"<x>',
            "commit": "c" * 40,
            "source": "inbox/archive/src.md",
            "agent": "<agent>",
            "worker": 2,
            "model": 'model "<m>" & co',
            "prompt_hash": "abc123",
            "claims": list(CLAIMS),
            "enrichments": [ENRICHED],
            "warnings": [f"dropped {ALERT}"],
            "age_seconds": 1.0,
        }
        | changes
    )


def page_input(report: ExtractionReport | None = None, **changes: object) -> PageInput:
    return PageInput.model_validate(
        {
            "review": review(),
            "base": "b" * 40,
            "source_text": SOURCE,
            "source_after": SOURCE.replace("date: 2026-01-01", "date: 2026-01-01\nstatus: processed"),
            "claim_texts": CLAIMS,
            "enrichment_texts": {ENRICHED: ("line a\n<script>old</script>\n", 'line a\n<script>new</script> & "z"\n')},
            "report": report,
        }
        | changes
    )


def report(gates: list[str]) -> ExtractionReport:
    return ExtractionReport(
        source_path="inbox/archive/src.md", commit="c" * 40, branch="extract/x", worker=2, agent="theseus",
        model="m", prompt_hash="abc123", parts=1, enriched=[], dropped=[], part_notes=[f"part {ALERT}"],
        prompt_tokens=1234, completion_tokens=567, cost=0.0123,
        claims=[ClaimReport(title="First", path=FIRST, gates=gates, anchors=[], anchored_share=0.0)],
    )  # fmt: skip


def test_every_string_from_the_source_or_the_model_is_escaped() -> None:
    page = build_page(page_input())
    document = render_page(page)
    structure = parsed(document)
    tags = {tag for tag, _ in structure.tags}
    assert not tags & DANGEROUS, tags & DANGEROUS
    for tag, attrs in structure.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert not (attrs.get("href") or "").lower().startswith("javascript"), (tag, attrs)
    text = "".join(structure.text)
    for literal in (
        '<script>alert("body")</script> & "amp" </textarea> </pre> <!-- c --> ]]>',  # the source body
        "Src </title><script>alert('title')</script> & more",  # its title
        "<b>me</b> & you",  # author
        "javascript:alert('url')",  # shown, not linked
        f'First </h3>{ALERT} & "x"',  # a claim's title
        'Desc <script>alert("d")</script> & "q"',  # description
        "Argument </textarea><script>alert('arg')</script>",
        "nobody said <img src=x onerror=alert(3)> this at all",  # evidence
        "<iframe src=\"javascript:alert('lim')\"></iframe>",  # limitation
        '+<script>new</script> & "z"',  # an enrichment's diff
        "-<script>old</script>",
        "+status: processed",  # the source's own diff
        f"dropped {ALERT}",
        "claims/a/second <b>.md",
        'model "<m>" & co',
        "<agent>",
    ):
        assert literal.casefold() in text.casefold(), literal
    policies = [attrs for tag, attrs in structure.tags if tag == "meta" and attrs.get("http-equiv")]
    assert policies == [{"http-equiv": "Content-Security-Policy", "content": CSP}]
    assert CSP.startswith("default-src 'none'; style-src 'unsafe-inline'; img-src data:")
    assert "<title>Review extract/slug&#34;&lt;x&gt;</title>" in document


def test_overlapping_nested_and_identical_spans_make_flat_well_formed_marks() -> None:
    page = build_page(page_input())
    document = render_page(page)
    parsed(document)  # nesting checked
    marks = marks_of(document)
    body = parse_source(Path("src.md"), SOURCE).body
    assert "".join(segment.text for segment in page.source.segments) == body
    assert len(marks) == sum(segment.mark_id is not None for segment in page.source.segments)
    for claim in page.claims:
        for item in claim.evidence:
            if item.method == "paraphrase":
                assert item.mark_ids == [] and not any(item.id in ids for _, ids, _ in marks)
                continue
            assert item.start is not None and item.end is not None
            covering = [(ident, text) for ident, ids, text in marks if item.id in ids]
            assert covering, item.id
            assert "".join(text for _, text in covering) == body[item.start : item.end]
            assert item.mark_ids == [ident for ident, _ in covering]
            assert f'href="#{item.mark_ids[0]}"' in document
    methods = [[item.method for item in claim.evidence] for claim in page.claims]
    assert methods == [["exact", "exact", "exact", "paraphrase"], ["exact", "exact", "normalised"]]
    # "quick brown fox jumps" is covered by four items at once: both "the quick brown fox..." quotes,
    # the nested one and the overlapping one.
    assert max(len(ids) for _, ids, _ in marks) == 4
    assert "1 of 1 evidence item found" not in document
    assert "3 of 4 evidence items found in the source" in document
    assert "3 of 3 evidence items found in the source" in document


@given(
    st.text(alphabet="ab <&\"'\n", max_size=40),
    st.lists(st.tuples(st.integers(-3, 45), st.integers(-3, 45)), max_size=8),
)
def test_segments_cover_the_body_and_each_character_lists_exactly_the_spans_over_it(
    body: str, raw: list[tuple[int, int]]
) -> None:
    spans = [(f"e{n}", start, end) for n, (start, end) in enumerate(raw)]
    segments = segment_body(body, spans)
    assert "".join(segment.text for segment in segments) == body
    assert all(segment.text for segment in segments)
    position = 0
    for segment in segments:
        for offset in range(len(segment.text)):
            at = position + offset
            assert segment.evidence == [ident for ident, start, end in spans if start <= at < end]
        position += len(segment.text)
    ids = [segment.mark_id for segment in segments if segment.mark_id]
    assert ids == [f"mark-{n}" for n in range(1, len(ids) + 1)]
    assert all(a.evidence or b.evidence for a, b in zip(segments, segments[1:], strict=False))


def test_without_a_report_gates_tokens_and_cost_are_not_recorded() -> None:
    page = build_page(page_input(report=None))
    assert not page.provenance.recorded and all(claim.gates is None for claim in page.claims)
    text = "".join(parsed(document := render_page(page)).text)
    assert text.count("not recorded (the state store has no report of this claim)") == 2
    assert document.count('<dd class="not-recorded">not recorded</dd>') == 2  # tokens and cost
    assert "✓" not in text


def test_with_a_report_each_gate_is_shown_passed_or_not_and_tokens_and_cost() -> None:
    page = build_page(page_input(report=report(["title", "evidence"])))
    first, second = page.claims
    assert [gate.name for gate in first.gates or []] == list(GATES)
    assert {gate.name for gate in first.gates or [] if gate.passed} == {"title", "evidence"}
    assert second.gates is None  # the report knows no claim at that path (renamed, or added by hand)
    document = render_page(page)
    text = "".join(parsed(document).text)
    assert "1234 in, 567 out" in text and "$0.0123" in text
    assert f"part {ALERT}" in text
    assert document.count('class="pass"') == 2 and document.count('class="fail"') == len(GATES) - 2


def test_a_broken_claim_file_or_a_missing_source_still_renders() -> None:
    broken = {FIRST: "no frontmatter <script>alert(1)</script>", SECOND: None}
    page = build_page(page_input(source_text=None, claim_texts=broken))
    assert page.source.error and page.source.segments == []
    assert [claim.error is not None for claim in page.claims] == [True, True]
    text = "".join(parsed(render_page(page)).text)
    assert "no frontmatter <script>alert(1)</script>" in text
    assert "The source cannot be shown" in text

    unparsable = build_page(page_input(source_text="no frontmatter at all"))
    assert unparsable.source.error is not None
    parsed(render_page(unparsable))


def test_an_http_url_is_linked_without_a_referrer() -> None:
    source = SOURCE.replace("\"javascript:alert('url')\"", '"https://example.org/a?b=1&c=<2>"')
    document = render_page(build_page(page_input(source_text=source)))
    links = [attrs for tag, attrs in parsed(document).tags if tag == "a" and "noreferrer" in (attrs.get("rel") or "")]
    assert [link["href"] for link in links] == ["https://example.org/a?b=1&c=<2>"]


def test_diff_lines_are_classified() -> None:
    diff = diff_lines("p.md", "a\nb\nc\n", "a\nB\nc\nd\n")
    assert [line.kind for line in diff.lines] == ["meta", "meta", "hunk", "context", "del", "add", "context", "add"]
    assert diff_lines("p.md", "same\n", "same\n").lines == []


def test_index_and_not_found_pages_escape_and_nest() -> None:
    entry = IndexEntry(slug='s"<x>', href="/review/s%22%3Cx%3E", source="<src>", agent="a", model="m", claims=1,
                       enrichments=0, warnings=0)  # fmt: skip
    document = render_index([entry])
    structure = parsed(document)
    assert [attrs["href"] for tag, attrs in structure.tags if tag == "a"] == ["/review/s%22%3Cx%3E"]
    assert 'extract/s"<x>' in "".join(structure.text) and "<src>" in "".join(structure.text)
    assert "No extraction branch awaits review." in render_index([])
    assert "&lt;script&gt;" in render_not_found("<script>")


def test_the_page_model_round_trips_as_json() -> None:
    page = build_page(page_input(report=report(list(GATES))))
    assert ReviewPage.model_validate_json(page.model_dump_json()) == page


def test_claims_come_in_the_model_s_order_where_the_store_recorded_it() -> None:
    recorded = report(["title"]).model_copy(update={"claims": [
        ClaimReport(title="Second claim", path=SECOND, gates=["title"], anchors=[], anchored_share=0.0),
        ClaimReport(title="First", path=FIRST, gates=["title"], anchors=[], anchored_share=0.0),
    ]})  # fmt: skip
    assert [claim.path for claim in build_page(page_input(report=recorded)).claims] == [SECOND, FIRST]
    assert [claim.path for claim in build_page(page_input(report=None)).claims] == [FIRST, SECOND]  # by path


def test_the_server_answers_404_for_unknown_and_malformed_slugs(tmp_path: Path) -> None:
    """A slug that names no branch, or is no branch name at all (a path, a revision expression), is a 404."""
    kb = make_inbox_kb(tmp_path / "kb", 1)
    server = make_server(kb, Settings())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        for slug in ("no-such-branch", "..%2F..%2Fetc%2Fpasswd", "main~1", "x@%7B0%7D", "%2E%2E"):
            try:
                urllib.request.urlopen(f"http://{host!s}:{port}/review/{slug}", timeout=10)
            except urllib.error.HTTPError as error:
                assert error.code == 404, (slug, error.code)
            else:
                raise AssertionError(f"{slug} was served")
    finally:
        server.shutdown()
        server.server_close()


def test_flags_and_derived_figures_are_shown_and_escaped() -> None:
    flagged = report(list(GATES))
    flagged.claims[0].flags = [
        Flag(
            gate="grounding",
            where="evidence[1]",
            text=f"37% {ALERT}",
            reason=f"the figure 37% is not in the source {ALERT}",
        )
    ]
    flagged.claims[0].grounded = [
        Flag(
            gate="grounding",
            where="argument",
            text="57%",
            reason="the percent change of 60% and 26%",
            verdict="derived",
        )
    ]
    document = render_page(build_page(page_input(report=flagged)))
    structure = parsed(document)
    assert not {tag for tag, _ in structure.tags} & DANGEROUS
    assert "Flagged for review" in document and "evidence[1]" in document
    assert "the figure 37% is not in the source" in document
    assert "the percent change of 60% and 26%" in document
    assert ALERT not in document  # escaped, never markup


# --- markdown ---------------------------------------------------------------------------------------------

MARKDOWN_BODY = (
    "## Findings\n\n"
    "- **Formal impossibility result**: no single reward\n"
    "  can encode every value.\n"
    "- Thick models keep the context.\n\n"
    "> A quoted line with `code` and &amp; an entity.\n"
)


def rendered(body: str, spans: list[tuple[str, int, int]]) -> tuple[str, list[tuple[str, list[str], str]]]:
    """The body rendered with its spans marked, checked for nesting; and each mark as (id, evidence, text)."""
    document, shown = render_source(segment_body(body, spans))
    parsed(document)
    marks = marks_of(document)
    assert shown == [ident for ident, _, _ in marks if ident]
    return document, marks


def texts_of(marks: list[tuple[str, list[str], str]], ident: str) -> list[str]:
    return [text for _, evidence, text in marks if ident in evidence]


def span(body: str, first: str, last: str) -> tuple[int, int]:
    start = body.index(first)
    return start, body.index(last, start) + len(last)


def test_the_source_renders_as_markdown_with_highlights_on_exactly_the_spanned_characters() -> None:
    body = MARKDOWN_BODY
    spans = [
        ("heading-into-bold", *span(body, "Findings", "**Formal")),  # across a heading and a list marker
        ("bold-out", *span(body, "impossibility", "single")),  # out of the bold, over the closing "**"
        ("list", *span(body, "every value", "Thick models")),  # over two list items
        ("quote", *span(body, "quoted", "&amp;")),  # into the code span and over the entity
    ]
    document, marks = rendered(body, spans)
    structure = parsed(document)
    tags = [tag for tag, _ in structure.tags]
    assert {"h2", "ul", "li", "strong", "blockquote", "code"} <= set(tags)
    assert "**" not in "".join(structure.text) and "## " not in "".join(structure.text)
    assert texts_of(marks, "heading-into-bold") == ["Findings", "Formal"]
    assert texts_of(marks, "bold-out") == ["impossibility result", ": no single"]
    assert texts_of(marks, "list") == ["every value.", "Thick models"]
    assert texts_of(marks, "quote") == ["quoted line with ", "code", " and &"]
    # The first piece of each segment carries its id; the pieces after a tag continue it without one.
    assert '<h2><mark id="mark-1" data-evidence="heading-into-bold"' in document
    assert '<strong><mark data-evidence="heading-into-bold" class="cont"' in document
    assert '"#heading-into-bold">Formal</a></mark> <mark id="mark-2" data-evidence="bold-out"' in document
    assert '</strong><mark data-evidence="bold-out" class="cont"' in document
    assert "\ue000" not in document and "\ue001" not in document


def test_a_span_of_markup_alone_has_no_mark_and_its_item_no_link() -> None:
    body = "Intro.\n\n- the first item of the list\n- the second item of the list\n"
    start = body.index("- the second")
    _, marks = rendered(body, [("marker", start, start + 2), ("text", start + 2, start + 12)])
    assert texts_of(marks, "marker") == [] and texts_of(marks, "text") == ["the second"]
    source = SOURCE.replace(BODY, "\n" + body)
    claims = {
        FIRST: claim_text("First", ['"the first item of the list"', "- the second item", '"second item of the list"']),
        SECOND: None,
    }
    page = build_page(page_input(source_text=source, claim_texts=claims))
    first = page.claims[0]
    assert [item.method for item in first.evidence] == ["exact", "exact", "exact"]
    assert first.evidence[0].mark_ids and first.evidence[2].mark_ids
    shown = {ident for _, ident in re.findall(r'<mark (id="(mark-\d+)")', render_page(page))}
    for item in first.evidence:
        assert set(item.mark_ids) <= shown, item


def test_raw_html_is_escaped_and_script_links_are_not_links() -> None:
    hostile = (
        "<script>alert(1)</script> <img src=x onerror=alert(2)> "
        "[a](javascript:alert(3)) [b](JavaScript:alert(4)) [c](vbscript:x) [d](data:text/html,x) [e](file:///etc) "
        '<javascript:alert(5)> [f][r] [g](http://ok.example/"onmouseover="alert(6)) [h](#frag) [i](/local)\n\n'
        "[r]: javascript:alert(7)\n"
    )
    for document in (str(render_markdown(hostile)), rendered(hostile, [("all", 0, len(hostile))])[0]):
        structure = parsed(document)
        assert not {tag for tag, _ in structure.tags} & DANGEROUS
        links = [
            attrs for tag, attrs in structure.tags if tag == "a" and not (attrs.get("href") or "#").startswith("#")
        ]
        assert [link["href"] for link in links] == ["http://ok.example/%22onmouseover=%22alert(6)"]
        assert all(link["rel"] == "noreferrer noopener" for link in links)
        assert not any(name.startswith("on") for _, attrs in structure.tags for name in attrs)
        text = "".join(structure.text)
        for literal in ("<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "[a](javascript:alert(3))",
                        "<javascript:alert(5)>", "[f][r]", "[r]: javascript:alert(7)", "[h](#frag)"):  # fmt: skip
            assert literal in text, literal


def test_a_mark_boundary_cannot_hide_a_script_scheme_or_leak_into_an_address() -> None:
    body = "See [x](java" + "script:alert(1)) and [y](https://example.org/a/b) here.\n"
    split = body.index("script:")  # a boundary inside "javascript:", where a sentinel would break the word
    inside = body.index("/a/b")
    document, marks = rendered(body, [("one", 0, split), ("two", inside, len(body) - 1)])
    hrefs = [attrs.get("href") for tag, attrs in parsed(document).tags if tag == "a"]
    assert "https://example.org/a/b" in hrefs and not any("script" in (href or "") for href in hrefs)
    assert not any("%EE%80" in (href or "") or "\ue000" in (href or "") for href in hrefs)
    assert "[x](javascript:alert(1))" in "".join(parsed(document).text)
    assert texts_of(marks, "two") == [" here."]  # the span went on after the link's address


def test_a_body_bringing_its_own_sentinel_characters_cannot_forge_a_mark() -> None:
    forged = "a \ue000\ue011b\ue001\ue011 c"
    document, marks = rendered(forged, [])
    assert marks == [] and "<mark" not in document and "\ue000" not in document


PIECES = [
    "word", " two words.", "**bold**", "*em*", "_em_", "**bold**: and *em* ", "\n# ", "\n## ", "\n- ", "\n* ",
    "\n1. ", "\n> ", "\n", "\n\n", " ", "`code`", "[link](https://x.org/a)", '[t](http://a.b "title")', "&amp;",
    "\\*", "\n---\n", "\n```\n", "<https://x.org>", "<b>", "x_y_z", "  \n", "\n    code",
]  # fmt: skip


def plain_text_and_tags(document: str) -> tuple[str, list[tuple[str, dict[str, str | None]]]]:
    """The document's text and elements, the marks and their links aside."""
    structure = parsed(document)
    tags = [(tag, attrs) for tag, attrs in structure.tags if tag != "mark" and (attrs.get("href") or "x")[0] != "#"]
    return "".join(structure.text), tags


@given(
    st.lists(st.sampled_from(PIECES), max_size=14).map("".join),
    st.lists(st.tuples(st.integers(0, 90), st.integers(0, 90)), max_size=4),
)
def test_marks_never_change_how_the_markdown_renders(body: str, raw: list[tuple[int, int]]) -> None:
    """Whatever the spans, the page shows the same elements and text as the body rendered without them."""
    spans = [(f"e{n}", start, end) for n, (start, end) in enumerate(raw)]
    document, marks = rendered(body, spans)
    assert plain_text_and_tags(document) == plain_text_and_tags(str(render_markdown(body)))
    assert all(text for _, _, text in marks)


# --- reviews ------------------------------------------------------------------------------------------------


def branch_review(reviewer: str, verdicts: dict[str, str], cost: float | None) -> BranchReview:
    return BranchReview(
        branch="extract/x", commit="c" * 40, source_path="inbox/archive/src.md", reviewer=reviewer,  # type: ignore[arg-type]
        agent=f"<{reviewer}-agent>", model="rm", prompt_hash="p", summary=f"Summary {ALERT}", usage=Usage(cost=cost),
        items=[
            ItemReview(path=path, kind="claim", verdict=verdict,  # type: ignore[arg-type]
                       findings=[Finding(criterion="scope", reason=f"too broad {ALERT}")] if verdict != "approve" else [],  # noqa: E501
                       fixes=[f"fix {ALERT}"] if verdict != "approve" else [])
            for path, verdict in verdicts.items()
        ],
    )  # fmt: skip


def test_reviewer_verdicts_are_shown_per_claim_and_for_the_branch() -> None:
    reviews = [
        branch_review("lead", {FIRST: "request_changes", SECOND: "approve"}, 0.001),
        branch_review("domain", {FIRST: "approve", SECOND: "approve"}, None),
    ]
    page = build_page(page_input(reviews=reviews, reviewers=["lead", "domain"], reviewing=True))
    first, second = page.claims
    assert [(v.reviewer, v.verdict) for v in first.verdicts] == [("lead", "request_changes"), ("domain", "approve")]
    assert first.verdicts[0].findings[0].reason == f"too broad {ALERT}"
    assert [v.verdict for v in second.verdicts] == ["approve", "approve"]
    assert page.verdict == "changes" and page.review_cost == 0.001
    document = render_page(page)
    structure = parsed(document)
    assert not {tag for tag, _ in structure.tags} & DANGEROUS
    text = "".join(structure.text)
    assert f"scope: too broad {ALERT}" in text and f"suggested fix: fix {ALERT}" in text
    assert f"Summary {ALERT}" in text and "<lead-agent>" in text
    assert document.count('class="verdict request_changes"') == 1 and document.count('class="verdict approve"') == 3
    assert '<span class="verdict changes">changes requested</span>' in document and "$0.001000" in text

    approved = build_page(page_input(reviews=reviews[1:], reviewers=["domain"], reviewing=True))
    assert approved.verdict == "approved"
    assert build_page(page_input(reviews=reviews[1:], reviewers=["lead", "domain"])).verdict == "unreviewed"


def test_without_reviews_the_page_says_not_reviewed_only_when_a_reviewer_is_configured() -> None:
    waiting = render_page(build_page(page_input(reviewing=True, reviewers=["lead"])))
    assert '<span class="verdict unreviewed">not reviewed</span>' in waiting
    assert "".join(parsed(waiting).text).count("not reviewed") == 3  # the branch and its two claims
    off = render_page(build_page(page_input()))
    assert "not reviewed" not in off and 'id="branch-verdict"' not in off


def test_a_served_page_has_the_decision_forms_the_token_and_its_script_the_written_one_neither() -> None:
    page = build_page(page_input())
    written = render_page(page)
    assert "<form" not in written and "<script" not in written and 'name="token"' not in written
    served = Served(token="tok-<&>", previous="/review/p", next="/review/n", done="extract/x: accepted <b>")
    document = render_page(page, served)
    structure = parsed(document)
    forms = [attrs for tag, attrs in structure.tags if tag == "form"]
    assert [form["action"] for form in forms] == [f"/review/slug%22%3Cx%3E/{action}" for action in ACTIONS]
    assert all(form["method"] == "post" for form in forms)
    tokens = [attrs for tag, attrs in structure.tags if tag == "input" and attrs.get("name") == "token"]
    assert [attrs["value"] for attrs in tokens] == ["tok-<&>"] * 3
    assert [attrs.get("src") for tag, attrs in structure.tags if tag == "script"] == ["/static/review.js"]
    policies = [attrs["content"] for tag, attrs in structure.tags if tag == "meta" and attrs.get("http-equiv")]
    assert policies == [SERVED_CSP] and "script-src 'self'" in SERVED_CSP and "form-action 'self'" in SERVED_CSP
    links = {attrs.get("rel"): attrs.get("href") for tag, attrs in structure.tags if tag == "a" and attrs.get("rel")}
    assert links["prev"] == "/review/p" and links["next"] == "/review/n"
    assert "extract/x: accepted <b>" in "".join(structure.text)
    reason = next(attrs for tag, attrs in structure.tags if tag == "input" and attrs.get("name") == "reason")
    assert "required" in reason and reason["id"] == "reject-reason"


def test_the_index_shows_verdict_flags_and_cost() -> None:
    entry = IndexEntry(slug="s", href="/review/s", source="src", agent="a", model="m", claims=2, enrichments=1,
                       warnings=0, verdict="rejected", flags=3, cost=0.0123)  # fmt: skip
    text = "".join(parsed(render_index([entry])).text)
    assert "rejected" in text and "$0.0123" in text and "2 (+1 enriched)" in text
    row = re.search(r'<tr data-slug="s">(.*?)</tr>', render_index([entry]), re.S)
    assert row and "<td>3</td>" in row.group(1)
