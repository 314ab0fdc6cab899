"""``extractor ingest`` on web pages, feeds and text files served from 127.0.0.1, and on hostile answers."""

from __future__ import annotations

import datetime
import gzip
import json
import os
import time
from pathlib import Path

import pytest

from extractor.cli.demo import create_demo_kb
from extractor.cli.main import main
from extractor.ingest.service import IngestReport
from extractor.kb.yamlio import split_document
from extractor.store.state import StateStore
from tests.conftest import git
from tests.fakeopenai import FakeOpenAI, answer
from tests.website import ARTICLE, Page, Website

SENTENCES = [
    "Extracting text from two-column research papers is hard because the content stream order",
    "Layout analysis groups characters into lines and lines into boxes",
    "test on real papers from several publishers before trusting any single configuration",
]


def page_with(title: str, paragraph: str, date: str = "2025-01-02") -> bytes:
    return (
        f'<html><head><meta charset="utf-8"><title>{title}</title>'
        f'<meta property="article:published_time" content="{date}"></head><body><article><h1>{title}</h1>'
        f"<p>{paragraph} " + "It goes on with enough words to be the main content of the page. " * 3 + "</p>"
        "</article></body></html>"
    ).encode()


def atom(site: Website, entries: list[tuple[str, str, str]]) -> bytes:
    items = "".join(
        f'<entry><id>urn:{ident}</id><title>{title}</title><link href="{site.url(path)}"/>'
        f"<published>2025-03-04T09:00:00Z</published><author><name>Ann Lee</name></author></entry>"
        for ident, title, path in entries
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>Lab notes</title><id>urn:feed</id>{items}</feed>"
    ).encode()


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    return create_demo_kb(tmp_path / "kb")


def ingest(kb: Path, *args: str) -> int:
    return main(["ingest", "--kb", str(kb), *args])


def inbox_names(kb: Path) -> set[str]:
    return {p.name for p in (kb / "inbox" / "archive").glob("*.md")}


def only_new(kb: Path, before: set[str]) -> Path:
    new = inbox_names(kb) - before
    assert len(new) == 1, new
    return kb / "inbox" / "archive" / new.pop()


def test_a_web_page_becomes_one_committed_source_named_and_ordered_as_the_kb_writes_them(
    kb: Path, site: Website, capsys: pytest.CaptureFixture[str]
) -> None:
    before, head = inbox_names(kb), git(kb, "rev-parse", "HEAD").strip()
    assert ingest(kb, site.url("/columns"), "--domain", "ai-alignment", "--tags", "pdf,layout") == 0
    path = only_new(kb, before)
    assert path.name == "2024-03-05-doe-why-columns-break-pdfs.md"
    metadata, body = split_document(path.read_text(encoding="utf-8"))
    assert list(metadata)[:9] == ["type", "title", "author", "url", "date", "domain", "format", "status", "tags"]
    assert metadata["type"] == "source" and metadata["status"] == "unprocessed"
    assert metadata["title"] == "Why Columns Break PDFs" and metadata["author"] == "Jane Doe"
    assert metadata["date"] == "2024-03-05" and metadata["domain"] == "ai-alignment"
    assert metadata["url"] == site.url("/columns") and metadata["tags"] == ["pdf", "layout"]
    assert metadata["format"] == "article" and "domain_chosen_by" not in metadata
    positions = [body.find(sentence) for sentence in SENTENCES]
    assert -1 not in positions and positions == sorted(positions), body
    assert "## Layout analysis" in body and "Subscribe to our newsletter" not in body and "About us" not in body
    # one commit on main, holding that file alone, naming where it came from
    assert git(kb, "rev-parse", "HEAD~1").strip() == head
    assert git(kb, "show", "--name-only", "--format=", "HEAD").split() == [f"inbox/archive/{path.name}"]
    message = git(kb, "log", "-1", "--format=%B")
    assert site.url("/columns") in message and "Ingested-by: extractor ingest" in message
    assert git(kb, "status", "--porcelain").strip() == ""
    out = capsys.readouterr().out
    assert f"added inbox/archive/{path.name}" in out and "committed 1 source(s) on main" in out


def test_pages_in_odd_encodings_come_through_intact(kb: Path, site: Website) -> None:
    russian = "Съешь же ещё этих мягких французских булок, да выпей чаю"
    japanese = "これは日本語の長い段落です。文字化けせずに抽出されるべきです"
    site.pages["/ru"] = Page(
        page_with("Тест", russian).decode().encode("cp1251"), content_type="text/html; charset=windows-1251"
    )
    jp = page_with("日本語", japanese).decode().replace('charset="utf-8"', 'charset="shift_jis"')
    site.pages["/jp"] = Page(jp.encode("shift_jis"), content_type="text/html")  # only the page says its charset
    greek = "Η αποθήκευση ενέργειας εξομαλύνει την βραδινή αιχμή στα περισσότερα δίκτυα που μετρήσαμε"
    site.pages["/el"] = Page(
        page_with("Δοκιμή", greek).decode().encode("utf-16"), content_type="text/html; charset=utf-16"
    )
    before = inbox_names(kb)
    assert ingest(kb, site.url("/ru"), site.url("/jp"), site.url("/el"), "--domain", "health") == 0
    bodies = [(kb / "inbox" / "archive" / n).read_text(encoding="utf-8") for n in inbox_names(kb) - before]
    assert any(russian in body for body in bodies) and any(japanese in body for body in bodies), bodies
    assert any(greek in body for body in bodies), bodies


def test_the_same_paper_twice_is_refused_with_the_existing_files_name(
    kb: Path, site: Website, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = inbox_names(kb)
    assert ingest(kb, site.url("/columns"), "--domain", "health") == 0
    existing = only_new(kb, before).name
    capsys.readouterr()
    head, hits = git(kb, "rev-parse", "HEAD"), site.hits["/columns"]
    # the same URL (with a fragment and a trailing slash): refused before it is fetched
    assert ingest(kb, site.url("/columns/#top"), "--domain", "health") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"extractor: {site.url('/columns/#top')}: already in the inbox as inbox/archive/{existing} (same URL)"
    ]
    assert site.hits["/columns"] == hits and git(kb, "rev-parse", "HEAD") == head
    # the same text from elsewhere: a copy saved as a file
    copy = tmp_path / "saved.md"
    body = split_document((kb / "inbox" / "archive" / existing).read_text(encoding="utf-8"))[1]
    copy.write_text(body.replace(". ", ".\n"), encoding="utf-8")  # its line breaks differ
    assert ingest(kb, str(copy), "--domain", "health") == 1
    assert f"already in the inbox as inbox/archive/{existing} (same text)" in capsys.readouterr().err
    assert git(kb, "rev-parse", "HEAD") == head


def test_a_feed_gives_only_its_new_entries(kb: Path, site: Website, capsys: pytest.CaptureFixture[str]) -> None:
    site.pages["/a"] = Page(page_with("First finding", "The first finding is that queues grow without bound."))
    site.pages["/b"] = Page(page_with("Second finding", "The second finding is that caches hide latency well."))
    site.pages["/feed"] = Page(atom(site, [("1", "First finding", "/a"), ("2", "Second finding", "/b")]),
                               content_type="application/atom+xml")  # fmt: skip
    before = inbox_names(kb)
    assert ingest(kb, site.url("/feed"), "--domain", "health") == 0
    added = inbox_names(kb) - before
    assert len(added) == 2 and all(name.startswith("2025-01-02-lee-") for name in added), added
    site.pages["/c"] = Page(page_with("Third finding", "The third finding is that retries need jitter to spread."))
    site.pages["/feed"].body = atom(site, [("3", "Third finding", "/c"), ("1", "First finding", "/a"),
                                           ("2", "Second finding", "/b")])  # fmt: skip
    capsys.readouterr()
    assert ingest(kb, site.url("/feed"), "--domain", "health") == 0
    assert inbox_names(kb) - before - added == {"2025-01-02-lee-third-finding.md"}
    assert site.hits["/a"] == 1 and site.hits["/b"] == 1  # remembered: not fetched again
    assert ingest(kb, site.url("/feed"), "--domain", "health") == 0  # nothing new: nothing committed
    assert "committed" not in capsys.readouterr().out.split("committed 1")[-1]


def test_hostile_answers_each_cost_one_line_and_the_rest_of_the_batch_goes_on(
    kb: Path, site: Website, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXTRACTOR_INGEST_MAX_BYTES", str(200_000))
    monkeypatch.setenv("EXTRACTOR_INGEST_TIMEOUT", "2")
    site.pages["/loop"] = Page(status=302, headers={"Location": "/loop"})
    site.pages["/big"] = Page(b"<html><body><p>" + b"x" * 300_000 + b"</p></body></html>")
    site.pages["/big-chunked"] = Page(b"<html><body><p>" + b"y" * 300_000 + b"</p></body></html>", chunks=30)
    site.pages["/bomb"] = Page(gzip.compress(b"<html><body>" + b"z" * 50_000_000), headers={"Content-Encoding": "gzip"})
    site.pages["/image"] = Page(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, content_type="image/png")
    site.pages["/fake-pdf"] = Page(b"<html><body>not a pdf</body></html>", content_type="application/pdf")
    site.pages["/empty"] = Page(b"<html><body><nav>menu</nav></body></html>")
    items = ["/missing", "/loop", "/big", "/big-chunked", "/bomb", "/image", "/fake-pdf", "/empty", "/columns"]
    before = inbox_names(kb)
    assert ingest(kb, *[site.url(item) for item in items], "--domain", "health") == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 8 and "Traceback" not in err, err
    expected = {
        "/missing": "HTTP 404",
        "/loop": "more than 5 redirects",
        "/big": "larger than",
        "/big-chunked": "larger than",
        "/bomb": "larger than",
        "/image": "unsupported content type image/png",
        "/fake-pdf": "labelled a PDF but it is not one",
        "/empty": "no main text",
    }
    for line, (item, problem) in zip(lines, expected.items(), strict=True):
        assert line.startswith(f"extractor: {site.url(item)}: ") and problem in line, line
    assert len(inbox_names(kb) - before) == 1 and "committed 1 source(s)" in out
    assert not list((kb / "inbox" / "archive").glob(".*.tmp"))


def test_a_server_that_never_answers_is_one_line(
    kb: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    monkeypatch.setenv("EXTRACTOR_INGEST_TIMEOUT", "0.5")
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/slow"
        assert ingest(kb, url, "--domain", "health") == 1
    finally:
        listener.close()
    assert capsys.readouterr().err.strip() == f"extractor: {url}: no answer within 0.5 s"


def test_markdown_and_text_files_come_in_as_they_are(
    kb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text(
        "---\ntitle: Field notes on grid storage\nauthor: Sam Ortiz\ndate: 2025-06\nurl: https://example.org/n\n---\n"
        "# Field notes\n\nBatteries smooth the evening peak in most of the sites we visited.\n",
        encoding="utf-8",
    )
    plain = tmp_path / "memo.txt"
    plain.write_text("A memo on staffing.\n\nNurses per ward fell by a tenth over two years.\n", encoding="utf-8")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Caf\xe9 au lait".encode("latin-1"))
    before = inbox_names(kb)
    assert ingest(kb, str(notes), str(plain), str(latin), str(tmp_path / "nowhere.pdf"), "--domain", "health") == 1
    err = capsys.readouterr().err
    assert f"{latin}: not UTF-8 text" in err and f"{tmp_path / 'nowhere.pdf'}: no such file" in err
    added = sorted(inbox_names(kb) - before)
    assert added[0] == "2025-06-00-ortiz-field-notes-on-grid-storage.md", added
    metadata, body = split_document((kb / "inbox" / "archive" / added[0]).read_text(encoding="utf-8"))
    assert metadata["date"] == "2025-06-00" and metadata["url"] == "https://example.org/n"
    assert body.startswith("# Field notes") and "Batteries smooth the evening peak" in body
    assert len(added) == 2 and "Nurses per ward fell by a tenth" in (kb / "inbox" / "archive" / added[1]).read_text()


def test_the_configured_model_chooses_the_domain_among_the_kbs_and_is_named(
    kb: Path, site: Website, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("EXTRACTOR_RETRY_INITIAL_WAIT", "0.01")
    fake_llm.push(answer({"domain": "not-a-domain", "reason": "?"}), answer({"domain": "health", "reason": "care"}))
    before = inbox_names(kb)
    assert ingest(kb, site.url("/columns"), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["outcomes"][0]["domain"] == "health" and report["commit"]
    metadata, _ = split_document(only_new(kb, before).read_text(encoding="utf-8"))
    assert metadata["domain"] == "health" and metadata["domain_chosen_by"].startswith("model ")
    assert len(fake_llm.requests) == 2  # the answer outside the KB's domains was asked again
    assert "Why Columns Break PDFs" in fake_llm.requests[0]["messages"][0]["content"]
    assert "domain health chosen by model" in git(kb, "log", "-1", "--format=%B")


def test_a_domain_the_kb_does_not_have_is_a_usage_error(
    kb: Path, site: Website, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ingest(kb, site.url("/columns"), "--domain", "astrology") == 2
    assert "--domain 'astrology' is not one of the KB's domains" in capsys.readouterr().err
    assert site.hits.get("/columns") is None


def test_on_a_branch_main_and_the_work_tree_are_untouched(kb: Path, site: Website) -> None:
    main_before, before = git(kb, "rev-parse", "main"), inbox_names(kb)
    assert ingest(kb, site.url("/columns"), "--domain", "health", "--branch") == 0
    assert git(kb, "rev-parse", "main") == main_before and inbox_names(kb) == before
    branch = "ingest/2024-03-05-doe-why-columns-break-pdfs"
    assert git(kb, "show", "--name-only", "--format=", branch).split() == [
        "inbox/archive/2024-03-05-doe-why-columns-break-pdfs.md"
    ]


def test_a_persons_work_in_progress_is_neither_committed_nor_lost(kb: Path, site: Website) -> None:
    claim = next((kb / "claims").rglob("*.md"))
    claim.write_text(claim.read_text(encoding="utf-8") + "\nA person's unfinished sentence\n", encoding="utf-8")
    draft = kb / "inbox" / "archive" / "2025-01-01-me-my-draft.md"
    draft.write_text("---\ntype: source\ntitle: My draft\n---\n\nHalf written.\n", encoding="utf-8")
    git(kb, "add", str(draft))
    assert ingest(kb, site.url("/columns"), "--domain", "health") == 0
    assert git(kb, "show", "--name-only", "--format=", "HEAD").split() == [
        "inbox/archive/2024-03-05-doe-why-columns-break-pdfs.md"
    ]
    assert "A person's unfinished sentence" in claim.read_text(encoding="utf-8")
    status = git(kb, "status", "--porcelain")
    assert f"A  inbox/archive/{draft.name}" in status and f" M {claim.relative_to(kb).as_posix()}" in status
    assert "Test User" not in git(kb, "log", "-1", "--format=%an")


def test_no_commit_writes_the_files_only(kb: Path, site: Website) -> None:
    head = git(kb, "rev-parse", "HEAD")
    assert ingest(kb, site.url("/columns"), "--domain", "health", "--no-commit") == 0
    assert git(kb, "rev-parse", "HEAD") == head
    assert "?? inbox/archive/2024-03-05-doe-why-columns-break-pdfs.md" in git(kb, "status", "--porcelain")


def test_two_ingests_at_once_beside_a_persons_commits_lose_nothing(kb: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    files = []
    for number in range(2):
        path = tmp_path / f"memo-{number}.md"
        path.write_text(f"# Same name\n\nWard {number} reported that night shifts ran short of staff "
                        f"on {number + 3} evenings in a row last month.\n", encoding="utf-8")  # fmt: skip
        files.append(path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "extractor", "ingest", "--kb", str(kb), str(path), "--domain", "health"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        for path in files
    ]
    for number in range(5):  # a person commits their own notes meanwhile
        note = kb / "claims" / f"person-note-{number}.md"
        note.write_text(f"note {number}\n", encoding="utf-8")
        git(kb, "add", str(note))
        git(kb, "commit", "-qm", f"person note {number}")
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    log = git(kb, "log", "--format=%an|%s", "--name-only")
    assert log.count("ingest: Same name") == 2 and all(f"person-note-{n}.md" in log for n in range(5))
    for line in git(kb, "log", "--format=%an|%s").splitlines():
        name, subject = line.split("|", 1)
        assert (name == "extractor") == subject.startswith("ingest:"), line
    same = sorted(name for name in inbox_names(kb) if "-same-name" in name)  # one title: two names, both kept
    assert len(same) == 2 and same[0].endswith("-same-name-2.md"), same
    bodies = {(kb / "inbox" / "archive" / name).read_text(encoding="utf-8").split("Ward ")[1][0] for name in same}
    assert bodies == {"0", "1"}
    assert git(kb, "status", "--porcelain").strip() == ""


def test_hostile_pdfs_each_cost_one_line_and_a_pdf_labelled_html_is_read_as_the_pdf_it_is(
    kb: Path, site: Website, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.pdfs import TITLE, bomb_pdf, encrypted_pdf, image_only_pdf, paper_pdf, plain_pdf

    monkeypatch.setenv("EXTRACTOR_INGEST_MEMORY_MB", "300")
    monkeypatch.setenv("EXTRACTOR_INGEST_MAX_PAGES", "5")
    files = {
        "locked.pdf": encrypted_pdf(),
        "truncated.pdf": paper_pdf()[:3000],
        "scan.pdf": image_only_pdf(),
        "long.pdf": plain_pdf(pages=6, title="Too long"),
        "bomb.pdf": bomb_pdf(),
        "page.html.pdf": ARTICLE.encode(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    site.pages["/paper"] = Page(paper_pdf(), content_type="text/html; charset=utf-8")
    before, head = inbox_names(kb), git(kb, "rev-parse", "HEAD")
    items = [str(tmp_path / name) for name in files]
    assert ingest(kb, *items, site.url("/paper"), "--domain", "health") == 1
    out, err = capsys.readouterr()
    expected = [
        "encrypted PDF: it needs a password",
        "damaged PDF",
        "no text layer",
        "too many pages (6, at most 5)",
        "too large when decompressed (more than 300 MB)",
        "labelled a PDF but it is not one",
    ]
    lines = err.strip().splitlines()
    assert len(lines) == len(expected) and "Traceback" not in err, err
    for line, item, problem in zip(lines, items, expected, strict=True):
        assert line.startswith(f"extractor: {item}: ") and problem in line, line
    added = inbox_names(kb) - before
    assert len(added) == 1 and "committed 1 source(s)" in out
    metadata, body = split_document((kb / "inbox" / "archive" / added.pop()).read_text(encoding="utf-8"))
    assert metadata["title"] == TITLE and metadata["ingested_from"] == "pdf" and metadata["url"] == site.url("/paper")
    assert git(kb, "rev-parse", "HEAD~1") == head


def test_a_papers_page_gives_its_doi_authors_and_date_from_the_publishers_meta_tags(kb: Path, site: Website) -> None:
    head = (
        '<meta name="citation_title" content="Queues in Wards: A Field Study">'
        '<meta name="citation_author" content="Lee, Ann"><meta name="citation_author" content="Ortiz, Sam">'
        '<meta name="citation_publication_date" content="2023/11/07">'
        '<meta name="citation_doi" content="10.5555/wards.2023.17">'
    )
    page = page_with("Queues in Wards | Journal of Care", "Wards with a fixed rota saw queues grow at night.")
    site.pages["/paper"] = Page(page.replace(b"</head>", head.encode() + b"</head>"))
    before = inbox_names(kb)
    assert ingest(kb, site.url("/paper"), "--domain", "health") == 0
    path = only_new(kb, before)
    metadata, _ = split_document(path.read_text(encoding="utf-8"))
    assert path.name == "2023-11-07-lee-queues-in-wards-a-field-study.md"
    assert metadata["author"] == "Lee, Ann; Ortiz, Sam"
    assert metadata["doi"] == "10.5555/wards.2023.17" and metadata["format"] == "paper"
    assert metadata["title"] == "Queues in Wards: A Field Study" and metadata["date"] == "2023-11-07"


def test_a_full_disk_leaves_no_file_of_the_batch_and_says_which_write_failed(kb: Path, tmp_path: Path) -> None:
    from extractor.store.state import StateStore
    from tests.test_failures import full_disk_run

    small, big = tmp_path / "small.md", tmp_path / "big.md"
    small.write_text("# Small\n\nA short note on night shifts and the queues they leave behind.\n", encoding="utf-8")
    big.write_text("# Big\n\n" + "A long report on staffing levels across every ward. " * 4000, encoding="utf-8")
    StateStore.open(kb).close()  # the state store exists already, as in any KB that has run
    before = inbox_names(kb)
    for where in ("--no-commit", "--commit"):
        head = git(kb, "rev-parse", "HEAD")
        done = full_disk_run(kb, ["ingest", str(small), str(big), "--domain", "health", where], 100_000)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 2 and all("not committed" in line and "File too large" in line for line in lines), lines
        assert "inbox/archive/" in lines[0]  # the write that failed is named
        assert inbox_names(kb) == before and git(kb, "rev-parse", "HEAD") == head
        assert git(kb, "status", "--porcelain").strip() == ""


def test_with_another_branch_checked_out_sources_go_on_main_and_never_replace_one_there(
    kb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    note = "---\ntitle: A note on grids\nauthor: Pat O'Brien\ndate: 2024-03-05\nurl: https://example.org/grids\n---\n"
    first = tmp_path / "first.md"
    first.write_text(note + "\nStorage flattens the evening peak on most feeders.\n", encoding="utf-8")
    before = inbox_names(kb)
    assert ingest(kb, str(first), "--domain", "health") == 0
    name = f"inbox/archive/{only_new(kb, before).name}"
    on_main = git(kb, "show", f"main:{name}")
    git(kb, "checkout", "-qb", "feature")
    git(kb, "rm", "-q", name)
    git(kb, "commit", "-qm", "not here")
    capsys.readouterr()
    assert ingest(kb, str(first), "--domain", "health") == 1  # main has it: a duplicate, though this tree lacks it
    assert f"already in the inbox as {name} (same URL)" in capsys.readouterr().err
    other = tmp_path / "other.md"  # the same title, author and date: a name main already uses
    other.write_text(note.replace("/grids", "/grids-2") + "\nA different finding on feeders.\n", encoding="utf-8")
    assert ingest(kb, str(other), "--domain", "health") == 0
    assert git(kb, "show", f"main:{name}") == on_main
    assert "A different finding" in git(kb, "show", f"main:{name.replace('.md', '-2.md')}")
    assert not (kb / name).exists() and git(kb, "status", "--porcelain").strip() == ""
    assert git(kb, "rev-parse", "--abbrev-ref", "HEAD").strip() == "feature"


def test_malformed_urls_and_odd_schemes_are_one_line_each(
    kb: Path, site: Website, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = kb / "inbox" / "archive" / "2020-01-01-x-broken-url.md"
    broken.write_text("---\ntitle: Broken\nurl: 'http://[fe80::1'\n---\n\nBody.\n", encoding="utf-8")
    items = ["http://[::1", "file:///etc/passwd", "ftp://example.org/x.pdf", site.url("/columns")]
    assert ingest(kb, *items, "--domain", "health") == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 3 and "Traceback" not in err, err
    assert lines[0].startswith("extractor: http://[::1: not a URL that can be fetched")
    assert all("only http and https" in line for line in lines[1:]), lines
    assert "committed 1 source(s)" in out


def test_a_server_dripping_its_answer_is_cut_off_at_the_timeout(
    kb: Path, site: Website, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    monkeypatch.setenv("EXTRACTOR_INGEST_TIMEOUT", "1")
    site.pages["/drip"] = Page(b"<html><body>" + b"y" * 200 + b"</body></html>", chunks=200)
    site.delay = 0.05  # between chunks: 10 s in all, each read well within the timeout
    started = time.monotonic()
    assert ingest(kb, site.url("/drip"), "--domain", "health") == 1
    assert time.monotonic() - started < 5
    assert capsys.readouterr().err.strip() == f"extractor: {site.url('/drip')}: not answered in full within 1 s"


def test_feed_entries_with_relative_links_and_a_failing_entry_in_the_drop_folder(
    kb: Path, site: Website, tmp_path: Path
) -> None:
    from extractor.core.settings import load_settings
    from extractor.run.queue import ingest_queue

    site.pages["/a"] = Page(page_with("First finding", "The first finding is that queues grow without bound."))
    feed = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Lab</title><link>' + site.url("/") + "</link>"
        "<item><guid>1</guid><title>First finding</title><link>/a</link></item>"
        "<item><guid>2</guid><title>Gone</title><link>/gone</link></item></channel></rss>"
    )
    site.pages["/feed.rss"] = Page(feed.encode(), content_type="application/rss+xml")
    store = StateStore.open(kb)
    try:
        report = ingest_with_service(kb, store, [site.url("/feed.rss")])
        assert [o.path is not None for o in report.outcomes] == [True, False], report
        assert "HTTP 404" in (report.outcomes[1].error or "")
        queue = kb / "inbox" / "queue"
        queue.mkdir()
        (queue / "lab.rss").write_bytes(feed.encode())  # relative links: the channel's own link is their base
        os.utime(queue / "lab.rss", (time.time() - 60, time.time() - 60))
        site.pages["/b"] = Page(page_with("Third", "The third finding is that retries need jitter to spread."))
        ingest_queue(kb, load_settings(kb), store)
    finally:
        store.close()
    assert (queue / "failed" / "lab.rss").is_file(), list(queue.rglob("*"))
    assert "/gone" in (queue / "failed" / "lab.rss.reason.txt").read_text(encoding="utf-8")


def ingest_with_service(kb: Path, store: StateStore, items: list[str]) -> IngestReport:
    from extractor.core.settings import load_settings
    from extractor.ingest.service import Ingester, IngestOptions

    ingester = Ingester(kb, load_settings(kb), store)
    try:
        return ingester.ingest(items, IngestOptions(domain="health"))
    finally:
        ingester.close()


def test_what_a_page_or_file_says_of_itself_is_kept_and_cleaned(
    kb: Path, site: Website, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = page_with("Second post", "The second post says that batteries age faster when they are kept hot.")
    site.pages["/blog/two"] = Page(home.replace(b"</head>", b'<link rel="canonical" href="/"></head>'))
    own = tmp_path / "own.md"
    own.write_text(
        '---\ntitle: "Grid \\u202enotes\\x07 on \\x1b[31mstorage"\ndoi: https://doi.org/10.5555/own.1\ndomain: health\n'
        "tags: [grid]\ndate: 2024-02-30\n---\n\r\nStorage flattens the evening peak.\r\n",
        encoding="utf-8",
    )
    before = inbox_names(kb)
    assert ingest(kb, site.url("/blog/two"), str(own), "--tags", "a\nb", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    added = sorted(inbox_names(kb) - before)
    assert len(added) == 2, report
    texts = {name: (kb / "inbox" / "archive" / name).read_text(encoding="utf-8") for name in added}
    page_meta = split_document(next(t for n, t in texts.items() if "second-post" in n))[0]
    assert page_meta["url"] == site.url("/blog/two")  # where it was fetched, not the canonical home page
    own_name = next(n for n in texts if "grid" in n)
    own_meta, own_body = split_document(texts[own_name])
    assert own_meta["title"] == "Grid notes on [31mstorage" and own_meta["doi"] == "10.5555/own.1"
    assert own_meta["domain"] == "health" and own_meta["tags"] == ["grid", "a b"] and "\r" not in own_body
    assert own_name.startswith(datetime.date.today().isoformat())  # 2024-02-30 is no date
    message = git(kb, "log", "-1", "--format=%B")
    assert "\u202e" not in message and "\x1b" not in message and "\x07" not in message
    assert all("\u202e" not in (o["title"] or "") for o in report["outcomes"])


def test_a_page_far_larger_than_any_source_is_refused_unread(
    kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    monkeypatch.setenv("EXTRACTOR_MAX_SOURCE_BYTES", str(100_000))
    page = tmp_path / "huge.html"
    page.write_bytes(b"<html><body>" + b"<p>A paragraph of an enormous page.</p>" * 20_000 + b"</body></html>")
    started = time.monotonic()
    assert ingest(kb, str(page), "--domain", "health") == 1
    assert time.monotonic() - started < 10
    assert "more than 400000: save its text instead" in capsys.readouterr().err


def test_a_feed_entry_without_a_link_comes_in_from_its_own_text(kb: Path, site: Website) -> None:
    text = "Nurses on night shifts reported longer handovers in every ward we visited this winter. " * 8
    feed = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Ward notes</title><link>http://example.org/</link>'
        f'<item><guid isPermaLink="false">t1</guid><title>Night handovers</title><description>&lt;p&gt;{text}'
        "&lt;/p&gt;</description></item></channel></rss>"
    )
    site.pages["/notes.rss"] = Page(feed.encode(), content_type="application/rss+xml")
    before = inbox_names(kb)
    assert ingest(kb, site.url("/notes.rss"), "--domain", "health") == 0
    path = only_new(kb, before)
    assert "night-handovers" in path.name and "longer handovers in every ward" in path.read_text(encoding="utf-8")


def test_options_between_items_and_dates_only_from_the_pages_markup(kb: Path, site: Website) -> None:
    undated = (
        "<html><head><title>Storage notes</title></head><body><article><h1>Storage notes</h1><p>Back in 2009 the "
        "first grid batteries were small; today they smooth the evening peak on most feeders we measured.</p>"
        "</article></body></html>"
    )
    site.pages["/undated"] = Page(undated.encode())
    before = inbox_names(kb)
    assert ingest(kb, "--tags", "grid", site.url("/undated"), site.url("/columns"), "--domain", "health") == 0
    added = sorted(inbox_names(kb) - before)
    assert len(added) == 2, added  # --tags takes one value: the items after it are items, not tags
    undated_name = next(name for name in added if "storage-notes" in name)
    assert undated_name.startswith(datetime.date.today().isoformat())  # "Back in 2009" is not its date
    tags = [split_document((kb / "inbox" / "archive" / n).read_text(encoding="utf-8"))[0]["tags"] for n in added]
    assert tags == [["grid"], ["grid"]]


def test_a_missing_main_branch_is_a_setting_to_fix_before_anything_is_fetched(
    kb: Path, site: Website, capsys: pytest.CaptureFixture[str]
) -> None:
    (kb / "extractor.toml").write_text('main_branch = "trunk"\n', encoding="utf-8")
    assert ingest(kb, site.url("/columns"), "--domain", "health") == 2
    assert "branch 'trunk' does not exist" in capsys.readouterr().err and "/columns" not in site.hits


def test_a_servers_words_reach_the_terminal_without_escape_sequences() -> None:
    from extractor.ingest.document import IngestError

    error = IngestError("http://x/\x1b[31mred", "the server answered HTTP 404 Not\x1b[2J Found")
    assert "\x1b" not in str(error) and str(error).endswith("HTTP 404 Not [2J Found")
