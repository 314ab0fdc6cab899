"""``review serve``'s decisions over HTTP, without a browser: the token, the Host and Origin checks, what a
form may be, and that a refused or failed decision leaves main and the branch as they were."""

from __future__ import annotations

import re
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from extractor.cli.main import main
from extractor.core.settings import Settings
from extractor.review.page import MAX_FORM_BYTES
from extractor.review.serve import make_server
from tests.conftest import git
from tests.fakeopenai import FakeOpenAI, answer
from tests.test_cycle import NULL
from tests.test_review import HANSON, HANSON_SLUG
from tests.test_review import kb as kb  # noqa: F401 - the demo KB on the scripted server, as a fixture


@pytest.fixture
def branch(kb: Path, fake_llm: FakeOpenAI) -> Path:  # noqa: F811
    fake_llm.push(answer(NULL))
    assert main(["extract", str(kb / HANSON)]) == 0
    return kb


@pytest.fixture
def root(branch: Path) -> Iterator[str]:
    server = make_server(branch, Settings())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host!s}:{port}/"
    finally:
        server.shutdown()
        server.server_close()


def tip(kb: Path, ref: str) -> str:
    found = subprocess.run(["git", "rev-parse", "--verify", "-q", ref], cwd=kb, capture_output=True, text=True)
    return found.stdout.strip()


def token_of(root: str) -> str:
    with urllib.request.urlopen(root + f"review/{HANSON_SLUG}", timeout=10) as response:
        found = re.search(r'name="token" value="([^"]+)"', response.read().decode())
    assert found
    return found.group(1)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def post(url: str, fields: dict[str, str] | bytes, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Status, Location and body of a POST (redirects not followed)."""
    data = fields if isinstance(fields, bytes) else urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", **(headers or {})})  # fmt: skip
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as response:
            return response.status, response.headers.get("Location", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location", ""), error.read().decode()


def test_refused_posts_change_nothing(branch: Path, root: str) -> None:
    token = token_of(root)
    accept = root + f"review/{HANSON_SLUG}/accept"
    port = urllib.parse.urlsplit(root).port
    before = (tip(branch, "main"), tip(branch, f"extract/{HANSON_SLUG}"))
    refusals = [
        (403, {}, {}),  # no token
        (403, {"token": token[:-1] + ("A" if token[-1] != "A" else "B")}, {}),  # another one
        (403, {"token": token}, {"Host": "attacker.example"}),  # DNS rebinding
        (403, {"token": token}, {"Origin": "http://attacker.example"}),  # another site's form
        (403, {"token": token}, {"Origin": f"http://127.0.0.1:{port + 1 if port else 1}"}),
        (415, {"token": token}, {"Content-Type": "application/json"}),
        (415, {"token": token}, {"Content-Type": "multipart/form-data; boundary=x"}),
    ]
    for status, fields, headers in refusals:
        assert post(accept, fields, headers)[0] == status, (fields, headers)
    assert post(accept, b"token=" + b"x" * MAX_FORM_BYTES)[0] == 413
    assert post(root + f"review/{HANSON_SLUG}/delete", {"token": token})[0] == 404
    assert post(root + "review/no-such-branch/accept", {"token": token})[0] == 404
    status, _, body = post(root + f"review/{HANSON_SLUG}/reject", {"token": token, "reason": "  "})
    assert status == 400 and "a rejection needs a reason" in body
    assert (tip(branch, "main"), tip(branch, f"extract/{HANSON_SLUG}")) == before
    assert git(branch, "status", "--porcelain") == ""


def test_a_conflicting_accept_is_shown_and_leaves_main_as_it_was(branch: Path, root: str) -> None:
    source = branch / HANSON
    source.write_text(source.read_text().replace("status: unprocessed", "status: processing"))
    git(branch, "commit", "-qam", "someone edits the same line on main")
    before = tip(branch, "main")
    status, _, body = post(root + f"review/{HANSON_SLUG}/accept", {"token": token_of(root)})
    assert status == 409 and "Nothing was changed: cannot merge extract/" in body
    assert tip(branch, "main") == before and tip(branch, f"extract/{HANSON_SLUG}")


def test_accept_merges_the_commit_the_page_showed_not_one_made_since(branch: Path, root: str) -> None:
    with urllib.request.urlopen(root + f"review/{HANSON_SLUG}", timeout=10) as response:
        page = response.read().decode()
    shown = re.search(r'name="commit" value="([0-9a-f]{40})"', page)
    assert shown and shown.group(1) == tip(branch, f"extract/{HANSON_SLUG}")
    tree = branch.parent / "person"
    git(branch, "worktree", "add", "-q", str(tree), f"extract/{HANSON_SLUG}")
    (tree / "late.md").write_text("A late change.\n")
    git(tree, "add", "late.md")
    git(tree, "commit", "-qm", "a change made after the page was loaded")
    git(branch, "worktree", "remove", str(tree))
    before = tip(branch, "main")
    status, _, body = post(root + f"review/{HANSON_SLUG}/accept", {"token": token_of(root), "commit": shown.group(1)})
    assert status == 409 and "moved since it was reviewed" in body
    assert tip(branch, "main") == before


def test_reject_and_retry_redirects_to_the_index_with_what_it_did(branch: Path, root: str) -> None:
    status, location, _ = post(root + f"review/{HANSON_SLUG}/retry", {"token": token_of(root)})
    assert status == 303
    assert location == "/?" + urllib.parse.urlencode({"done": "retry", "branch": f"extract/{HANSON_SLUG}"})
    assert tip(branch, f"extract/{HANSON_SLUG}") == ""
    with urllib.request.urlopen(root.rstrip("/") + location, timeout=10) as response:
        page = response.read().decode()
    assert f"extract/{HANSON_SLUG}: rejected; the source is due again" in page
    assert "No extraction branch awaits review." in page
    with urllib.request.urlopen(root + "?done=<b>forged</b>&branch=x", timeout=10) as response:
        assert "forged" not in response.read().decode()  # only the server's own words are shown


def test_the_script_is_served_as_javascript_and_pages_allow_only_it(root: str) -> None:
    with urllib.request.urlopen(root + "static/review.js", timeout=10) as response:
        assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert "requestSubmit" in response.read().decode()
    with urllib.request.urlopen(urllib.request.Request(root, method="HEAD"), timeout=10) as response:
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self';" in policy and "form-action 'self'" in policy and response.read() == b""
