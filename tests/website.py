"""A website on 127.0.0.1 for ingest's tests: pages, feeds, redirects and hostile answers, scripted by path."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.loopback import LoopbackServer


@dataclass
class Page:
    body: bytes | Callable[[], bytes] = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    chunks: int = 1  # sent in this many pieces, without a Content-Length when more than one


class Website(LoopbackServer):
    """Serves ``pages`` by path; an unknown path is a 404. ``hits`` counts requests per path."""

    def __init__(self, pages: dict[str, Page] | None = None) -> None:
        self.pages: dict[str, Page] = dict(pages or {})
        self.hits: dict[str, int] = {}
        self.delay = 0.0  # seconds between the chunks of a chunked answer
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                site.hits[self.path] = site.hits.get(self.path, 0) + 1
                page = site.pages.get(self.path)
                if page is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "9")
                    self.end_headers()
                    self.wfile.write(b"not found")
                    return
                body = page.body() if callable(page.body) else page.body
                self.send_response(page.status)
                self.send_header("Content-Type", page.content_type)
                for name, value in page.headers.items():
                    self.send_header(name, value)
                if page.chunks == 1:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                step = max(1, len(body) // page.chunks)
                for start in range(0, len(body), step):
                    piece = body[start : start + step]
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.flush()
                    time.sleep(site.delay)
                self.wfile.write(b"0\r\n\r\n")

            def log_message(self, *args: object) -> None:
                pass

        self.serve(Handler)

    @property
    def root(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.root + path


# A blog post with a menu, a footer and metadata: the page most ingest tests serve at /columns.
ARTICLE = """<!doctype html><html lang="en"><head>
<meta charset="utf-8"><title>Why Columns Break PDFs | Example Blog</title>
<meta name="author" content="Jane Doe">
<meta property="og:title" content="Why Columns Break PDFs">
<meta property="og:site_name" content="Example Blog">
<meta property="article:published_time" content="2024-03-05T10:00:00Z">
</head><body>
<nav><a href="/">Home</a> <a href="/about">About us and our newsletter</a></nav>
<article>
<h1>Why Columns Break PDFs</h1>
<p>Extracting text from two-column research papers is hard because the content stream order is not the
reading order of the page, and every publisher lays pages out differently.</p>
<h2>Layout analysis</h2>
<p>Layout analysis groups characters into lines and lines into boxes, then orders the boxes by position on
the page; no single setting suits every document a research group reads.</p>
<p>In conclusion, test on real papers from several publishers before trusting any single configuration.</p>
</article>
<footer>Copyright 2024 Example Blog. Subscribe to our newsletter for weekly updates!</footer>
</body></html>"""
