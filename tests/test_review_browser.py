"""The review page in a real browser: a real extraction branch, the page written by the CLI and served by it,
then headless Chromium checks the highlights, the links between source and claims, and that nothing from the
source ran.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``); CI
installs them, elsewhere the test is skipped. Selenium is pointed at both binaries, so Selenium Manager never
runs and nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extractor.cli.main import main
from extractor.core.records import Anchor, BranchReview, Finding, ItemReview, Usage
from extractor.extraction.anchoring import anchor_claims
from extractor.extraction.gates import GATES
from extractor.kb.claims import parse_claim
from extractor.kb.sources import parse_source
from extractor.store.state import StateStore
from tests.conftest import demo_kb_with, git
from tests.fakeopenai import FakeOpenAI, answer
from tests.test_cycle import NULL
from tests.test_review import HANSON, HANSON_SLUG


@pytest.fixture(autouse=True)
def _every_test_needs_chromium(need_chromium: None) -> None:
    """Each test here drives the browser."""


SLUG = "2026-02-00-thick-values-review-page"
SOURCE = f"inbox/archive/{SLUG}.md"
HOSTILE = '<script>window.__pwned = 1; document.title = "pwned"</script>'
# Markdown links to scripts, in each form markdown has: inline, upper case, autolink, data: URL, reference.
TRICKS = (
    "Link tricks: [click me](javascript:window.__pwned=4), [shout](JAVASCRIPT:window.__pwned=5),\n"
    "<javascript:window.__pwned=6>, [data](data:text/html;base64,PHNjcmlwdD4=), [ref][trick]\n"
    "and [a fine link](https://example.org/fine).\n\n"
    "[trick]: vbscript:window.__pwned=7\n"
)
SOURCE_TEXT = f"""---
type: source
title: "Thick values & <b>institutions</b>: a </title> test"
author: "A. Author <a@example.org>"
url: https://example.org/thick-values?a=1&b=2
date: 2026-02-00
domain: ai-alignment
format: paper
status: unprocessed
---

## Content

Thick models of value separate lasting values from passing preferences, and they record
the social setting in which a choice is made. The paper wants them to replace the single
reward number that current training optimises.

The authors write that “institutions that deploy AI systems have to be aligned
together with the systems themselves”, since an assistant that obeys its operator can
still feed a market or a government that nobody would endorse.

### Findings

- **Formal impossibility result**: no single reward function can encode
  every stakeholder's values at once.
- Thick models keep the social context of each choice, so a model can weigh it.

A hostile line follows: {HOSTILE}
and an image: <img src=x onerror="window.__pwned=2"> & "quotes" </textarea> </pre>.

{TRICKS}
"""

THICK = "Thick models of value separate lasting values from passing preferences"
INSTITUTIONS = "institutions that deploy AI systems have to be aligned together with the systems themselves"
ANSWER = {
    "key_facts": ["The paper proposes thick models of value."],
    "claims": [
        {
            "title": "Thick models of value separate lasting values from passing preferences",
            "description": "The full-stack alignment paper wants value models that also record the social setting.",
            "confidence": "speculative",
            "evidence": [
                f'"{THICK}" — the paper',  # exact
                f'The authors write that "{INSTITUTIONS}".',  # a line break and curly quotes: normalised
                "The paper wants richer models of what people care about in place of one score.",  # paraphrase
            ],
            "argument": 'Values last, preferences pass. </textarea><script>window.__pwned = 3</script> & "q"',
            "limitations": ["A position paper <b>without</b> experiments."],
            "secondary_domains": [],
            "related": [],
        },
        {
            "title": "Institutions that deploy AI systems have to be aligned together with the systems",
            "description": 'Aligning an assistant with its operator <em>alone</em> can still feed a "market" & more.',
            "confidence": "experimental",
            "evidence": [
                '"lasting values from passing preferences, and they record" (overlaps the first claim\'s quote)',
                '"separate lasting values" is nested inside it',
                f"A hostile line follows: {HOSTILE}",
                # Across the bold markup and a list item's line break (fuzzy), then across two list items.
                '"Formal impossibility result: no single reward function can encode every stakeholder\'s values"',
                '"every stakeholder\'s values at once. Thick models keep the social context of each choice"',
            ],
            "argument": "An assistant that obeys its operator can still feed a market nobody would endorse.",
            "limitations": ["One position paper, with no measured effect."],
            "secondary_domains": [],
            "related": [],
        },
    ],
    "enrichments": [
        {
            "target": "preference-based training compresses diverse human values into a single reward signal",
            "evidence": 'Thick models would replace the <single reward number> & a "ranking" of outputs.',
            "kind": "challenge",
        }
    ],
    "null_result_reason": None,
    "notes": "Two claims, one enrichment.",
}
METHODS = [["exact", "normalised", "paraphrase"], ["exact", "exact", "exact", "fuzzy", "fuzzy"]]


@pytest.fixture
def kb(tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Path:
    kb = demo_kb_with(tmp_path / "kb", monkeypatch, fake_llm.base_url, {SOURCE: SOURCE_TEXT})
    fake_llm.push(answer(ANSWER))
    assert main(["extract", str(kb / SOURCE)]) == 0  # branch mode: extract/<slug>, one commit on main
    record_review(kb)
    return kb


REVIEW_FINDING = f"The argument outruns the evidence {HOSTILE}"


def record_review(kb: Path) -> None:
    """A reviewer model's review of the branch's tip, as the pipeline records it: changes asked on claim 1."""
    branch = f"extract/{SLUG}"
    commit = git(kb, "rev-parse", branch).strip()
    base = git(kb, "merge-base", "main", branch).strip()
    added = git(kb, "diff", "--name-only", "--diff-filter=A", base, branch, "--", "claims").split()
    first = next(path for path in added if path.rsplit("/", 1)[1].startswith("thick-models"))
    review = BranchReview(
        branch=branch, commit=commit, source_path=SOURCE, reviewer="lead", agent="leo", model="review-model",
        prompt_hash="r1", summary="One claim needs work.", usage=Usage(cost=0.0021),
        items=[
            ItemReview(path=first, kind="claim", verdict="request_changes",
                       findings=[Finding(criterion="scope", reason=REVIEW_FINDING)], fixes=["narrow the title"]),
            *(ItemReview(path=path, kind="claim", verdict="approve") for path in added if path != first),
        ],
    )  # fmt: skip
    store = StateStore.open(kb)
    try:
        store.record_review(review)
    finally:
        store.close()


def expected_anchors(kb: Path) -> tuple[str, dict[str, Anchor]]:
    """The source body, and every evidence item's anchor by its id on the page (claim files as on the branch)."""
    branch = f"extract/{SLUG}"
    base = git(kb, "merge-base", "main", branch).strip()
    body = parse_source(Path(SOURCE), git(kb, "show", f"{base}:{SOURCE}")).body
    added = git(kb, "diff", "--name-only", "--diff-filter=A", base, branch, "--", "claims").split()
    claims = [parse_claim(git(kb, "show", f"{branch}:{path}")) for path in added]
    order = [claim["title"] for claim in ANSWER["claims"]]
    claims.sort(key=lambda claim: order.index(claim.title))  # the page numbers claims in the model's order
    anchors = anchor_claims([claim.evidence for claim in claims], body)
    methods = {claim.title: [a.method for a in found] for claim, found in zip(claims, anchors, strict=True)}
    assert [methods[c["title"]] for c in ANSWER["claims"]] == METHODS  # the scenario does what it means to
    return body, {
        f"claim-{n}-evidence-{m}": anchor
        for n, claim_anchors in enumerate(anchors, start=1)
        for m, anchor in enumerate(claim_anchors, start=1)
    }


@contextlib.contextmanager
def serving(kb: Path) -> Iterator[str]:
    """``extractor review serve`` in its own process; yields its address, stops it with Ctrl-C (SIGINT)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "extractor", "review", "--kb", str(kb), "serve", SLUG],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        first = lines.get(timeout=30)
        page = lines.get(timeout=5).strip()
    except queue.Empty:
        process.kill()
        pytest.fail(f"review serve printed no address: {process.communicate()[1]}")
    assert first.startswith("serving the review pages at http://127.0.0.1:")
    assert page == first.split()[5] + f"review/{SLUG}"
    yield page
    process.send_signal(signal.SIGINT)
    try:
        assert process.wait(timeout=10) == 0, process.stderr.read()  # type: ignore[union-attr]
    finally:
        process.kill()
    assert "Traceback" not in process.stderr.read()  # type: ignore[union-attr]


@pytest.fixture
def server(kb: Path) -> Iterator[str]:
    with serving(kb) as page:
        yield page


# What a stretch of the source shows once rendered, whitespace aside: block markers at line starts (headings,
# list items, quotes) and the bold markers go. The evidence spans here hold no other markdown.
BLOCK_MARKUP = re.compile(r"(?m)^[ \t]*(?:#{1,6}[ \t]+|[-+*][ \t]+|\d{1,9}[.)][ \t]+|>[ \t]?)")


def shown_text(markdown: str) -> str:
    return "".join(BLOCK_MARKUP.sub("", markdown).replace("**", "").split())


def check_page(driver: Any, body: str, anchors: dict[str, Anchor], served: bool) -> None:
    from selenium.webdriver.common.by import By

    # Nothing from the source or the model ran, and it shows as text.
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    assert driver.title == f"Review extract/{SLUG}"
    scripts = [script.get_attribute("src") for script in driver.find_elements(By.TAG_NAME, "script")]
    assert [src.rsplit("/", 2)[1:] for src in scripts] == ([["static", "review.js"]] if served else [])
    assert driver.find_elements(By.TAG_NAME, "img") == []
    source_pane = driver.find_element(By.ID, "source-body")
    assert HOSTILE in source_pane.text and '<img src=x onerror="window.__pwned=2">' in source_pane.text
    claims_pane = driver.find_element(By.ID, "claims").text
    assert "</textarea><script>window.__pwned = 3</script>" in claims_pane
    assert "<single reward number>" in claims_pane  # the enrichment's diff line
    assert "Thick values & <b>institutions</b>: a </title> test" in driver.find_element(By.ID, "source").text

    # The source is rendered as markdown: headings, a list, bold; no markup left over.
    assert [h.text for h in source_pane.find_elements(By.CSS_SELECTOR, "h2, h3")] == ["Content", "Findings"]
    items = source_pane.find_elements(By.CSS_SELECTOR, "ul > li")
    assert len(items) == 2 and items[1].text.startswith("Thick models keep the social context")
    assert source_pane.find_element(By.CSS_SELECTOR, "li strong").text == "Formal impossibility result"
    assert "**" not in source_pane.text and "## " not in source_pane.text

    # Link tricks stay text: the only link out is the https one, without a referrer.
    for trick in ("[click me](javascript:window.__pwned=4)", "<javascript:window.__pwned=6>", "[ref][trick]",
                  "[trick]: vbscript:window.__pwned=7", "[data](data:text/html;base64,PHNjcmlwdD4=)"):  # fmt: skip
        assert trick in source_pane.text, trick
    outside = [
        link for link in source_pane.find_elements(By.TAG_NAME, "a") if "#claim-" not in link.get_attribute("href")
    ]
    assert [(link.text, link.get_attribute("href"), link.get_attribute("rel")) for link in outside] == [
        ("a fine link", "https://example.org/fine", "noreferrer noopener")
    ]

    # Every anchored item has visible highlights in the source pane on exactly the characters of its span.
    marks = driver.find_elements(By.CSS_SELECTOR, "#source-body mark")
    assert marks
    for ident, anchor in anchors.items():
        item = driver.find_element(By.ID, ident)
        covering = [mark for mark in marks if ident in mark.get_attribute("data-evidence").split()]
        if anchor.method == "paraphrase":
            assert covering == [] and item.get_attribute("data-method") == "paraphrase"
            assert "paraphrase" in item.text.casefold() and "not found in the source" in item.text
            continue
        assert anchor.start is not None and anchor.end is not None
        highlighted = "".join(mark.get_attribute("textContent") for mark in covering)
        assert shown_text(highlighted) == shown_text(body[anchor.start : anchor.end]), ident
        for mark in covering:
            assert mark.is_displayed() and mark.size["width"] > 0
            assert mark.value_of_css_property("background-color") not in ("rgba(0, 0, 0, 0)", "transparent")
        firsts = [mark.get_attribute("id") for mark in covering if mark.get_attribute("id")]
        assert item.get_attribute("data-marks").split() == firsts
    for marked in driver.find_elements(By.CSS_SELECTOR, "#source-body mark.overlap"):
        assert len(marked.get_attribute("data-evidence").split()) >= 2  # overlapping and nested quotes
    assert driver.find_elements(By.CSS_SELECTOR, "#source-body mark.overlap")

    # The spans across markup: in and out of the bold, and over both list items, with no mark around an element.
    def holders(ident: str, selector: str) -> set[str]:
        return set(driver.execute_script(
            "return [...document.querySelectorAll('#source-body mark')]"
            ".filter(m => m.dataset.evidence.split(' ').includes(arguments[0]))"
            ".map(m => { const e = m.closest(arguments[1]); return e ? e.textContent.slice(0, 12) : ''; });",
            ident, selector,
        ))  # fmt: skip

    assert holders("claim-2-evidence-4", "strong") == {"Formal impos", ""}
    assert holders("claim-2-evidence-5", "li") == {"Formal impos", "Thick models"}
    assert driver.find_elements(By.CSS_SELECTOR, "#source-body mark *:not(a)") == []

    # Per claim: gates recorded by the run, the anchored share, and the reviewer model's verdict.
    for number in (1, 2):
        claim = driver.find_element(By.ID, f"claim-{number}")
        methods = [a.method for ident, a in anchors.items() if ident.startswith(f"claim-{number}-")]
        found = sum(method != "paraphrase" for method in methods)
        assert f"{found} of {len(methods)} evidence items found in the source" in claim.text
        assert len(claim.find_elements(By.CSS_SELECTOR, "ul.gates li.pass")) == len(GATES)
    first, second = (driver.find_element(By.ID, f"claim-{n}") for n in (1, 2))
    assert first.find_element(By.CSS_SELECTOR, "ul.verdicts .verdict").text == "changes requested"
    assert f"scope: {REVIEW_FINDING}" in first.text and "suggested fix: narrow the title" in first.text
    assert second.find_element(By.CSS_SELECTOR, "ul.verdicts .verdict").text == "approve"
    assert "100 in, 50 out" in driver.find_element(By.ID, "provenance").text
    verdict = driver.find_element(By.ID, "branch-verdict").text
    assert verdict.startswith("changes requested") and "lead (review-model)" in verdict
    assert "$0.002100" in driver.find_element(By.ID, "provenance").text  # the review's cost

    # Evidence item -> its mark: the mark becomes the :target and is scrolled into the source pane's view.
    ident = next(i for i, a in anchors.items() if a.method == "normalised")
    link = driver.find_element(By.CSS_SELECTOR, f"#{ident} a.to-source")
    mark_id = link.get_attribute("href").rsplit("#", 1)[1]
    link.click()
    assert driver.execute_script("return location.hash") == f"#{mark_id}"
    assert driver.execute_script("return document.querySelector(':target').id") == mark_id
    assert driver.execute_script(
        "const m = document.getElementById(arguments[0]).getBoundingClientRect();"
        "const p = document.getElementById('source').getBoundingClientRect();"
        "return m.top >= p.top && m.bottom <= p.bottom;",
        mark_id,
    )
    # ... and the mark back to its evidence item.
    driver.find_element(By.CSS_SELECTOR, f"#{mark_id} a").click()
    assert driver.execute_script("return document.querySelector(':target').id") == ident
    assert driver.execute_script("return typeof window.__pwned") == "undefined"


def test_review_page_in_headless_chromium(
    kb: Path, server: str, browser: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "page.html"
    assert main(["review", "--kb", str(kb), "show", SLUG, "--html", "--output", str(page)]) == 0
    assert HOSTILE not in page.read_text(encoding="utf-8")

    browser.get(page.as_uri())  # the written file, offline
    check_page(browser, *expected_anchors(kb), served=False)

    browser.get(server)  # the same page from `review serve`
    check_page(browser, *expected_anchors(kb), served=True)
    browser.execute_script("for (const id of ['source', 'claims']) document.getElementById(id).scrollTop = 0;")
    screenshot = tmp_path / "review.png"
    assert browser.save_screenshot(str(screenshot))
    with capsys.disabled():
        print(f"\nreview page screenshot: {screenshot}")

    root = server.rsplit("/review/", 1)[0] + "/"
    browser.get(root)  # the index links to the page
    from selenium.webdriver.common.by import By

    row = browser.find_element(By.CSS_SELECTOR, f'#pending tr[data-slug="{SLUG}"]').text
    assert "changes requested" in row and SOURCE in row
    browser.find_element(By.LINK_TEXT, f"extract/{SLUG}").click()
    assert browser.current_url == server and browser.find_elements(By.ID, "source-body")

    for path in ("review/no-such-branch", "elsewhere", "review/../../etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(root + path, timeout=10)
        assert failed.value.code == 404
    rebound = urllib.request.Request(server, headers={"Host": "attacker.example:80"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(rebound, timeout=10)
    assert refused.value.code == 403
    with urllib.request.urlopen(server, timeout=10) as response:
        policy = response.headers["Content-Security-Policy"]
        assert policy.startswith("default-src 'none'") and "script-src 'self';" in policy
        assert "form-action 'self'" in policy and "unsafe-inline" not in policy.split("script-src", 1)[1]


def tip(kb: Path, ref: str) -> str:
    """The commit ``ref`` names, or "" when there is no such ref."""
    found = subprocess.run(["git", "rev-parse", "--verify", "-q", ref], cwd=kb, capture_output=True, text=True)
    return found.stdout.strip()


def test_decisions_from_the_served_pages_move_main_and_empty_the_queue(
    kb: Path, fake_llm: FakeOpenAI, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    fake_llm.push(answer(NULL))
    assert main(["extract", str(kb / HANSON)]) == 0  # a second branch in the queue
    before = tip(kb, "main")
    with serving(kb) as page:
        root = page.rsplit("/review/", 1)[0] + "/"

        # A POST without the token (or with another) is refused and changes nothing.
        for fields in ({}, {"token": "guessed"}):
            forged = urllib.request.Request(
                page + "/accept", data=urllib.parse.urlencode(fields).encode(), method="POST",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )  # fmt: skip
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(forged, timeout=10)
            assert refused.value.code == 403
        assert tip(kb, "main") == before and tip(kb, f"extract/{SLUG}")

        # The queue by keyboard: j and k move between the two branches, a accepts the one shown.
        browser.get(page)
        body = browser.find_element(By.TAG_NAME, "body")
        other = browser.find_element(By.CSS_SELECTOR, "a[rel~=next], a[rel~=prev]").get_attribute("href")
        key = "j" if browser.find_elements(By.CSS_SELECTOR, "a[rel~=next]") else "k"
        body.send_keys(key)
        WebDriverWait(browser, 10).until(lambda driver: driver.current_url == other)
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys("k" if key == "j" else "j")
        WebDriverWait(browser, 10).until(lambda driver: driver.current_url == page)
        browser.find_element(By.ID, "reject-reason").send_keys("a")  # typed into the field: no shortcut
        assert browser.current_url == page and tip(kb, f"extract/{SLUG}")
        browser.find_element(By.ID, "reject-reason").clear()
        browser.execute_script("document.activeElement.blur()")
        accepted = tip(kb, f"extract/{SLUG}")
        browser.find_element(By.TAG_NAME, "body").send_keys("a")
        WebDriverWait(browser, 10).until(lambda driver: driver.current_url.startswith(other))
        assert f"extract/{SLUG}: accepted" in browser.find_element(By.ID, "done").text
        assert tip(kb, "main") != before
        git(kb, "merge-base", "--is-ancestor", accepted, "main")  # fails unless main now holds the branch
        assert tip(kb, f"extract/{SLUG}") == ""

        # The list no longer holds it; the other branch is rejected with a reason typed after r.
        browser.get(root)
        assert browser.find_elements(By.CSS_SELECTOR, f'#pending tr[data-slug="{SLUG}"]') == []
        assert browser.find_elements(By.CSS_SELECTOR, f'#pending tr[data-slug="{HANSON_SLUG}"]')
        browser.get(other)
        browser.find_element(By.TAG_NAME, "body").send_keys("r")
        reason = browser.switch_to.active_element
        assert reason.get_attribute("id") == "reject-reason"
        reason.send_keys("Only restates the paper.", Keys.ENTER)
        WebDriverWait(browser, 10).until(lambda driver: urllib.parse.urlsplit(driver.current_url).path == "/")
        assert "No extraction branch awaits review." in browser.find_element(By.TAG_NAME, "main").text
        assert f"extract/{HANSON_SLUG}: rejected" in browser.find_element(By.ID, "done").text
        assert tip(kb, f"extract/{HANSON_SLUG}") == ""
        assert "Rejected in review: Only restates the paper." in git(kb, "show", f"main:{HANSON}")
