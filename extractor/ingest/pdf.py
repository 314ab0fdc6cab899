"""PDF papers into documents: the text layer as markdown (reading order across two columns, headings by font
size, paragraphs, table rows as lines, running headers and page numbers dropped) with the metadata found in the
Info dictionary and on the first page.

pdfminer.six reads the PDF (:func:`_read`, the only function that touches the library); everything after it works
on the plain :class:`Line` / :class:`Block` / :class:`Page` records and computes only. A PDF from outside should go
through :func:`pdf_document_bounded`, which converts in a child process under a memory cap and a time limit: one
FlateDecode stream can inflate to gigabytes, and pdfminer inflates a stream whole.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from io import BytesIO
from pathlib import Path
from statistics import median
from typing import Any

from extractor.ingest.document import Document, IngestError, calendar_day
from extractor.ingest.kinds import is_pdf

BAND = 0.08  # the top and bottom share of a page where running headers, footers and page numbers live
HEADING_RATIO = 1.15  # a line this much larger than the body size is a heading
HEADING_MAX_WORDS = 30  # a larger-type run longer than this is text set large, not a heading
CELL_GAP = 0.8  # a gap this many ems wide inside a line separates table cells
NARROW = 0.3  # a text box at most this share of the page wide, its lines of at most CELL_WORDS words, may be
CELL_WORDS = 4  # a table column (a column of text has longer lines)
TITLE_TAIL = re.compile(r"\.(docx?|pdf|tex|dvi|ps|indd|rtf|odt|qxd)\s*$", re.IGNORECASE)
DOI = re.compile(r"10\.\d{4,9}/[^\s\"<>]+")
ARXIV = re.compile(r"arXiv:\s*(\d{4}\.\d{4,5})(v\d+)?", re.IGNORECASE)
PDF_DATE = re.compile(r"^(?:D:)?(\d{4})(\d{2})?(\d{2})?")
PAGE_NUMBER = re.compile(
    r"(?:page\s+)?[-\u2013\u2014]?\s*(?:\d{1,4}|(?=[ivxlc])(?:xc|xl|l?x{0,3})(?:ix|iv|v?i{0,3}))\s*[-\u2013\u2014]?"
    r"(?:\s*(?:of|/)\s*\d{1,4})?",
    re.IGNORECASE,
)
PLACEHOLDERS = {"untitled", "title", "unknown", "anonymous", "author", "administrator", "user"}  # tools' defaults
ABSTRACT = re.compile(r"abstract\s*(?:$|[.:\u2014\u2013-])", re.IGNORECASE)  # "Abstract", "Abstract—We ..."
BULLETS = set("\u2022\u25e6\u25aa\u2023\u2219\u00b7\u25cb\u25a0\u25a1*-\u2013")
LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl"})
HYPHENS = ("-", "\u2010", "\u00ad")
SENTENCE_END = tuple('.!?:;")]\u201d')
REASONS = {"PDFDocument is not initialized": "no cross-reference table", "No /Root object": "no /Root object"}
CHILD_MEMORY_SIGNALS = {
    -int(getattr(signal, name)) for name in ("SIGKILL", "SIGSEGV", "SIGABRT", "SIGBUS") if hasattr(signal, name)
}


# ---- records -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One line of text as laid out: its cells are the runs split at gaps wider than :data:`CELL_GAP` ems."""

    cells: tuple[str, ...]
    x0: float
    y0: float
    x1: float
    y1: float
    size: float

    @property
    def text(self) -> str:
        return " ".join(self.cells)


@dataclass(frozen=True, slots=True)
class Block:
    """A text box (pdfminer's paragraph guess) or, with ``table``, rows gathered from boxes on shared baselines."""

    lines: tuple[Line, ...]
    table: bool = False

    @property
    def x0(self) -> float:
        return min(line.x0 for line in self.lines)

    @property
    def x1(self) -> float:
        return max(line.x1 for line in self.lines)

    @property
    def y0(self) -> float:
        return min(line.y0 for line in self.lines)

    @property
    def y1(self) -> float:
        return max(line.y1 for line in self.lines)


@dataclass(frozen=True, slots=True)
class Page:
    """One page's text boxes in pdfminer's order; ``rotated`` is its turned text (an arXiv stamp in the margin),
    kept apart so it never lands in the body but can still name the paper."""

    x0: float
    y0: float
    x1: float
    y1: float
    blocks: tuple[Block, ...]
    rotated: str = ""

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@dataclass(frozen=True, slots=True)
class Parsed:
    """What :func:`_read` takes out of a PDF: its pages and its Info dictionary as strings."""

    pages: tuple[Page, ...]
    info: dict[str, str] = field(default_factory=dict)


# ---- entry points ----------------------------------------------------------------------------------------------


def pdf_document(data: bytes, item: str, max_pages: int = 2000) -> Document:
    """The PDF's text layer as markdown with its metadata. Runs in this process with no memory bound: for a PDF
    from outside, use :func:`pdf_document_bounded`. Every failure is an :class:`IngestError` naming ``item``."""
    if not is_pdf(data):
        raise IngestError(item, "not a PDF")
    return document_of(_read(data, item, max_pages), item)


def pdf_document_bounded(
    data: bytes, item: str, max_pages: int = 2000, memory_mb: int = 1024, timeout: float = 120
) -> Document:
    """:func:`pdf_document` in a child process whose address space is capped at ``memory_mb`` (interpreter
    included: it takes about 60 MB of it) and which is killed after ``timeout`` seconds, so that a decompression
    bomb or a pathological file costs one item, not the run."""
    if not is_pdf(data):
        raise IngestError(item, "not a PDF")
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "extractor.ingest.pdf", item, str(max_pages), str(memory_mb)]
    try:
        done = subprocess.run(command, input=data, capture_output=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise IngestError(item, f"took longer than {timeout:g} s") from None
    except OSError as exc:
        raise IngestError(item, f"could not start the PDF converter ({exc.strerror or exc})") from None
    return child_result(item, done.returncode, done.stdout, done.stderr, memory_mb)


def child_result(item: str, returncode: int, stdout: bytes, stderr: bytes, memory_mb: int) -> Document:
    """The child's answer as a document, or its failure as an :class:`IngestError`: a child that ran out of its
    address space or was killed by a signal was, all but always, inflating something too large."""
    too_large = f"too large when decompressed (more than {memory_mb} MB)"
    answer: Any = None
    if stdout.strip():
        try:
            answer = json.loads(stdout)
        except ValueError:
            answer = None
    if isinstance(answer, dict):
        if answer.get("memory"):
            raise IngestError(item, too_large)
        if isinstance(answer.get("error"), str):
            raise IngestError(item, answer["error"])
        if isinstance(answer.get("text"), str):
            try:
                return Document.model_validate(answer)
            except ValueError:  # pydantic's ValidationError is one
                pass
    if returncode in CHILD_MEMORY_SIGNALS or b"MemoryError" in stderr:
        raise IngestError(item, too_large)
    last = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit status {returncode}"]
    raise IngestError(item, f"the PDF converter failed ({last[0][:120]})")


# ---- reading (the only code that touches pdfminer) -------------------------------------------------------------


def _read(data: bytes, item: str, max_pages: int) -> Parsed:
    """Parse the PDF and lay out every page; pdfminer's exceptions become :class:`IngestError`. Pages are counted
    before any is laid out, so an oversized PDF is refused at once."""
    from pdfminer.converter import PDFPageAggregator
    from pdfminer.layout import LAParams
    from pdfminer.pdfdocument import PDFDocument, PDFEncryptionError, PDFPasswordIncorrect
    from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
    from pdfminer.pdfpage import PDFPage
    from pdfminer.pdfparser import PDFParser
    from pdfminer.psexceptions import PSEOF

    try:
        document = PDFDocument(PDFParser(BytesIO(data)))
        info = _info(document.info)
        pages = list(PDFPage.create_pages(document))
        if len(pages) > max_pages:
            raise IngestError(item, f"too many pages ({len(pages)}, at most {max_pages})")
        # boxes_flow=None: pdfminer's own box ordering is slow and column_order() replaces it; all_texts: text
        # inside a form XObject is laid out too, and kept when the form covers the page. char_margin=6: a
        # justified line's word gaps (over 1 em) stay inside the line; at pdfminer's 2 they split it into boxes,
        # scattering words into stray lines and fake table rows (11 of 20 paragraphs of a justified two-column
        # paper whole at 2, 20 of 20 at 6). Columns are written one after the other, so a wide margin does not
        # join them.
        manager = PDFResourceManager(caching=True)
        laparams = LAParams(boxes_flow=None, all_texts=True, char_margin=6.0)
        device = PDFPageAggregator(manager, laparams=laparams)
        interpreter = PDFPageInterpreter(manager, device)
        laid_out = []
        for page in pages:
            interpreter.process_page(page)
            laid_out.append(_page(device.get_result()))
    except (IngestError, MemoryError):
        raise
    except PDFPasswordIncorrect:
        raise IngestError(item, "encrypted PDF: it needs a password") from None
    except PDFEncryptionError as exc:
        raise IngestError(item, f"encrypted PDF: its encryption is not supported ({_reason(exc)})") from None
    except PSEOF:
        raise IngestError(item, "damaged PDF (it ends too early: truncated?)") from None
    except RecursionError:
        raise IngestError(item, "damaged PDF (objects nested too deep)") from None
    except Exception as exc:  # pdfminer raises many types, PDFSyntaxError to plain TypeError: all mean damage
        raise IngestError(item, f"damaged PDF ({_reason(exc)})") from None
    if not pages:
        raise IngestError(item, "damaged PDF (no pages)")
    return Parsed(pages=tuple(laid_out), info=info)


def _reason(exc: BaseException) -> str:
    """A short, one-line reason from a library exception, whose message may quote raw bytes."""
    text = " ".join(str(exc).split()).removesuffix(" - Is this really a PDF?").rstrip("!.")
    text = REASONS.get(text, text)
    if text[1:2].islower():
        text = text[0].lower() + text[1:]
    return (text[:80] + "...") if len(text) > 80 else (text or type(exc).__name__)


def _info(dictionaries: Iterable[dict[str, Any]]) -> dict[str, str]:
    """The Info dictionaries' text values (later trailers win); a broken entry is skipped, not fatal."""
    from pdfminer.pdftypes import resolve1
    from pdfminer.psparser import PSLiteral
    from pdfminer.utils import decode_text

    out: dict[str, str] = {}
    for dictionary in dictionaries:
        for key, raw in dictionary.items():
            try:
                value = resolve1(raw)
                if isinstance(value, bytes):
                    value = decode_text(value)
                elif isinstance(value, PSLiteral):
                    value = str(value.name)
            except Exception:  # an unresolvable reference in metadata must not cost the text
                continue
            if isinstance(value, str):
                text = " ".join(value.replace("\x00", "").split())
                if text:
                    out[str(key)] = text
    return out


def _page(layout: Any) -> Page:
    """One pdfminer page as plain records. Text boxes on the page are kept, and those inside a figure (form
    XObject) that covers half the page or more: smaller figures are plots, whose tick labels are noise."""
    from pdfminer.layout import LTFigure, LTTextBox

    area = max(layout.width * layout.height, 1.0)
    blocks: list[Block] = []
    rotated: list[Any] = []

    def walk(container: Any) -> None:
        for element in container:
            if isinstance(element, LTTextBox):
                lines = []
                for text_line in element:
                    line = _line(text_line, rotated)
                    if line is not None:
                        lines.append(line)
                if lines:
                    blocks.append(Block(tuple(lines)))
            elif isinstance(element, LTFigure) and element.width * element.height >= area / 2:
                walk(element)

    walk(layout)
    rotated.sort(key=lambda char: (round(char.x0), char.y0))
    x0, y0, x1, y1 = layout.bbox
    return Page(x0, y0, x1, y1, tuple(blocks), "".join(char.get_text() for char in rotated))


def _line(text_line: Any, rotated: list[Any]) -> Line | None:
    """A pdfminer text line as a :class:`Line` of its upright characters; turned ones go to ``rotated``."""
    from pdfminer.layout import LTAnno, LTChar

    cells: list[list[str]] = [[]]
    chars: list[Any] = []
    for item in text_line:
        if isinstance(item, LTChar):
            if not item.upright:
                rotated.append(item)
                continue
            if chars and item.x0 - chars[-1].x1 > CELL_GAP * item.size:
                cells.append([])
            cells[-1].append(item.get_text())
            chars.append(item)
        elif isinstance(item, LTAnno) and chars:
            cells[-1].append(item.get_text())
    texts = tuple(t for t in (" ".join("".join(c).translate(LIGATURES).split()) for c in cells) if t)
    if not texts:
        return None
    return Line(
        cells=texts,
        x0=min(c.x0 for c in chars),
        y0=min(c.y0 for c in chars),
        x1=max(c.x1 for c in chars),
        y1=max(c.y1 for c in chars),
        size=round(median(c.size for c in chars), 1),
    )


# ---- computing (plain records in, plain records out) -----------------------------------------------------------


def document_of(parsed: Parsed, item: str) -> Document:
    """The document of a read PDF: its markdown text and its metadata."""
    if not any(page.blocks for page in parsed.pages):
        raise IngestError(item, "no text layer (a scanned PDF?): OCR it first")
    pages = strip_running(parsed.pages)
    body = body_size(pages)
    levels = heading_levels(pages, body)
    words = document_words(pages)
    parts: list[tuple[int, str]] = []  # (heading level, text); level 0 is a paragraph, -1 a table
    first_page_headings: list[tuple[int, str]] = []
    for number, page in enumerate(pages):
        start = len(parts)
        for block in column_order(with_tables(page.blocks, page.width), page.x0 + page.width / 2):
            parts.extend(block_parts(block, body, levels, words))
        if number == 0:
            first_page_headings = [(level, text) for level, text in parts[start:] if level > 0]
    text = render(parts)
    if not text:
        raise IngestError(item, "no text layer (a scanned PDF?): OCR it first")
    if unreadable(text):
        raise IngestError(item, "no readable text layer (its fonts map no characters): OCR it first")
    first_page = "\n".join(line.text for block in parsed.pages[0].blocks for line in block.lines)
    stamp = first_page + "\n" + parsed.pages[0].rotated
    doi = find_doi(first_page) or find_doi(" ".join(parsed.info.values()))
    arxiv = find_arxiv(stamp)
    abstract = any(ABSTRACT.match(line.text) for block in pages[0].blocks for line in block.lines)
    return Document(
        text=text,
        title=usable_title(parsed.info.get("Title")) or title_from_headings(first_page_headings),
        authors=split_authors(parsed.info.get("Author", "")),
        date=pdf_date(parsed.info.get("CreationDate")),
        doi=doi,
        arxiv=arxiv,
        format="paper" if doi or arxiv or abstract else "report",
        kind="pdf",
    )


def _key(text: str) -> str:
    return re.sub(r"\d+", "#", " ".join(text.lower().split()))


def _in_band(line: Line, page: Page) -> bool:
    return line.y0 >= page.y1 - BAND * page.height or line.y1 <= page.y0 + BAND * page.height


def is_page_number(text: str) -> bool:
    """``3``, ``Page 3``, ``3 of 10``, ``- 3 -``, ``iv``."""
    return PAGE_NUMBER.fullmatch(text.strip()) is not None


def strip_running(pages: Sequence[Page]) -> tuple[Page, ...]:
    """The pages without running headers and footers: lines in the top or bottom band whose text, digits aside,
    recurs on half the pages (rounded down) or on three (a book's chapter titles), at least two, and page
    numbers in those bands."""
    seen: Counter[str] = Counter()
    for page in pages:
        seen.update({_key(line.text) for block in page.blocks for line in block.lines if _in_band(line, page)})
    need = max(2, min(len(pages) // 2, 3))
    running = {key for key, count in seen.items() if count >= need} if len(pages) > 1 else set()
    out = []
    for page in pages:
        blocks = []
        for block in page.blocks:
            kept = tuple(
                line
                for line in block.lines
                if not (_in_band(line, page) and (_key(line.text) in running or is_page_number(line.text)))
            )
            if kept:
                blocks.append(replace(block, lines=kept))
        out.append(replace(page, blocks=tuple(blocks)))
    return tuple(out)


def body_size(pages: Iterable[Page]) -> float:
    """The most common character size, weighted by characters: the size of the running text."""
    sizes: Counter[float] = Counter()
    for page in pages:
        for block in page.blocks:
            for line in block.lines:
                sizes[round(line.size * 2) / 2] += len(line.text)
    return sizes.most_common(1)[0][0] if sizes else 10.0


def _is_heading_size(size: float, body: float) -> bool:
    return size >= body * HEADING_RATIO


def heading_levels(pages: Iterable[Page], body: float) -> dict[float, int]:
    """Heading level by size: the largest heading size is ``#``, the next ``##``, every smaller one ``###``."""
    sizes = {
        round(line.size * 2) / 2
        for page in pages
        for block in page.blocks
        for line in block.lines
        if _is_heading_size(line.size, body) and any(ch.isalpha() for ch in line.text)
    }
    return {size: min(rank, 3) for rank, size in enumerate(sorted(sizes, reverse=True), 1)}


Slot = tuple[int, int]  # a line's place: (block index, line index)


def with_tables(blocks: Sequence[Block], page_width: float) -> list[Block]:
    """The blocks with table rows gathered into table blocks. pdfminer knows no tables: a row shows as cells on
    one baseline (one-line boxes, narrow boxes of short lines, runs of a line split by wide gaps). Two or more
    such rows of two or more cells, close above one another, make a table; other lines stay where they are."""
    lines = {
        (b, n): line
        for b, block in enumerate(blocks)
        if not block.table and _may_hold_cells(block, page_width)
        for n, line in enumerate(block.lines)
    }
    tables = _table_runs(_baseline_rows(lines), lines)
    if not tables:
        return list(blocks)
    taken = {slot for table in tables for row in table for slot in row}
    out = []
    for b, block in enumerate(blocks):
        kept = tuple(line for n, line in enumerate(block.lines) if (b, n) not in taken)
        if kept:
            out.append(replace(block, lines=kept))
    for table in tables:
        out.append(Block(tuple(_row_line([lines[slot] for slot in row]) for row in table), table=True))
    return out


def _may_hold_cells(block: Block, page_width: float) -> bool:
    if len(block.lines) == 1 or sum(len(line.cells) > 1 for line in block.lines) * 2 > len(block.lines):
        return True
    narrow = block.x1 - block.x0 <= NARROW * page_width
    return narrow and median(len(line.text.split()) for line in block.lines) <= CELL_WORDS


def _baseline_rows(lines: dict[Slot, Line]) -> list[list[Slot]]:
    """The lines grouped by baseline, top down, each row left to right."""
    rows: list[list[Slot]] = []
    for slot in sorted(lines, key=lambda s: (-lines[s].y0, lines[s].x0)):
        line = lines[slot]
        if rows:
            first = lines[rows[-1][0]]
            if abs(first.y0 - line.y0) <= 0.3 * max(first.size, line.size):
                rows[-1].append(slot)
                continue
        rows.append([slot])
    return rows


def _table_runs(rows: list[list[Slot]], lines: dict[Slot, Line]) -> list[list[list[Slot]]]:
    """Runs of rows less than three line heights apart that begin and end with a row of two or more cells and
    hold two such rows at least."""

    def cells(row: list[Slot]) -> int:
        return sum(len(lines[slot].cells) for slot in row)

    tables: list[list[list[Slot]]] = []
    run: list[list[Slot]] = []
    for row in [*rows, []]:
        close = False
        if row and run:
            above, here = lines[run[-1][0]], lines[row[0]]
            close = above.y0 - here.y0 <= 3 * max(above.size, here.size)
        if not close:
            while run and cells(run[-1]) < 2:
                run.pop()
            if sum(cells(r) >= 2 for r in run) >= 2:
                tables.append(run)
            run = []
        if row and (run or cells(row) >= 2):
            run.append(row)
    return tables


def _row_line(parts: list[Line]) -> Line:
    """One table row as one line whose cells are its parts' cells, left to right."""
    return Line(
        cells=tuple(cell for part in parts for cell in part.cells),
        x0=min(p.x0 for p in parts),
        y0=min(p.y0 for p in parts),
        x1=max(p.x1 for p in parts),
        y1=max(p.y1 for p in parts),
        size=max(p.size for p in parts),
    )


def column_order(blocks: Sequence[Block], mid: float, tol: float = 4, gap_factor: float = 1.6) -> list[Block]:
    """Reading order for one- and two-column pages. Blocks are visited top-down; one wholly left of the midline
    joins the left column, one wholly right the right column. The band gathered so far is emitted (left column
    top to bottom, then right) when a block crosses the midline (a title, a full-width figure or paragraph) or
    starts below everything in the band by more than ``gap_factor`` line heights (white space before a float).
    A one-column page, whose blocks cross the midline, keeps its top-down order."""
    ordered = sorted(blocks, key=lambda block: (-block.y1, block.x0))
    for i in range(len(ordered) - 1):  # a label or bullet a little lower than its line's top still comes first
        here, after = ordered[i], ordered[i + 1]
        if after.x1 <= here.x0 and here.y1 - after.y1 < 0.5 * after.lines[0].size:
            ordered[i], ordered[i + 1] = after, here
    heights = [line.y1 - line.y0 for block in ordered for line in block.lines]
    gap = gap_factor * (median(heights) if heights else 10)
    out: list[Block] = []
    left: list[Block] = []
    right: list[Block] = []
    bottom = float("inf")
    for block in ordered:
        spans = block.x0 < mid - tol and block.x1 > mid + tol
        if (left or right) and (spans or block.y1 < bottom - gap):
            out += left + right
            left, right, bottom = [], [], float("inf")
        if spans:
            out.append(block)
            continue
        (left if block.x1 <= mid + tol else right).append(block)
        bottom = min(bottom, block.y0)
    return out + left + right


def paragraphs(lines: Sequence[Line]) -> list[list[Line]]:
    """A box's lines split where a paragraph visibly starts: a line indented by an em or more after a line that
    stops short of the right edge, in a box whose lines mostly start flush left (not a centred one)."""
    if len(lines) < 3:
        return [list(lines)]
    left = min(line.x0 for line in lines)
    right = max(line.x1 for line in lines)
    flush = sum(line.x0 - left < 0.3 * line.size for line in lines)
    out: list[list[Line]] = [[lines[0]]]
    for prev, line in zip(lines, lines[1:], strict=False):
        indented = line.size <= line.x0 - left <= 4 * line.size
        short = right - prev.x1 >= line.size and prev.x0 - left < 0.3 * prev.size
        if flush * 2 > len(lines) and indented and short:
            out.append([line])
        else:
            out[-1].append(line)
    return out


def join_lines(texts: Iterable[str], words: frozenset[str] = frozenset()) -> str:
    """Lines into one run of text. A word hyphenated at a line's end, the next line going on in lower case, is
    joined (``extrac-`` + ``tion``) unless the hyphen is the word's own: the document spells the word with it
    elsewhere (``words``), or not without it and the word has hyphens already (``state-of-the-`` + ``art``)."""
    out = ""
    for text in texts:
        text = text.strip()
        if not text:
            continue
        if out.endswith(HYPHENS) and len(out) > 1 and out[-2].isalpha() and text[0].islower():
            out = out[:-1] + ("-" if _hard_hyphen(out[:-1], text, words) else "") + text
        else:
            out = f"{out} {text}" if out else text
    return out


_WORD_EDGE = ".,;:!?()[]{}\"'“”‘’"


def _hard_hyphen(before: str, after: str, words: frozenset[str]) -> bool:
    head = before.rsplit(maxsplit=1)[-1].strip(_WORD_EDGE).lower()
    tail = after.split(maxsplit=1)[0].strip(_WORD_EDGE).lower()
    if f"{head}-{tail}" in words:
        return True
    if f"{head}{tail}" in words:
        return False
    return "-" in head


def document_words(pages: Sequence[Page]) -> frozenset[str]:
    """Every word the document spells whole inside a line (lower case, hyphens kept): what tells a word's
    own hyphen from one that only breaks it across lines."""
    found: set[str] = set()
    for page in pages:
        for block in page.blocks:
            for line in block.lines:
                for word in line.text.split()[:-1]:  # a line's last word may be half of one
                    found.add(word.strip(_WORD_EDGE).lower())
    return frozenset(found)


def block_parts(
    block: Block, body: float, levels: dict[float, int], words: frozenset[str] = frozenset()
) -> list[tuple[int, str]]:
    """A block as (level, text) parts: a table (level -1, a line per row, cells joined by `` | ``), headings
    (1-3: runs of heading-size lines of one size) and paragraphs (0)."""
    if block.table:
        return [(-1, "\n".join(" | ".join(line.cells) for line in block.lines))]
    out: list[tuple[int, str]] = []
    for paragraph in paragraphs(block.lines):
        runs: list[tuple[int, list[str]]] = []
        for line in paragraph:
            size = round(line.size * 2) / 2
            level = levels.get(size, 0) if _is_heading_size(line.size, body) else 0
            if runs and runs[-1][0] == level:
                runs[-1][1].append(line.text)
            else:
                runs.append((level, [line.text]))
        for level, texts in runs:
            text = join_lines(texts, words)
            if level and len(text.split()) > HEADING_MAX_WORDS:
                level = 0
            out.append((level, text))
    return out


def render(parts: Sequence[tuple[int, str]]) -> str:
    """Markdown from (level, text) parts. A paragraph that stops mid-sentence and one that goes on in lower case
    are one paragraph broken by a column or page; a lone bullet goes with the item after it."""
    chunks: list[tuple[int, str]] = []
    for level, text in parts:
        if level == 0 and chunks and chunks[-1][0] == 0:
            prev = chunks[-1][1]
            if prev in BULLETS:  # a bullet pdfminer boxed apart from its item
                chunks[-1] = (0, f"{prev} {text}")
                continue
            if text[:1].islower() and (prev.endswith(HYPHENS) or not prev.endswith(SENTENCE_END)):
                chunks[-1] = (0, join_lines([prev, text]))
                continue
        chunks.append((level, text))
    blocks = []
    for level, text in chunks:
        if level > 0:
            blocks.append("#" * level + " " + text.lstrip("#").strip())
        else:
            blocks.append("\\" + text if text.startswith(("#", ">")) else text)
    return "\n\n".join(blocks).strip()


def unreadable(text: str) -> bool:
    """Text made mostly of ``(cid:N)`` placeholders: fonts without a character map, as good as no text."""
    placeholders = sum(len(m) for m in re.findall(r"\(cid:\d+\)", text))
    return placeholders * 2 > len(text)


def usable_title(title: str | None) -> str | None:
    """The Info title unless it is a placeholder or a file name, as word processors leave it."""
    if not title:
        return None
    title = re.sub(r"^Microsoft (Word|PowerPoint) - ", "", title).strip()
    if not title or title.lower() in PLACEHOLDERS or TITLE_TAIL.search(title):
        return None
    return title


def title_from_headings(headings: Sequence[tuple[int, str]]) -> str | None:
    """The first of page 1's largest headings, unless it is the word "Abstract"."""
    candidates = [(level, text) for level, text in headings if not ABSTRACT.fullmatch(text.strip())]
    if not candidates:
        return None
    top = min(level for level, _ in candidates)
    return next(text for level, text in candidates if level == top)


def split_authors(value: str) -> list[str]:
    """``A; B``, ``A and B``, and ``A B, C D`` into names; ``Lovelace, A.`` stays one name; a tool's placeholder
    (reportlab's "anonymous") is no name."""
    value = " ".join(value.split())
    if not value:
        return []
    names = [n for n in re.split(r"\s*;\s*|\s+and\s+|\s*&\s*", value) if n.strip(" ,")]
    if len(names) == 1 and "," in value:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if all(len(p.split()) >= 2 for p in parts):
            names = parts
    return [n.strip(" ,") for n in names if n.strip(" ,").lower() not in PLACEHOLDERS]


def pdf_date(value: str | None) -> str | None:
    """``D:20240315120000Z`` -> ``2024-03-15``; an unknown month or day is ``00``; nonsense is None."""
    match = PDF_DATE.match(value.strip()) if value else None
    if match is None:
        return None
    year, month, day = match.group(1), match.group(2), match.group(3)
    if not 1000 <= int(year) <= 2999:
        return None
    month = month if month and 1 <= int(month) <= 12 else "00"
    day = day if day and month != "00" and calendar_day(int(year), int(month), int(day)) else "00"
    return f"{year}-{month}-{day}"


def find_doi(text: str) -> str | None:
    """The one DOI the text names, without the punctuation that ends the sentence around it; None when it names
    several (a paper's own beside a cited dataset's: which is which is a guess, and a wrong one would refuse
    another paper as a duplicate)."""
    found = {_trimmed_doi(match.group(0)) for match in DOI.finditer(text)} - {None}
    return found.pop() if len(found) == 1 else None


def _trimmed_doi(doi: str) -> str | None:
    while True:
        trimmed = doi.rstrip(".,;:'")
        for close, open_ in ((")", "("), ("]", "[")):
            if trimmed.endswith(close) and trimmed.count(close) > trimmed.count(open_):
                trimmed = trimmed[:-1]
        if trimmed == doi:
            break
        doi = trimmed
    return doi if not doi.endswith("/") else None


def find_arxiv(text: str) -> str | None:
    """The arXiv identifier (no version) named as ``arXiv:2401.00001v2``."""
    match = ARXIV.search(text)
    return match.group(1) if match else None


# ---- the child process of pdf_document_bounded -----------------------------------------------------------------


def _limit_memory(memory_mb: int) -> None:
    """Cap this process's address space: a stream that inflates past it raises MemoryError, not the OOM killer."""
    try:
        import resource
    except ImportError:  # not POSIX: no cap, the timeout still holds
        return
    limit = memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _child(argv: Sequence[str], data: bytes) -> str:
    """The child's answer as JSON: the document, ``{"error": problem}`` or ``{"memory": true}``."""
    item, max_pages = argv[0], int(argv[1])
    try:
        return pdf_document(data, item, max_pages).model_dump_json()
    except IngestError as exc:
        return json.dumps({"error": exc.problem})
    except MemoryError:
        return json.dumps({"memory": True})


def _main(argv: Sequence[str]) -> int:
    """``python -m extractor.ingest.pdf ITEM MAX_PAGES MEMORY_MB`` with the PDF on stdin."""
    _limit_memory(int(argv[2]))
    data = sys.stdin.buffer.read()
    sys.stdout.write(_child(argv, data))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
