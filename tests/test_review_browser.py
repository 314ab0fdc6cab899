"""The review page in a real browser: a real extraction branch, the page written by the CLI and served by it,
then headless Chromium checks the highlights, the links between source and claims, and that nothing from the
source ran.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``, ``/usr/bin/chromedriver``); CI
installs them, elsewhere the test is skipped. Selenium is pointed at both binaries, so Selenium Manager never
runs and nothing is downloaded.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extractor.cli.main import main
from extractor.core.records import Anchor
from extractor.extraction.anchoring import anchor_claims
from extractor.extraction.gates import GATES
from extractor.kb.claims import parse_claim
from extractor.kb.sources import parse_source
from tests.conftest import demo_kb_with, git
from tests.fakeopenai import FakeOpenAI, answer


@pytest.fixture(autouse=True)
def _every_test_needs_chromium(need_chromium: None) -> None:
    """Each test here drives the browser."""


SLUG = "2026-02-00-thick-values-review-page"
SOURCE = f"inbox/archive/{SLUG}.md"
HOSTILE = '<script>window.__pwned = 1; document.title = "pwned"</script>'
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

A hostile line follows: {HOSTILE}
and an image: <img src=x onerror="window.__pwned=2"> & "quotes" </textarea> </pre>.
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
METHODS = [["exact", "normalised", "paraphrase"], ["exact", "exact", "exact"]]


@pytest.fixture
def kb(tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Path:
    kb = demo_kb_with(tmp_path / "kb", monkeypatch, fake_llm.base_url, {SOURCE: SOURCE_TEXT})
    fake_llm.push(answer(ANSWER))
    assert main(["extract", str(kb / SOURCE)]) == 0  # branch mode: extract/<slug>, one commit on main
    return kb


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


@pytest.fixture
def server(kb: Path) -> Iterator[str]:
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


def check_page(driver: Any, body: str, anchors: dict[str, Anchor]) -> None:
    from selenium.webdriver.common.by import By

    # Nothing from the source or the model ran, and it shows as text.
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    assert driver.title == f"Review extract/{SLUG}"
    assert driver.find_elements(By.TAG_NAME, "script") == [] and driver.find_elements(By.TAG_NAME, "img") == []
    source_pane = driver.find_element(By.ID, "source-body")
    assert HOSTILE in source_pane.text and '<img src=x onerror="window.__pwned=2">' in source_pane.text
    assert driver.find_element(By.ID, "source-body").get_attribute("textContent") == body
    claims_pane = driver.find_element(By.ID, "claims").text
    assert "</textarea><script>window.__pwned = 3</script>" in claims_pane
    assert "<single reward number>" in claims_pane  # the enrichment's diff line
    assert "Thick values & <b>institutions</b>: a </title> test" in driver.find_element(By.ID, "source").text

    # Every anchored item has visible highlights in the source pane that spell out its span exactly.
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
        assert "".join(mark.get_attribute("textContent") for mark in covering) == body[anchor.start : anchor.end]
        for mark in covering:
            assert mark.is_displayed() and mark.size["width"] > 0
            assert mark.value_of_css_property("background-color") not in ("rgba(0, 0, 0, 0)", "transparent")
        assert item.get_attribute("data-marks").split() == [mark.get_attribute("id") for mark in covering]
    for marked in driver.find_elements(By.CSS_SELECTOR, "#source-body mark.overlap"):
        assert len(marked.get_attribute("data-evidence").split()) >= 2  # overlapping and nested quotes
    assert driver.find_elements(By.CSS_SELECTOR, "#source-body mark.overlap")

    # Per claim: gates recorded by the run, and the anchored share.
    for number in (1, 2):
        claim = driver.find_element(By.ID, f"claim-{number}")
        methods = [a.method for ident, a in anchors.items() if ident.startswith(f"claim-{number}-")]
        found = sum(method != "paraphrase" for method in methods)
        assert f"{found} of {len(methods)} evidence items found in the source" in claim.text
        assert len(claim.find_elements(By.CSS_SELECTOR, "ul.gates li.pass")) == len(GATES)
    assert "100 in, 50 out" in driver.find_element(By.ID, "provenance").text

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


def test_review_page_in_headless_chromium(
    kb: Path, server: str, browser: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "page.html"
    assert main(["review", "--kb", str(kb), "show", SLUG, "--html", "--output", str(page)]) == 0
    assert HOSTILE not in page.read_text(encoding="utf-8")

    browser.get(page.as_uri())  # the written file, offline
    check_page(browser, *expected_anchors(kb))

    browser.get(server)  # the same page from `review serve`
    check_page(browser, *expected_anchors(kb))
    browser.execute_script("for (const id of ['source', 'claims']) document.getElementById(id).scrollTop = 0;")
    screenshot = tmp_path / "review.png"
    assert browser.save_screenshot(str(screenshot))
    with capsys.disabled():
        print(f"\nreview page screenshot: {screenshot}")

    root = server.rsplit("/review/", 1)[0] + "/"
    browser.get(root)  # the index links to the page
    from selenium.webdriver.common.by import By

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
        assert "script-src" not in response.headers["Content-Security-Policy"]
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
