"""PDF ingest speed: pages per second of ``pdf_document`` on a generated two-column paper, and the wall time of
``pdf_document_bounded`` (the same work in a capped child process, start-up included) on it.

Run: .venv/bin/python benchmarks/ingest_pdf.py [--pages 100] [--memory-mb 1024]

The PDF comes from tests/pdfs.py (reportlab): page 1 title and abstract, page 2 two columns, page 3 a table,
every further page a heading and two full columns of about 5,000 characters, with a running header and page
number on each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extractor.ingest.pdf import pdf_document, pdf_document_bounded  # noqa: E402
from tests.pdfs import paper_pdf  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=100, help="pages in the generated PDF (default 100)")
    parser.add_argument("--memory-mb", type=int, default=1024, help="the bounded child's address-space cap")
    args = parser.parse_args()

    start = time.perf_counter()
    data = paper_pdf(pages=args.pages)
    made = time.perf_counter() - start
    print(f"generated {args.pages} pages, {len(data) / 1024:.0f} KiB, in {made:.2f} s")

    start = time.perf_counter()
    document = pdf_document(data, "bench.pdf", max_pages=args.pages)
    in_process = time.perf_counter() - start
    print(
        f"pdf_document:         {in_process:6.2f} s  {args.pages / in_process:6.1f} pages/s  "
        f"{len(document.text):,} characters of markdown"
    )

    start = time.perf_counter()
    bounded = pdf_document_bounded(data, "bench.pdf", max_pages=args.pages, memory_mb=args.memory_mb)
    child = time.perf_counter() - start
    print(f"pdf_document_bounded: {child:6.2f} s  {args.pages / child:6.1f} pages/s  (child start-up included)")
    if bounded != document:
        print("the bounded conversion differs from the in-process one", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
