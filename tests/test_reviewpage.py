"""The review page's model and rendering, without git: escaping, overlapping spans, the fallback without a report."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from extractor.core.records import ClaimReport, ExtractionReport, Flag
from extractor.core.settings import Settings
from extractor.extraction.gates import GATES
from extractor.kb.sources import parse_source
from extractor.review.branches import PendingReview
from extractor.review.page import (
    CSP,
    IndexEntry,
    PageInput,
    ReviewPage,
    build_page,
    diff_lines,
    make_server,
    render_index,
    render_not_found,
    render_page,
    segment_body,
)
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
                self.found.append((values["id"] or "", (values["data-evidence"] or "").split(), ""))
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
