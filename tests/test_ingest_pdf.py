"""PDF conversion: a generated paper comes out as ordered markdown with its metadata, and every broken or hostile
PDF is refused with one IngestError (encrypted, truncated, not a PDF, scanned, too long, a decompression bomb)."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable

import pytest

from extractor.ingest.document import Document, IngestError
from extractor.ingest.pdf import (
    Block,
    Line,
    child_result,
    column_order,
    find_arxiv,
    find_doi,
    is_page_number,
    join_lines,
    paragraphs,
    pdf_date,
    pdf_document,
    pdf_document_bounded,
    render,
    split_authors,
    unreadable,
    usable_title,
)
from tests import pdfs


@pytest.fixture(scope="module")
def paper() -> Document:
    return pdf_document(pdfs.paper_pdf(), "paper.pdf")


def sentence(lines: list[str]) -> str:
    return join_lines(lines)


def test_paper_metadata(paper: Document) -> None:
    assert paper.kind == "pdf"
    assert paper.title == pdfs.TITLE
    assert paper.authors == ["Ada Lovelace", "Charles Babbage"]
    assert paper.date == "2024-03-15"
    assert paper.doi == pdfs.DOI  # the sentence's full stop after it is not part of it
    assert paper.arxiv == pdfs.ARXIV  # from the stamp turned in the margin, version dropped
    assert paper.format == "paper"


def test_paper_headings_by_size(paper: Document) -> None:
    headings = re.findall(r"^#+ .*$", paper.text, re.MULTILINE)
    assert headings == [
        f"# {pdfs.TITLE}",
        "## Abstract",
        "## 1 Introduction",
        "## 2 Method",
        "### 2.1 Details",
        "## 3 Results",
    ]
    assert paper.text.startswith(f"# {pdfs.TITLE}\n\n")


def test_paper_reading_order(paper: Document) -> None:
    """Every paragraph whole (its lines joined by spaces), and the left column before the right one."""
    in_order = [
        sentence(pdfs.ABSTRACT),
        sentence(pdfs.INTRO),
        *(sentence(p) for p in pdfs.LEFT),
        *(sentence(p) for p in pdfs.RIGHT),
        sentence(pdfs.RESULTS),
        "Model | Params | Score",
        sentence(pdfs.CONCLUSION),
    ]
    positions = [paper.text.find(s) for s in in_order]
    assert -1 not in positions, [s for s, p in zip(in_order, positions, strict=True) if p == -1]
    assert positions == sorted(positions)
    paragraphs_ = paper.text.split("\n\n")
    for paragraph in (*pdfs.LEFT, *pdfs.RIGHT):
        assert sentence(paragraph) in paragraphs_  # one paragraph each, separated by blank lines


def test_paper_hyphenated_break_joined(paper: Document) -> None:
    assert "the text extraction pipeline must cope" in paper.text
    assert "extrac-" not in paper.text


def test_paper_running_header_and_page_numbers_dropped(paper: Document) -> None:
    assert "Fixture Journal" not in paper.text
    assert "Preprint" not in paper.text
    assert not re.search(r"^\s*\d+\s*$", paper.text, re.MULTILINE)
    assert "arXiv" not in paper.text  # the turned stamp names the paper but is not body text


def test_paper_table_rows_one_line_each(paper: Document) -> None:
    rows = ["Model | Params | Score", "Base | 110M | 81.2", "Large | 340M | 84.6"]
    assert "\n".join(rows) in paper.text
    assert "Table 1: Scores by model." in paper.text


def test_tight_table_columns_become_rows() -> None:
    """Rows set 11 pt apart: pdfminer boxes each column's cells together, the rows are rebuilt by baseline."""
    text = pdf_document(pdfs.tight_table_pdf(), "tight.pdf").text
    assert "Model | Params | Score\nBase | 110M | 81.2\nLarge | 340M | 84.6\nHuge | 1.2B | 88.0" in text
    assert text.index("before the table") < text.index("Model | Params") < text.index("after the table")


def test_title_from_first_heading_when_info_has_none() -> None:
    """reportlab writes "untitled" and "anonymous" when told nothing: placeholders, not metadata."""
    document = pdf_document(pdfs.plain_pdf(), "plain.pdf")
    assert document.title == "Plain Report Number 1"
    assert document.authors == []
    assert document.format == "report"
    assert document.doi is None and document.arxiv is None
    assert document.text == "# Plain Report Number 1\n\nThis is the only sentence of page 1."


def test_text_inside_a_page_form_kept_plot_labels_dropped() -> None:
    text = pdf_document(pdfs.form_pdf(), "form.pdf").text
    assert text == "This sentence is drawn inside a form that covers the whole page."


def test_owner_password_only_opens() -> None:
    assert pdf_document(pdfs.encrypted_pdf(user_password=""), "owner.pdf").title == pdfs.TITLE


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (lambda: pdfs.encrypted_pdf(), "encrypted PDF: it needs a password"),
        (lambda: pdfs.paper_pdf()[: len(pdfs.paper_pdf()) * 6 // 10], "damaged PDF (it ends too early: truncated?)"),
        (lambda: b"<!doctype html><html><body><p>Not a paper</p></body></html>", "not a PDF"),
        (lambda: b"", "not a PDF"),
        (lambda: b"%PDF-1.4\n" + bytes(range(256)) * 8, "damaged PDF (no /Root object)"),
        (lambda: pdfs.image_only_pdf(), "no text layer (a scanned PDF?): OCR it first"),
        (lambda: pdfs.plain_pdf(pages=4), "too many pages (4, at most 3)"),
    ],
    ids=["encrypted", "truncated", "html", "empty", "garbage", "scanned", "too-many-pages"],
)
def test_refused_with_one_clear_problem(data: Callable[[], bytes], problem: str) -> None:
    with pytest.raises(IngestError) as caught:
        pdf_document(data(), "item.pdf", max_pages=3)
    assert caught.value.problem == problem
    assert str(caught.value) == f"item.pdf: {problem}"


def test_bounded_gives_the_same_document() -> None:
    data = pdfs.paper_pdf()
    assert pdf_document_bounded(data, "paper.pdf", max_pages=10) == pdf_document(data, "paper.pdf")


def test_bounded_passes_errors_through() -> None:
    with pytest.raises(IngestError, match="encrypted PDF: it needs a password"):
        pdf_document_bounded(pdfs.encrypted_pdf(), "secret.pdf")
    with pytest.raises(IngestError, match="not a PDF"):
        pdf_document_bounded(b"<html></html>", "page.pdf")


def test_bounded_decompression_bomb_refused_fast() -> None:
    """A 1 MB PDF whose content stream inflates to 1 GiB: the child hits its 300 MB cap and says so."""
    bomb = pdfs.bomb_pdf()
    assert len(bomb) < 2_000_000
    start = time.monotonic()
    with pytest.raises(IngestError) as caught:
        pdf_document_bounded(bomb, "bomb.pdf", max_pages=10, memory_mb=300)
    assert caught.value.problem == "too large when decompressed (more than 300 MB)"
    assert time.monotonic() - start < 10


def test_bounded_timeout() -> None:
    with pytest.raises(IngestError) as caught:
        pdf_document_bounded(pdfs.paper_pdf(), "slow.pdf", timeout=0.05)
    assert caught.value.problem == "took longer than 0.05 s"


def test_child_result_reading() -> None:
    """A child killed by a signal or dying of MemoryError ran out of memory; anything else is a failure."""
    with pytest.raises(IngestError, match=r"too large when decompressed \(more than 64 MB\)"):
        child_result("a.pdf", -signal.SIGKILL, b"", b"", 64)
    with pytest.raises(IngestError, match="too large when decompressed"):
        child_result("a.pdf", 1, b"", b"Traceback ...\nMemoryError\n", 64)
    with pytest.raises(IngestError, match=r"the PDF converter failed \(ModuleNotFoundError: no pdfminer\)"):
        child_result("a.pdf", 1, b"", b"Traceback ...\nModuleNotFoundError: no pdfminer\n", 64)
    with pytest.raises(IngestError, match=r"the PDF converter failed \(exit status 3\)"):
        child_result("a.pdf", 3, b"{not json", b"", 64)
    assert child_result("a.pdf", 0, b'{"text": "x", "kind": "pdf"}', b"", 64) == Document(text="x", kind="pdf")


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("Ada Lovelace; Charles Babbage", ["Ada Lovelace", "Charles Babbage"]),
        ("Ada Lovelace and Charles Babbage", ["Ada Lovelace", "Charles Babbage"]),
        ("Ada Lovelace, Charles Babbage, Alan Turing", ["Ada Lovelace", "Charles Babbage", "Alan Turing"]),
        ("Lovelace, A.", ["Lovelace, A."]),
        ("Lovelace, A. and Babbage, C.", ["Lovelace, A.", "Babbage, C."]),
        ("anonymous", []),
        ("", []),
    ],
)
def test_split_authors(value: str, names: list[str]) -> None:
    assert split_authors(value) == names


@pytest.mark.parametrize(
    ("value", "date"),
    [
        ("D:20240315093000+01'00'", "2024-03-15"),
        ("D:202403", "2024-03-00"),
        ("D:2024", "2024-00-00"),
        ("20240315", "2024-03-15"),
        ("D:20241315", "2024-00-00"),
        ("garbage", None),
        (None, None),
    ],
)
def test_pdf_date(value: str | None, date: str | None) -> None:
    assert pdf_date(value) == date


def test_identifiers() -> None:
    assert find_doi("see https://doi.org/10.1000/xyz.123.") == "10.1000/xyz.123"
    assert find_doi("(doi:10.1016/S0140-6736(20)30183-5)") == "10.1016/S0140-6736(20)30183-5"
    assert find_doi("no identifier here") is None
    # the paper's own DOI beside a cited dataset's: which is which would be a guess, and a wrong guess refuses
    # another paper that cites the same dataset as a duplicate
    assert find_doi("doi:10.1000/own.1 ... data at https://doi.org/10.5061/dryad.x") is None
    assert find_doi("doi:10.1000/own.1, again doi:10.1000/own.1.") == "10.1000/own.1"
    assert find_arxiv("arXiv:2401.00001v3 [cs.CL]") == "2401.00001"
    assert find_arxiv("arXiv: 2312.12345") == "2312.12345"
    assert usable_title("Microsoft Word - draft7.docx") is None
    assert usable_title("Microsoft Word - A Real Title") == "A Real Title"


@pytest.mark.parametrize("text", ["3", "Page 3", "3 of 10", "- 3 -", "\u2013 12 \u2013", "xiv", "Page 2 / 9"])
def test_page_numbers(text: str) -> None:
    assert is_page_number(text)


@pytest.mark.parametrize("text", ["Section 3", "civil", "2024 results", "Table 3"])
def test_not_page_numbers(text: str) -> None:
    assert not is_page_number(text)


def test_join_lines_hyphenation() -> None:
    assert join_lines(["text extrac-", "tion works"]) == "text extraction works"
    assert join_lines(["the state-", "Of-the-art"]) == "the state- Of-the-art"  # next line not lower case
    assert join_lines(["costs 10-", "20 units"]) == "costs 10- 20 units"  # no word before the hyphen


def _line(text: str, x0: float, y: float, x1: float, size: float = 10) -> Line:
    return Line((text,), x0, y, x1, y + size, size)


def test_column_order_keeps_one_column_top_down() -> None:
    blocks = [_line(f"line {i}", 56, 700 - 20 * i, 540 - (i % 3) * 100) for i in range(6)]
    ordered = column_order([Block((line,)) for line in reversed(blocks)], mid=297)
    assert [b.lines[0].text for b in ordered] == [f"line {i}" for i in range(6)]


def test_column_order_two_columns_under_a_full_width_title() -> None:
    title = Block((_line("title", 150, 780, 450, 20),))

    def paragraph(name: str, x0: float, x1: float, top: float) -> Block:  # 4 lines, 13 pt apart
        return Block(tuple(_line(name, x0, top - 13 * k, x1) for k in range(4)))

    left = [paragraph(f"L{i}", 56, 280, 700 - 60 * i) for i in range(3)]
    right = [paragraph(f"R{i}", 310, 540, 700 - 60 * i) for i in range(3)]
    ordered = column_order([*right, *left, title], mid=297)
    assert [b.lines[0].text for b in ordered] == ["title", "L0", "L1", "L2", "R0", "R1", "R2"]


def test_paragraphs_split_at_indent_after_short_line() -> None:
    lines = [
        _line("first paragraph runs the whole width", 56, 700, 540),
        _line("and stops short.", 56, 687, 300),
        _line("Indented start of the second one", 70, 674, 540),
        _line("going on flush left.", 56, 661, 400),
    ]
    assert [len(p) for p in paragraphs(lines)] == [2, 2]
    centred = [_line("A centred title line", 200, 700, 400), _line("short", 270, 687, 330), _line("x", 290, 674, 300)]
    assert [len(p) for p in paragraphs(centred)] == [3]


def test_unreadable_text_layer() -> None:
    assert unreadable("(cid:12)(cid:13)(cid:14) a")
    assert not unreadable("Readable text with one (cid:3) glyph in it.")


def test_render_joins_broken_paragraphs_and_lone_bullets() -> None:
    parts = [(1, "Title"), (0, "A sentence broken by the column"), (0, "break goes on."), (0, "\u2022"), (0, "Item")]
    assert render(parts) == "# Title\n\nA sentence broken by the column break goes on.\n\n\u2022 Item"
    assert render([(0, "Ends here."), (0, "lower case after a full stop")]).count("\n\n") == 1
    assert render([(0, "# not a heading")]) == "\\# not a heading"


def test_a_hyphen_the_word_owns_is_kept_across_a_line_break() -> None:
    words = frozenset({"well-known", "extraction"})
    assert join_lines(["a well-", "known result"], words) == "a well-known result"
    assert join_lines(["the extrac-", "tion step"], words) == "the extraction step"
    assert join_lines(["state-of-the-", "art model"]) == "state-of-the-art model"  # hyphens already: its own
    assert join_lines(["long-", "duration"]) == "longduration"  # nothing to tell by: a soft hyphen


def test_impossible_calendar_days_are_no_date() -> None:
    assert pdf_date("D:20230230120000Z") == "2023-02-00"
    assert pdf_date("D:20240431") == "2024-04-00"
    assert pdf_date("D:20240229") == "2024-02-29"


def test_justified_columns_keep_every_paragraph_whole_and_in_order() -> None:
    """Justified lines have wide word gaps: read as gaps between boxes, they scattered words into stray lines
    and fake table rows."""
    from tests.pdfs import justified_paragraphs, justified_pdf

    paragraphs = justified_paragraphs()
    text = pdf_document(justified_pdf(paragraphs), "justified.pdf").text
    positions = [text.find(paragraph) for paragraph in paragraphs]
    assert -1 not in positions, [n for n, p in enumerate(positions) if p == -1]
    assert positions == sorted(positions) and " | " not in text
