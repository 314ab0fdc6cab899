"""Pushing extraction branches to a real remote and opening pull requests on a forge; provenance."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from extractor.cli.demo import create_demo_kb
from extractor.cli.main import main
from extractor.store.state import StateStore
from tests.conftest import git
from tests.fakeopenai import FakeOpenAI, Reply, answer
from tests.test_cycle import FULLSTACK, FULLSTACK_ANSWER, NULL

TOKEN = "forge-secret-token-123"
BRANCH = "extract/2025-12-00-fullstack-alignment-co-aligning-ai-and-institutions"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def git_daemon(tmp_path: Path):
    """A bare repository served by git daemon on 127.0.0.1, pushes allowed."""
    base = tmp_path / "served"
    bare = base / "kb.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", f"--base-path={base}", "--export-all", "--enable=receive-pack",
         "--listen=127.0.0.1", f"--port={port}", str(base)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield f"git://127.0.0.1:{port}/kb.git", bare
    daemon.terminate()
    daemon.wait(timeout=10)


class Forge:
    """Records pull-request calls; answers as Gitea and GitHub do, or fails on request."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        forge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                forge.calls.append({"path": self.path, "auth": self.headers.get("authorization"), "body": body})
                status = forge.fail_with or 201
                data = json.dumps({"html_url": f"http://forge/pulls/{len(forge.calls)}"} if status == 201
                                  else {"message": "forge is down"}).encode()  # fmt: skip
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v1"


@pytest.fixture
def forge():
    server = Forge()
    yield server
    server.httpd.shutdown()


@pytest.fixture
def kb(tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("EXTRACTOR_FORGE_TOKEN", TOKEN)

    def by_source(request: dict) -> Reply:
        return answer(FULLSTACK_ANSWER if "fullstack" in request["messages"][-1]["content"] else NULL)

    fake_llm.responder = by_source
    return create_demo_kb(tmp_path / "kb")


def configure(kb: Path, remote: str, forge: Forge, kind: str = "gitea") -> None:
    git(kb, "remote", "add", "origin", remote)
    (kb / "extractor.toml").write_text(
        f'remote = "origin"\nforge = "{kind}"\nforge_url = "{forge.url}"\nforge_repo = "team/kb"\n'
    )


def test_extraction_branch_is_pushed_and_a_pull_request_opened(
    kb: Path, git_daemon: tuple[str, Path], forge: Forge, capsys: pytest.CaptureFixture[str]
) -> None:
    remote, bare = git_daemon
    configure(kb, remote, forge)
    assert main(["extract", str(kb / FULLSTACK), "--worker", "3"]) == 0
    out, err = capsys.readouterr()
    assert "published extract/" in out and TOKEN not in out + err
    pushed = subprocess.run(["git", "rev-parse", BRANCH], cwd=bare, capture_output=True, text=True).stdout.strip()
    assert pushed == git(kb, "rev-parse", BRANCH).strip()
    [call] = forge.calls
    assert call["path"] == "/api/v1/repos/team/kb/pulls"
    assert call["auth"] == f"token {TOKEN}"
    request = call["body"]
    assert (request["head"], request["base"]) == (BRANCH, "main")
    assert request["title"].startswith("theseus: extract claims from 2025-12-00-fullstack")
    assert "Agent: theseus (worker 3)" in request["body"] and "Model: gpt-4o-mini" in request["body"]
    assert "claims/ai-alignment/aligning-ai-systems" in request["body"]
    assert TOKEN not in (kb / ".extractor" / "state.db").read_bytes().decode("latin-1")
    assert TOKEN not in git(kb, "log", "--all", "--format=%B") + (kb / "extractor.toml").read_text()


def test_a_failed_pull_request_is_recorded_and_retried_next_cycle(
    kb: Path, git_daemon: tuple[str, Path], forge: Forge, capsys: pytest.CaptureFixture[str]
) -> None:
    remote, _ = git_daemon
    configure(kb, remote, forge, kind="github")
    forge.fail_with = 503
    assert main(["run", "--once", "--kb", str(kb)]) == 0  # the extraction itself succeeded
    store = StateStore.open(kb)
    row = store.get(FULLSTACK)
    assert row is not None and not row.published and "HTTP 503" in (row.publish_error or "")
    assert git(kb, "rev-parse", BRANCH)  # the local commit is kept
    assert TOKEN not in capsys.readouterr().out
    forge.fail_with = None
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    row = store.get(FULLSTACK)
    assert row is not None and row.published and row.pull_request and row.publish_error is None
    assert forge.calls[-1]["auth"] == f"Bearer {TOKEN}"


def test_provenance_names_commit_agent_worker_model_prompt_and_tokens(
    kb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["extract", str(kb / FULLSTACK), "--worker", "2"]) == 0
    assert main(["review", "--kb", str(kb), "accept", BRANCH.removeprefix("extract/")]) == 0
    claim = next((kb / "claims" / "ai-alignment").glob("aligning-ai-systems*.md"))
    capsys.readouterr()
    assert main(["provenance", str(claim), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["agent"] == "Theseus <HEADLESS>" and record["worker"] == 2
    assert record["model"] == "gpt-4o-mini" and len(record["prompt_hash"]) == 16
    assert record["source"] == FULLSTACK and record["prompt_tokens"] == 100 and record["completion_tokens"] == 50
    assert main(["provenance", str(kb / "claims" / "health" / "randomised-evaluations-are-the-strongest-evidence-for"
                 "-the-effects-of-health-policy.md")]) == 1  # fmt: skip
    assert "not an extraction commit" in capsys.readouterr().err
