from __future__ import annotations

import multiprocessing
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakeopenai import FakeOpenAI
from tests.postgres import PostgresServer
from tests.postgres import postgres_server as start_postgres
from tests.website import ARTICLE, Page, Website

# Headless Chromium fixtures (browser, need_chromium) for the tests of pages.
pytest_plugins = ["tests.browser"]

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "teleo-codex"


def need_corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS} (tests that read it need ../shared)")
    return CORPUS


@pytest.fixture
def corpus() -> Path:
    return need_corpus()


@pytest.fixture
def site() -> Iterator[Website]:
    """A website on 127.0.0.1 serving :data:`tests.website.ARTICLE` at ``/columns``; tests add pages."""
    server = Website({"/columns": Page(ARTICLE.encode())}).start()
    yield server
    server.stop()


@pytest.fixture
def fake_llm():
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's endpoint, key or settings."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "EXTRACTOR_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    import os

    for name in list(os.environ):
        if name.startswith("EXTRACTOR_"):
            monkeypatch.delenv(name, raising=False)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def init_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test User")
    git(path, "config", "user.email", "test@example.com")
    return path


def commit_all(repo: Path, message: str = "initial") -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def demo_kb_with(
    target: Path, monkeypatch: pytest.MonkeyPatch, base_url: str, files: dict[str, str], message: str = "add a source"
) -> Path:
    """The demo KB with ``files`` committed by a person, pointed at the scripted server at ``base_url``."""
    from extractor.cli.demo import create_demo_kb

    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    monkeypatch.setenv("EXTRACTOR_RETRY_INITIAL_WAIT", "0.01")
    kb = create_demo_kb(target)
    for path, text in files.items():
        (kb / path).parent.mkdir(parents=True, exist_ok=True)
        (kb / path).write_text(text, encoding="utf-8")
        git(kb, "add", path)
    git(kb, "-c", "user.name=Test User", "-c", "user.email=test@example.com", "commit", "-qm", message)
    return kb


@pytest.fixture
def corpus_kb(tmp_path: Path, corpus: Path) -> Path:
    """A real git KB laid out like teleo-codex: claims under domains/, core/, foundations/."""
    kb = init_repo(tmp_path / "kb")
    for folder in ("domains", "core", "foundations"):
        shutil.copytree(corpus / "kb" / folder, kb / folder)
    (kb / "inbox" / "archive").mkdir(parents=True)
    (kb / "extractor.toml").write_text('claims_dir = "domains"\ncommit_mode = "main"\n', encoding="utf-8")
    commit_all(kb)
    return kb


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the whole session (tests.postgres); skipped without its binaries,
    failed under CI=true."""
    with start_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL (with its password) of a fresh database of its own for each test, dropped after it."""
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url)


def started_together(target: Callable[..., None], *args: object, processes: int = 6) -> list[int | None]:
    """Exit codes of ``processes`` spawned processes running ``target(*args, start)``, released at one moment
    (each waits on the ``start`` event it is given)."""
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    started = [context.Process(target=target, args=(*args, start)) for _ in range(processes)]
    for process in started:
        process.start()
    start.set()
    for process in started:
        process.join(timeout=60)
    return [process.exitcode for process in started]
