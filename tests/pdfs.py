"""PDFs made for tests and benchmarks with reportlab, each returned as bytes: a paper laid out like a real one
(title, abstract, DOI, two-column page, table, running header and page numbers, a hyphenated line break), and
the broken ones a converter must refuse cleanly (encrypted, scanned, a decompression bomb)."""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Sequence

from reportlab.lib import pdfencrypt
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

WIDTH, HEIGHT = A4  # 595 x 842 pt
MARGIN = 56
GUTTER = 24
COLUMN = (WIDTH - 2 * MARGIN - GUTTER) / 2
LEADING = 13
BODY = ("Times-Roman", 10)

TITLE = "Column-Aware Extraction of Text from Papers"
AUTHORS = "Ada Lovelace; Charles Babbage"
DOI = "10.1234/fixture.5678"
ARXIV = "2403.01234"
HEADER = "Fixture Journal of Document Engineering 12 (2024)"

# Each paragraph is a list of the lines it is set in; the tests look for the sentences whole.
ABSTRACT = [
    "We study how a converter keeps the reading order of a paper when its pages are set in two columns,",
    "and show that simple geometry recovers the order of paragraphs on every page we tried.",
]
INTRO = [
    "Papers are published as PDF files, and the text extrac-",
    "tion pipeline must cope with columns, running headers, page numbers and tables in them.",
    "This introduction is set in one column across the whole width of the page, as a preface would be.",
]
LEFT = [
    [
        "The left column begins here and its",
        "first paragraph goes on to a second line.",
        "It ends in this third line of the column.",
    ],
    [
        "A second paragraph in the left column",
        "explains the method in a few more words.",
    ],
    [
        "The left column ends here, at the bottom",
        "of the page, before the right one starts.",
    ],
]
RIGHT = [
    [
        "The right column begins here, level with",
        "the top of the left column on this page.",
    ],
    [
        "The right column ends here, after its own",
        "subsection heading and one more sentence.",
    ],
]
RESULTS = [
    "The scores of the two models are in the table below; the larger model does better on every task.",
]
TABLE = [("Model", "Params", "Score"), ("Base", "110M", "81.2"), ("Large", "340M", "84.6")]
CONCLUSION = [
    "We conclude that geometry alone orders the text of these pages correctly.",
]
FILLER = ["filler gives the layout analysis", "as many lines to group as a paper"]


def _header_footer(c: canvas.Canvas, number: int) -> None:
    c.setFont("Helvetica-Oblique", 8)
    c.drawString(MARGIN, HEIGHT - 30, HEADER)
    c.drawRightString(WIDTH - MARGIN, HEIGHT - 30, f"Preprint {number + 1000}")
    c.setFont("Helvetica", 9)
    c.drawCentredString(WIDTH / 2, 28, str(number))


def _lines(c: canvas.Canvas, x: float, y: float, lines: list[str], font: tuple[str, int] = BODY) -> float:
    """Set ``lines`` from ``y`` down; the y below the last line."""
    c.setFont(*font)
    for line in lines:
        c.drawString(x, y, line)
        y -= LEADING
    return y


def _columns(c: canvas.Canvas, y: float, left: list[list[str]], right: list[list[str]], sub: str = "") -> float:
    """Two columns of paragraphs from ``y`` down, a paragraph gap between paragraphs; ``sub`` is a subsection
    heading set in the right column between its paragraphs."""
    yl = y
    for paragraph in left:
        yl = _lines(c, MARGIN, yl, paragraph) - LEADING * 0.8
    yr = y
    x = MARGIN + COLUMN + GUTTER
    for i, paragraph in enumerate(right):
        if i and sub:
            yr = _lines(c, x, yr - 4, [sub], ("Helvetica-Bold", 12)) - 6
        yr = _lines(c, x, yr, paragraph) - LEADING * 0.8
    return min(yl, yr)


def _table(c: canvas.Canvas, x: float, y: float, rows: Sequence[Sequence[str]]) -> float:
    """A ruled table: cells 90 pt apart, one rule under each row."""
    c.setFont("Helvetica", 9)
    for r, row in enumerate(rows):
        for k, cell in enumerate(row):
            c.drawString(x + 10 + k * 90, y - r * 16, cell)
        c.line(x, y - r * 16 - 4, x + 280, y - r * 16 - 4)
    return y - len(rows) * 16 - 10


def _paper_pages(c: canvas.Canvas, pages: int) -> None:
    for number in range(1, pages + 1):
        _header_footer(c, number)
        y = HEIGHT - 80
        if number == 1:
            c.setFont("Helvetica-Bold", 20)
            c.drawCentredString(WIDTH / 2, y, TITLE)
            c.setFont("Helvetica", 11)
            c.drawCentredString(WIDTH / 2, y - 24, "Ada Lovelace and Charles Babbage")
            c.saveState()  # the arXiv stamp, turned in the left margin as arXiv sets it
            c.translate(30, 300)
            c.rotate(90)
            c.setFont("Times-Roman", 14)
            c.drawString(0, 0, f"arXiv:{ARXIV}v2 [cs.DL] 15 Mar 2024")
            c.restoreState()
            y = _lines(c, MARGIN, y - 64, ["Abstract"], ("Helvetica-Bold", 14)) - 4
            y = _lines(c, MARGIN, y, ABSTRACT) - 4
            y = _lines(c, MARGIN, y, [f"DOI: https://doi.org/{DOI}."]) - 20
            y = _lines(c, MARGIN, y, ["1 Introduction"], ("Helvetica-Bold", 14)) - 4
            _lines(c, MARGIN, y, INTRO)
        elif number == 2:
            y = _lines(c, MARGIN, y, ["2 Method"], ("Helvetica-Bold", 14)) - 6
            _columns(c, y, LEFT, RIGHT, sub="2.1 Details")
        elif number == 3:
            y = _lines(c, MARGIN, y, ["3 Results"], ("Helvetica-Bold", 14)) - 4
            y = _lines(c, MARGIN, y, RESULTS) - 24
            y = _table(c, MARGIN, y, TABLE)
            y = _lines(c, MARGIN, y, ["Table 1: Scores by model."], ("Helvetica", 9)) - 24
            _lines(c, MARGIN, y, CONCLUSION)
        else:  # benchmark pages: a heading and two full columns
            y = _lines(c, MARGIN, y, [f"{number} Section"], ("Helvetica-Bold", 14)) - 6
            left = [[f"Left {i} on page {number}: {FILLER[i % 2]}" for i in range(k, k + 6)] for k in (0, 6)]
            right = [[f"Right {i} on page {number}: {FILLER[i % 2]}" for i in range(k, k + 6)] for k in (0, 6)]
            while y > 200:
                y = _columns(c, y, left, right)
        c.showPage()


def paper_pdf(pages: int = 3, encrypt: pdfencrypt.StandardEncryption | None = None) -> bytes:
    """The paper: page 1 title, abstract, DOI and a one-column introduction with a hyphenated break; page 2 two
    columns with a subsection heading in the right one; page 3 a table; further pages two columns of filler.
    Every page has the running header and its page number; Info holds title, authors and 2024-03-15."""
    buffer = io.BytesIO()
    c = canvas.Canvas(buffer, pagesize=A4, encrypt=encrypt)
    c.setTitle(TITLE)
    c.setAuthor(AUTHORS)
    c.setDateFormatter(lambda *_: "D:20240315093000+01'00'")
    _paper_pages(c, pages)
    c.save()
    return buffer.getvalue()


def encrypted_pdf(user_password: str = "secret") -> bytes:
    """The paper encrypted with RC4-128; with an empty user password it opens without one."""
    encryption = pdfencrypt.StandardEncryption(user_password, ownerPassword="owner", canCopy=0, strength=128)
    return paper_pdf(encrypt=encryption)


def plain_pdf(pages: int = 1, title: str | None = None) -> bytes:
    """Pages with a heading and one line each; ``title`` None leaves reportlab's placeholder "untitled"."""
    buffer = io.BytesIO()
    c = canvas.Canvas(buffer, pagesize=A4)
    if title is not None:
        c.setTitle(title)
    for number in range(1, pages + 1):
        _lines(c, MARGIN, HEIGHT - 100, [f"Plain Report Number {number}"], ("Helvetica-Bold", 18))
        _lines(c, MARGIN, HEIGHT - 140, [f"This is the only sentence of page {number}."])
        c.showPage()
    c.save()
    return buffer.getvalue()


def image_only_pdf() -> bytes:
    """A page of filled shapes and no text at all, as a scan looks to a text extractor."""
    buffer = io.BytesIO()
    c = canvas.Canvas(buffer, pagesize=A4)
    c.setTitle("Scanned")
    for row in range(40):
        c.rect(MARGIN, HEIGHT - 80 - row * 18, WIDTH - 2 * MARGIN - (row % 5) * 40, 9, stroke=0, fill=1)
    c.showPage()
    c.save()
    return buffer.getvalue()


def _zeros_deflated(size: int, chunk: int = 1 << 20) -> bytes:
    """A zlib stream of ``size`` zero bytes, made without compressing them all: after a full flush deflate
    starts afresh, so every further megabyte compresses to the same bytes, and only the Adler-32 sum (of the
    whole) needs all of them."""
    zeros = bytes(chunk)
    compressor = zlib.compressobj(9)
    head = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    unit = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush()[:-4]  # the final empty block; its checksum covers 2 chunks only
    count = size // chunk
    adler = 1
    for _ in range(count):
        adler = zlib.adler32(zeros, adler)
    return head + unit * (count - 1) + tail + struct.pack(">I", adler)


def bomb_pdf(size: int = 1 << 30) -> bytes:
    """A one-page PDF, written by hand, whose content stream inflates to ``size`` zero bytes (1 GiB: about 1 MB
    of PDF)."""
    stream = _zeros_deflated(size)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def tight_table_pdf() -> bytes:
    """One page: a paragraph, a table set tight (rows 11 pt apart, so pdfminer boxes each column's cells
    together) and a paragraph after it."""
    buffer = io.BytesIO()
    c = canvas.Canvas(buffer, pagesize=A4)
    c.setTitle("Tight table")
    _lines(c, MARGIN, 760, ["A paragraph before the table, set across the whole width of the page so that it spans."])
    c.setFont("Helvetica", 9)
    for r, row in enumerate([*TABLE, ("Huge", "1.2B", "88.0")]):
        for k, cell in enumerate(row):
            c.drawString(MARGIN + 10 + k * 60, 730 - r * 11, cell)
    _lines(c, MARGIN, 660, ["A paragraph after the table, set across the whole width of the page so that it spans."])
    c.showPage()
    c.save()
    return buffer.getvalue()


def form_pdf() -> bytes:
    """One page whose text is all inside a form XObject covering the page, plus a small form (a plot) holding a
    tick label."""
    buffer = io.BytesIO()
    c = canvas.Canvas(buffer, pagesize=A4)
    c.beginForm("page")
    _lines(c, MARGIN, 700, ["This sentence is drawn inside a form that covers the whole page."])
    c.endForm()
    c.beginForm("plot", 0, 0, 100, 100)
    c.setFont("Helvetica", 8)
    c.drawString(10, 10, "0.5 tick label")
    c.endForm()
    c.doForm("page")
    c.saveState()
    c.translate(300, 300)
    c.doForm("plot")
    c.restoreState()
    c.showPage()
    c.save()
    return buffer.getvalue()


def justified_paragraphs(count: int = 12) -> list[str]:
    """Paragraphs of varied length from a small vocabulary: set justified, their lines get wide word gaps."""
    chooser = random.Random(3)
    words = ("energy storage grid battery capacity demand utility market price frequency regulation lithium cells "
             "degradation cycle revenue arbitrage dispatch forecast").split()  # fmt: skip
    return [
        f"Paragraph {n} begins here. "
        + " ".join(chooser.choice(words) for _ in range(chooser.randint(40, 120)))
        + ". It ends with a full stop."
        for n in range(count)
    ]


def justified_pdf(paragraphs: list[str]) -> bytes:
    """Two justified columns (18 pt apart) of ``paragraphs``, as most journals set a paper."""
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate, Paragraph

    out = io.BytesIO()
    body = ParagraphStyle("body", fontName="Times-Roman", fontSize=10, leading=12, alignment=4, firstLineIndent=12)
    doc = BaseDocTemplate(out, pagesize=A4, title="Merchant Storage Revenues", author="John Smith")
    column = (WIDTH - 144 - 18) / 2
    frames = [
        Frame(72, 60, column, HEIGHT - 120, id="left"),
        Frame(72 + column + 18, 60, column, HEIGHT - 120, id="right"),
    ]
    doc.addPageTemplates([PageTemplate(id="page", frames=frames)])
    doc.build([Paragraph(text, body) for text in paragraphs])
    return out.getvalue()
