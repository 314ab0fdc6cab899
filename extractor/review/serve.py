"""``review serve``: the review pages on 127.0.0.1, and the decisions a reviewer takes from them.

GET ``/`` lists the pending branches, ``/review/<slug>`` shows one; POST
``/review/<slug>/accept|reject|retry`` decides, with the session's token, the
same Host check, a bounded form body, and the one decision path
(:mod:`extractor.review.decide`). Pages are built afresh for each request.
"""

from __future__ import annotations

import hmac
import http.server
import importlib.resources
import secrets
import sys
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from extractor.commit.message import BranchNameError
from extractor.core.errors import ExtractorError
from extractor.core.redact import scrub
from extractor.core.settings import Settings
from extractor.review.branches import ReviewError, pending
from extractor.review.decide import Decision, accept_branch, reject_branch
from extractor.review.page import (
    ACTIONS,
    MAX_FORM_BYTES,
    SERVED_CSP,
    Served,
    gather,
    index_entries,
    render_index,
    render_not_found,
    render_page,
    review_href,
)


def _refused(status: int, message: str) -> Reply:
    return Reply(status, render_not_found(message, heading="Refused"))


class Reply(NamedTuple):
    status: int
    body: str
    content_type: str = "text/html; charset=utf-8"
    location: str | None = None


class Request(NamedTuple):
    method: str  # GET (HEAD answers as GET) or POST
    path: str
    query: dict[str, str]
    form: dict[str, str]  # a POST's fields, the first value of each


def _done_message(query: dict[str, str]) -> str | None:
    """What the last decision did, from the redirect's query; only this server's own words are shown."""
    words = {"accepted": "accepted", "rejected": "rejected", "retry": "rejected; the source is due again"}
    action, branch = query.get("done"), query.get("branch", "")
    return f"{branch}: {words[action]}" if action in words and branch else None


def _static(name: str) -> str:
    return importlib.resources.files("extractor.review").joinpath("static", name).read_text(encoding="utf-8")


def make_server(kb: Path, settings: Settings, port: int = 0) -> http.server.ThreadingHTTPServer:
    """A server on 127.0.0.1: ``/`` (the index), ``/review/<slug>`` and the decisions posted from it,
    ``/review/<slug>/accept|reject|retry``; anything else is a 404.

    Pages are built afresh for each request, so a reviewer's edits on a branch show on reload. Requests
    whose Host is not this loopback address are refused (no DNS rebinding), and a decision needs the token
    made when the server starts, which only its own pages carry (no cross-site request forgery).
    """
    building = threading.Lock()  # one page or decision at a time: git handles are per process, not per thread
    token = secrets.token_urlsafe(32)

    def neighbours(slug: str) -> tuple[str | None, str | None]:
        slugs = [item.slug for item in pending(kb, settings)]
        if slug not in slugs:
            return None, slugs[0] if slugs else None
        at = slugs.index(slug)
        return (slugs[at - 1] if at > 0 else None), (slugs[at + 1] if at + 1 < len(slugs) else None)

    def page_reply(slug: str, status: int = 200, done: str | None = None, error: str | None = None) -> Reply:
        previous, following = neighbours(slug)
        served = Served(
            token=token,
            previous=review_href(previous) if previous else None,
            next=review_href(following) if following else None,
            done=done,
            error=error,
        )
        return Reply(status, render_page(gather(kb, slug, settings), served))

    def decide(slug: str, action: str, form: dict[str, str]) -> Reply:
        if not hmac.compare_digest(form.get("token", "").encode(), token.encode()):
            return _refused(403, "this form is out of date or not from this server: reload the page")
        reason = form.get("reason", "").strip()
        if action == "reject" and not reason:
            return page_reply(slug, 400, error="a rejection needs a reason")
        before = [item.slug for item in pending(kb, settings)]
        try:
            decision: Decision = (
                # The commit the page showed: one made on the branch since is not accepted unseen.
                accept_branch(kb, slug, settings, expected_tip=form.get("commit") or None)
                if action == "accept"
                else reject_branch(kb, slug, settings, reason or None, retry=action == "retry")
            )
        except ExtractorError as exc:
            return page_reply(slug, 409, error=scrub(str(exc)))
        remaining = [item.slug for item in pending(kb, settings)]
        later = before[before.index(slug) + 1 :] if slug in before else []
        following = next((other for other in [*later, *remaining] if other in remaining), None)
        query = urllib.parse.urlencode({"done": decision.action, "branch": decision.branch})
        return Reply(
            303,
            render_not_found(f"{decision.branch}: {decision.action}", heading="Done"),
            location=(review_href(following) if following else "/") + "?" + query,
        )

    def respond(request: Request) -> Reply:
        path = request.path
        if request.method == "POST":
            slug, _, action = path.removeprefix("/review/").rpartition("/")
            if not path.startswith("/review/") or not slug or action not in ACTIONS:
                return Reply(404, render_not_found("no such page"))
            try:
                with building:
                    return decide(urllib.parse.unquote(slug), action, request.form)
            except (ReviewError, BranchNameError) as exc:
                return Reply(404, render_not_found(str(exc)))
        if path == "/static/review.js":
            return Reply(200, _static("review.js"), "text/javascript; charset=utf-8")
        done = _done_message(request.query)
        if path == "/":
            with building:
                entries = index_entries(kb, settings)
            served = Served(token=token, next=entries[0].href if entries else None, done=done)
            return Reply(200, render_index(entries, served))
        if path.startswith("/review/"):
            slug = urllib.parse.unquote(path.removeprefix("/review/"))
            try:
                with building:
                    return page_reply(slug, done=done)
            except (ReviewError, BranchNameError) as exc:  # no such branch, or not a branch's name at all
                return Reply(404, render_not_found(str(exc), Served(token=token, done=done)))
        return Reply(404, render_not_found("no such page"))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _handler(respond))
    server.daemon_threads = True
    return server


def _handler(respond: Callable[[Request], Reply]) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "extractor-review"
        sys_version = ""

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self._answer("GET", with_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer("GET", with_body=False)

        def do_POST(self) -> None:  # noqa: N802
            self._answer("POST", with_body=True)

        def _refusal(self, method: str) -> Reply | None:
            """Why this request is not served, if it is not: a foreign Host or Origin, or a body that is no
            decision's form."""
            host, port = _address(self.server.server_address)
            allowed = {f"{host}:{port}", f"localhost:{port}"}
            if self.headers.get("Host", "") not in allowed:
                return _refused(403, "this server answers only on its loopback address")
            if method != "POST":
                return None
            origin = self.headers.get("Origin")
            if origin is not None and origin not in {f"http://{name}" for name in allowed}:
                return _refused(403, "a decision is taken only from this server's own pages")
            kind = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if kind != "application/x-www-form-urlencoded":
                return _refused(415, "a decision is posted as a form")
            length = self.headers.get("Content-Length", "")
            if not length.isdigit():
                return _refused(411, "a decision's form needs its length")
            if int(length) > MAX_FORM_BYTES:
                return _refused(413, "the form is too large")
            return None

        def _form(self) -> dict[str, str]:
            data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            fields = urllib.parse.parse_qs(data.decode("utf-8", errors="replace"), keep_blank_values=True)
            return {name: values[0] for name, values in fields.items()}

        def _answer(self, method: str, with_body: bool) -> None:
            reply = self._refusal(method)
            if reply is None:
                parts = urllib.parse.urlsplit(self.path)
                query = {name: values[0] for name, values in urllib.parse.parse_qs(parts.query).items()}
                try:
                    form = self._form() if method == "POST" else {}
                    reply = respond(Request(method, parts.path, query, form))
                except Exception as exc:  # noqa: BLE001 - the reviewer sees why, the server goes on
                    reply = Reply(500, render_not_found(scrub(f"cannot build the page: {type(exc).__name__}: {exc}")))
            else:
                self.close_connection = True  # an unread body is not left on the connection
            data = reply.body.encode("utf-8")
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            if reply.location:
                self.send_header("Location", reply.location)
            self.send_header("Content-Security-Policy", SERVED_CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("X-Frame-Options", "DENY")
            # Nothing to other sites; the pages' own POSTs carry their Origin (no-referrer would make it "null").
            self.send_header("Referrer-Policy", "same-origin")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if with_body:
                self.wfile.write(data)

    return Handler


def _address(address: Any) -> tuple[str, int]:
    """Host and port of a bound TCP server (typed loosely by the standard library, which also serves sockets)."""
    return str(address[0]), int(address[1])


def serve(kb: Path, settings: Settings, port: int = 0, slug: str | None = None) -> None:
    """Serve the review pages until Ctrl-C (or SIGTERM); prints the address first."""
    server = make_server(kb, settings, port)
    host, bound = _address(server.server_address)
    root = f"http://{host}:{bound}/"
    print(f"serving the review pages at {root} (Ctrl-C stops)", flush=True)
    if slug:
        print(f"{root}review/{urllib.parse.quote(slug.removeprefix('extract/'), safe='')}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr, flush=True)
    finally:
        server.server_close()
