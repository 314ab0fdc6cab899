"""Ingest end to end: a generated PDF and a served page become sources that ``run --once`` extracts like any
other; the drop folder is ingested at the start of a cycle."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from extractor.cli.demo import create_demo_kb
from extractor.cli.main import main
from extractor.kb.yamlio import split_document
from extractor.store.state import SourceState, StateStore
from tests.conftest import git
from tests.drafts import grounded_answer, source_body
from tests.fakeopenai import FakeOpenAI, answer
from tests.pdfs import DOI, TITLE, paper_pdf
from tests.website import Website


@pytest.fixture
def endpoint(fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("EXTRACTOR_RETRY_INITIAL_WAIT", "0.01")
    monkeypatch.setenv("EXTRACTOR_COMMIT_MODE", "main")
    monkeypatch.setenv("EXTRACTOR_MAX_PER_CYCLE", "50")
    fake_llm.responder = lambda request: answer(
        {"domain": "health", "reason": "scripted"} if "Choose the one domain" in str(request) else
        grounded_answer(source_body(request))
    )  # fmt: skip
    return fake_llm


def added_sources(kb: Path, since: str) -> list[str]:
    names = git(kb, "diff", "--name-only", "--diff-filter=A", since, "HEAD", "--", "inbox/archive").split()
    return sorted(names)


def test_an_ingested_pdf_and_page_are_extracted_by_the_next_cycle(
    tmp_path: Path, site: Website, endpoint: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = create_demo_kb(tmp_path / "kb")
    store = StateStore.open(kb)
    demo_sources = len(list((kb / "inbox" / "archive").glob("*.md")))
    store.close()
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(paper_pdf(pages=3))
    start = git(kb, "rev-parse", "HEAD").strip()
    assert main(["ingest", "--kb", str(kb), str(pdf), site.url("/columns")]) == 0
    new = added_sources(kb, start)
    assert len(new) == 2, new
    pdf_source = next(path for path in new if "lovelace" in path)
    metadata, body = split_document((kb / pdf_source).read_text(encoding="utf-8"))
    assert metadata["title"] == TITLE and metadata["doi"] == DOI and metadata["domain"] == "health"
    assert metadata["ingested_from"] == "pdf" and metadata["format"] == "paper"
    capsys.readouterr()
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    store = StateStore.open(kb)
    try:
        rows = store.all_sources()
    finally:
        store.close()
    assert len(rows) == demo_sources + 2
    for path in new:
        assert rows[path].state is SourceState.DONE, rows[path]
        text = (kb / path).read_text(encoding="utf-8")
        assert split_document(text)[0]["status"] in ("processed", "null-result"), path
    made = git(kb, "log", "--format=%s", f"{start}..HEAD")
    assert sum(source.split("/")[-1] in made for source in new) == 2, made


def test_the_drop_folder_is_ingested_and_extracted_in_one_cycle(
    tmp_path: Path, site: Website, endpoint: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = create_demo_kb(tmp_path / "kb")
    queue = kb / "inbox" / "queue"
    queue.mkdir()
    (queue / "paper.pdf").write_bytes(paper_pdf(pages=2))
    (queue / "broken.pdf").write_bytes(paper_pdf(pages=2)[:3000])
    notes = "# Notes on staffing\n\nNurses per ward fell by a tenth over two years in the hospitals surveyed.\n"
    (queue / "notes.md").write_text(notes, encoding="utf-8")
    (queue / "copying.pdf.part").write_bytes(b"%PDF-1.4 half")  # a download in progress: left alone
    (queue / "still-writing.md").write_text("# Half of a note", encoding="utf-8")
    for path in queue.iterdir():
        if path.name != "still-writing.md":  # changed just now: may still be being written
            os.utime(path, (time.time() - 60, time.time() - 60))
    start = git(kb, "rev-parse", "HEAD").strip()
    capsys.readouterr()
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert "; 2 ingested from the drop folder (1 item(s) failed: see its failed/ folder)" in capsys.readouterr().out
    new = added_sources(kb, start)
    assert len(new) == 2 and any("lovelace" in path for path in new), new
    assert sorted(p.name for p in (queue / "done").iterdir()) == ["notes.md", "paper.pdf"]
    assert sorted(p.name for p in (queue / "failed").iterdir()) == ["broken.pdf", "broken.pdf.reason.txt"]
    reason = (queue / "failed" / "broken.pdf.reason.txt").read_text(encoding="utf-8")
    assert "damaged PDF" in reason and reason.count("\n") == 1
    assert sorted(p.name for p in queue.iterdir() if p.is_file()) == ["copying.pdf.part", "still-writing.md"]
    store = StateStore.open(kb)
    try:
        assert all(store.get(path).state is SourceState.DONE for path in new)  # type: ignore[union-attr]
    finally:
        store.close()
    assert git(kb, "status", "--porcelain", "--", "inbox/archive").strip() == ""
