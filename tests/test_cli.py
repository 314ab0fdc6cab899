"""The command line's conventions: global options anywhere, exit codes, JSON, quiet pipes, retries, selections."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from extractor.cli.main import main
from extractor.store.state import SourceState, StateStore
from tests.conftest import git
from tests.drafts import NULL, grounded_answer, source_body
from tests.fakeopenai import FakeOpenAI, answer
from tests.kbfactory import make_inbox_kb

BODY = (
    "Researchers found that small teams with shared goals can coordinate faster than large hierarchies. "
    "The study shows that coordination costs grow with the number of layers in an organisation.\n"
)


@pytest.fixture
def endpoint(fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("EXTRACTOR_RETRY_INITIAL_WAIT", "0.01")
    fake_llm.responder = lambda request: answer(grounded_answer(source_body(request)))
    return fake_llm


def kb_with(tmp_path: Path, sources: int, settings: str = 'commit_mode = "main"\n') -> Path:
    return make_inbox_kb(tmp_path / "kb", sources, settings=settings, body=lambda n: f"Source {n}. {BODY}")


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed command as a person runs it: a new process, its own stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "extractor", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)  # fmt: skip


def test_global_options_work_after_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kb = kb_with(tmp_path, 1)
    other = tmp_path / "elsewhere.toml"
    other.write_text('claims_dir = "elsewhere"\n', encoding="utf-8")
    assert main(["status", "--kb", str(kb), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kb"] == str(kb)
    assert main(["--json", "--kb", str(kb), "status"]) == 0
    assert json.loads(capsys.readouterr().out)["kb"] == str(kb)
    # --config after the command is the file the command reads
    (kb / "claims" / "x.md").write_text("not a claim\n", encoding="utf-8")
    assert main(["validate", "--kb", str(kb), "--config", str(other), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["claims"] == 0
    assert main(["review", "list", "--kb", str(kb), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_usage_and_configuration_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    kb = kb_with(tmp_path, 1, settings="")
    rejected = cli("review", "reject", "some-branch", "--kb", str(kb))
    assert rejected.returncode == 2
    assert "--reason" in rejected.stderr and "Traceback" not in rejected.stderr
    # no endpoint and no embedded model: a configuration error, not a failed operation
    env = {"EXTRACTOR_LOCAL_MODEL": str(tmp_path / "missing.gguf")}
    missing = cli("extract", "inbox/archive/2026-01-00-source-00.md", cwd=kb, env=env)
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr.count("\n") == 1 and "missing.gguf" in missing.stderr
    bad = cli("status", "--kb", str(tmp_path / "nowhere"))
    assert bad.returncode == 2 and bad.stderr.startswith("extractor: ") and "Traceback" not in bad.stderr
    assert "nowhere: no such file or folder" in bad.stderr
    assert cli("extract", "inbox/archive/no-such-source.md", cwd=kb).returncode == 2


def test_a_missing_main_branch_is_one_line_at_start(tmp_path: Path) -> None:
    kb = kb_with(tmp_path, 1, settings='main_branch = "trunk"\n')
    for command in (["run", "--once"], ["review", "list"]):
        done = cli(*command, "--kb", str(kb))
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1 and "'trunk' does not exist" in done.stderr, done.stderr
    store = StateStore.open(kb)
    try:
        assert store.counts().get(SourceState.RUNNING, 0) == 0
    finally:
        store.close()


@pytest.mark.parametrize("command", [["costs", "--by", "source"], ["costs", "--json", "--by", "source"],
                                     ["review", "list"]])  # fmt: skip
def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path, command: list[str]) -> None:
    """``extractor ... | head -c 1``: more output than a pipe holds (64 KB), so writes meet the closed pipe."""
    from extractor.core.records import CallRecord

    kb = kb_with(tmp_path, 1)
    store = StateStore.open(kb)
    try:
        for number in range(1500):
            call = CallRecord(at=time.time(), model="m", request_hash=f"{number}", latency=0.1, outcome="error",
                              error="x" * 40)  # fmt: skip
            path = f"inbox/archive/{number:05d}-{'a-long-source-name-' * 3}.md"
            store.log_calls(path, 1, [call])
            store.update_or_insert(path, state=SourceState.FAILED, last_error="e" * 200, attempts=1)
    finally:
        store.close()
    reader = subprocess.Popen([sys.executable, "-m", "extractor", *command], cwd=kb, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)  # fmt: skip
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.read(1)
    reader.stdout.close()  # like `| head -c 1`
    stderr = reader.stderr.read().decode()
    assert reader.wait(timeout=60) in (0, 141)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_run_once_takes_only_the_named_sources_and_retry_makes_failures_due_now(
    tmp_path: Path, endpoint: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = kb_with(tmp_path, 4, settings='commit_mode = "main"\nmax_per_cycle = 10\n')
    assert main(["run", "--once", "--kb", str(kb), "--json", "inbox/archive/*-01-source-01.md",
                 str(kb / "inbox/archive/2026-01-02-source-02.md")]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert sorted(o["source_path"] for o in report["outcomes"]) == [
        "inbox/archive/2026-01-01-source-01.md",
        "inbox/archive/2026-01-02-source-02.md",
    ]
    # the rest fails (the endpoint errs), and waits for its retry time
    endpoint.responder = lambda request: answer({**NULL, "claims": "not a list"})
    assert main(["run", "--once", "--kb", str(kb), "-q"]) == 1
    capsys.readouterr()
    store = StateStore.open(kb)
    try:
        failed = {p: r for p, r in store.all_sources().items() if r.state == SourceState.FAILED}
        assert len(failed) == 2 and all((r.next_retry_at or 0) > time.time() + 60 for r in failed.values())
    finally:
        store.close()
    assert main(["status", "--kb", str(kb)]) == 0
    assert re.search(r"failed after 1 attempt\(s\), retried in \d+m \(at \d\d:\d\d\)", capsys.readouterr().out)
    # nothing is due until retried: a cycle takes nothing
    endpoint.responder = lambda request: answer(grounded_answer(source_body(request)))
    assert main(["run", "--once", "--kb", str(kb), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["taken"] == 0
    assert main(["retry", "--kb", str(kb), "--json", "inbox/archive/2026-01-00-source-00.md"]) == 0
    assert json.loads(capsys.readouterr().out)["retried"] == ["inbox/archive/2026-01-00-source-00.md"]
    assert main(["run", "--once", "--kb", str(kb), "--json"]) == 0
    assert [o["source_path"] for o in json.loads(capsys.readouterr().out)["outcomes"]] == [
        "inbox/archive/2026-01-00-source-00.md"
    ]
    assert main(["retry", "--failed", "--kb", str(kb)]) == 0
    assert "1 source(s) due again" in capsys.readouterr().out
    assert main(["retry", "--kb", str(kb)]) == 2  # nothing named
    assert main(["retry", "--kb", str(kb), "inbox/archive/nothing-*.md"]) == 1
    assert "no failed or parked source matches" in capsys.readouterr().err


def test_named_sources_are_paths_from_the_current_folder_and_a_name_that_matches_nothing_is_said(
    tmp_path: Path, endpoint: FakeOpenAI
) -> None:
    kb = kb_with(tmp_path, 3, settings='commit_mode = "main"\n')
    (kb / "claims" / "sub").mkdir()
    env = {"OPENAI_BASE_URL": endpoint.base_url}
    ran = cli("run", "--once", "--json", "../../inbox/archive/*-01-source-01.md", cwd=kb / "claims" / "sub", env=env)
    assert ran.returncode == 0, ran.stderr
    assert [o["source_path"] for o in json.loads(ran.stdout)["outcomes"]] == ["inbox/archive/2026-01-01-source-01.md"]
    typo = cli("run", "--once", "--json", "inbox/archive/2026-01-01-sorce-01.md", cwd=kb, env=env)
    assert typo.returncode == 1 and json.loads(typo.stdout)["taken"] == 0
    assert "inbox/archive/2026-01-01-sorce-01.md: no due source matches" in typo.stderr
    outside = cli("run", "--once", "../../../x.md", cwd=kb / "claims" / "sub", env=env)
    assert outside.returncode == 2 and "not inside the KB" in outside.stderr


def test_review_list_tells_null_results_from_drafts(
    tmp_path: Path, endpoint: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = kb_with(tmp_path, 2, settings="")

    def one_null(request: dict[str, object]) -> object:
        return answer(NULL if "Source 0." in source_body(request) else grounded_answer(source_body(request)))

    endpoint.responder = one_null
    assert main(["run", "--once", "--kb", str(kb), "-q"]) == 0
    capsys.readouterr()
    assert main(["review", "list", "--kb", str(kb), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main(["review", "list", "--kb", str(kb), "--json", "--null"]) == 0
    assert [item["source"] for item in json.loads(capsys.readouterr().out)] == ["inbox/archive/2026-01-00-source-00.md"]
    assert main(["review", "list", "--kb", str(kb), "--with-claims"]) == 0
    out = capsys.readouterr().out
    assert "source-01" in out and "source-00" not in out and "1 extraction(s) awaiting review" in out
    # null results in bulk: accepted together, the drafts left for a person
    assert main(["review", "accept", "--kb", str(kb)]) == 2
    assert main(["review", "accept", "--null", "--kb", str(kb)]) == 0
    assert "accepted extract/2026-01-00-source-00" in capsys.readouterr().out
    assert "status: null-result" in git(kb, "show", "main:inbox/archive/2026-01-00-source-00.md")
    assert main(["review", "list", "--kb", str(kb), "--json"]) == 0
    assert [item["source"] for item in json.loads(capsys.readouterr().out)] == ["inbox/archive/2026-01-01-source-01.md"]


def test_provenance_prints_plain_values_and_takes_kb(
    tmp_path: Path, endpoint: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = kb_with(tmp_path, 1)
    assert main(["run", "--once", "--kb", str(kb), "-q"]) == 0
    capsys.readouterr()
    claim = next((kb / "claims").rglob("*.md")).relative_to(kb).as_posix()
    assert main(["provenance", claim, "--kb", str(kb)]) == 0
    out = capsys.readouterr().out
    assert "branches: main" in out and "[" not in out.replace("[[", "")
    assert main(["provenance", claim, "--kb", str(kb), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["branches"] == ["main"]


def test_log_lines_carry_iso_8601_times_with_an_offset(capsys: pytest.CaptureFixture[str]) -> None:
    from extractor.cli.output import configure_json_logging

    logger = configure_json_logging(sys.stdout)
    try:
        logger.info("cycle", extra={"taken": 1})
        line = json.loads(capsys.readouterr().out)
    finally:
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", line["time"]), line["time"]


def test_validate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kb = kb_with(tmp_path, 1)
    (kb / "claims" / "bad.md").write_text("---\ntype: claim\n---\n\n# x\n", encoding="utf-8")
    git(kb, "add", "-A")
    assert main(["validate", "--kb", str(kb), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["claims"] == 1 and data["problems"] and data["problems"][0]["path"] == "claims/bad.md"


def test_an_unreachable_endpoint_is_named_in_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    kb = kb_with(tmp_path, 1)
    url = f"http://127.0.0.1:{port}/v1"
    done = cli("extract", "inbox/archive/2026-01-00-source-00.md", cwd=kb,
               env={"OPENAI_BASE_URL": url, "EXTRACTOR_MAX_ATTEMPTS": "1"})  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"127.0.0.1:{port}/v1/chat/completions" in done.stderr, done.stderr


def test_doctor_rebuilds_a_damaged_state_database_that_status_reports_in_one_line(
    tmp_path: Path, endpoint: FakeOpenAI
) -> None:
    kb = kb_with(tmp_path, 2)
    assert cli("run", "--once", "--kb", str(kb), "-q", env={"OPENAI_BASE_URL": endpoint.base_url}).returncode == 0
    database = kb / ".extractor" / "state.db"
    with database.open("r+b") as handle:  # the header and first pages overwritten
        handle.write(b"\xff" * 8192)
    status = cli("status", "--kb", str(kb))
    assert status.returncode == 1 and status.stderr.count("\n") == 1, status.stderr
    assert str(database) in status.stderr and "extractor doctor" in status.stderr
    doctor = cli("doctor", "--kb", str(kb))
    assert doctor.returncode == 0 and "rebuilt from git" in doctor.stdout, doctor.stderr
    again = cli("status", "--kb", str(kb), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["counts"] == {"done": 2}
    assert "fine" in cli("doctor", "--kb", str(kb)).stdout


def test_a_cycle_logged_into_a_closed_pipe_goes_on_without_tracebacks(tmp_path: Path, endpoint: FakeOpenAI) -> None:
    """``extractor run --once | head -1`` from cron: every source is still done, and stderr stays clean."""
    from tests.fakeopenai import Reply

    kb = kb_with(tmp_path, 4, settings='commit_mode = "main"\nmax_per_cycle = 10\n')
    endpoint.responder = lambda request: Reply(body=answer(grounded_answer(source_body(request))).body, delay=0.3)
    env = {**os.environ, "OPENAI_BASE_URL": endpoint.base_url}
    reader = subprocess.Popen([sys.executable, "-m", "extractor", "run", "--once", "--kb", str(kb)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert reader.stdout is not None and reader.stderr is not None
    first = json.loads(reader.stdout.readline())
    assert first["message"] == "source" and first["levelname"] == "INFO"
    reader.stdout.close()  # like `| head -1`
    stderr = reader.stderr.read().decode()
    assert reader.wait(timeout=120) in (0, 141)
    assert "Traceback" not in stderr and "Logging error" not in stderr, stderr
    assert "4 done" in cli("status", "--kb", str(kb)).stdout.replace("sources: 4 done", "4 done")


def test_review_decisions_check_everything_before_git_is_touched(
    tmp_path: Path, endpoint: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = kb_with(tmp_path, 2, settings="")
    assert main(["run", "--once", "--kb", str(kb), "-q"]) == 0
    capsys.readouterr()
    refs = git(kb, "for-each-ref")
    # one bad name among good ones: nothing merged
    assert main(["review", "accept", "2026-01-00-source-00", "no-such-branch", "--kb", str(kb)]) == 1
    assert "not an extraction branch: 'no-such-branch'" in capsys.readouterr().err
    assert git(kb, "for-each-ref") == refs
    # revision syntax is a usage error
    for slug in ("2026-01-00-source-00~1", "2026-01-00-source-00@{0}", "../x", ""):
        assert main(["review", "reject", slug, "--reason", "no", "--kb", str(kb)]) == 2, slug
    assert main(["review", "reject", "2026-01-00-source-00", "--reason", " ", "--kb", str(kb)]) == 2
    assert "--reason needs a text" in capsys.readouterr().err
    # a damaged state store: refused before the merge, not after it
    with (kb / ".extractor" / "state.db").open("r+b") as handle:
        handle.write(b"\xff" * 8192)
    for decision in (["accept", "2026-01-00-source-00"], ["reject", "2026-01-01-source-01", "--reason", "no"]):
        assert main(["review", *decision, "--kb", str(kb)]) == 1
        assert "extractor doctor" in capsys.readouterr().err
    assert git(kb, "for-each-ref") == refs


def test_a_cycle_with_nothing_due_starts_no_embedded_model(tmp_path: Path, endpoint: FakeOpenAI) -> None:
    """cron every ten minutes on the embedded default: with nothing to ask, no model server is started (here
    the model file does not even exist, so starting one would fail)."""
    kb = kb_with(tmp_path, 1)
    assert cli("run", "--once", "--kb", str(kb), "-q", env={"OPENAI_BASE_URL": endpoint.base_url}).returncode == 0
    env = {"EXTRACTOR_LOCAL_MODEL": str(tmp_path / "missing.gguf")}
    clean = {k: v for k, v in os.environ.items() if k != "OPENAI_BASE_URL"}
    idle = subprocess.run([sys.executable, "-m", "extractor", "run", "--once", "--kb", str(kb), "--json"],
                          capture_output=True, text=True, env={**clean, **env}, timeout=120)  # fmt: skip
    assert idle.returncode == 0, idle.stderr
    assert json.loads(idle.stdout)["taken"] == 0
    # a source due: the model is needed, and its absence is the configuration error it always was
    (kb / "inbox" / "archive" / "2026-02-00-new.md").write_text(
        "---\ntype: source\ntitle: New\nauthor: A\ndate: 2026-02-00\ndomain: ai-alignment\nstatus: unprocessed\n"
        f"---\n\n{BODY}", encoding="utf-8")  # fmt: skip
    git(kb, "add", "-A")
    git(kb, "commit", "-qm", "a new source")
    busy = subprocess.run([sys.executable, "-m", "extractor", "run", "--once", "--kb", str(kb)],
                          capture_output=True, text=True, env={**clean, **env}, timeout=120)  # fmt: skip
    assert busy.returncode == 2 and "missing.gguf" in busy.stderr


def test_a_damaged_rate_limit_file_is_one_line_and_doctor_sets_it_aside(tmp_path: Path, endpoint: FakeOpenAI) -> None:
    from extractor.llm.ratelimit import LIMITS_FILE

    kb = kb_with(tmp_path, 1, settings='commit_mode = "main"\nrequests_per_minute = 600\n')
    (kb / ".extractor").mkdir(exist_ok=True)
    (kb / ".extractor" / LIMITS_FILE).write_bytes(b"\xff" * 8192)
    env = {"OPENAI_BASE_URL": endpoint.base_url}
    done = cli("extract", "inbox/archive/2026-01-00-source-00.md", cwd=kb, env=env)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert LIMITS_FILE in done.stderr and "extractor doctor" in done.stderr
    assert cli("doctor", "--kb", str(kb)).returncode == 0
    assert cli("extract", "inbox/archive/2026-01-00-source-00.md", cwd=kb, env=env).returncode == 0


def test_a_price_is_a_number(tmp_path: Path) -> None:
    from extractor.core.settings import SettingsError, load_settings

    (tmp_path / "extractor.toml").write_text("prices = { m = { input = true, output = 1 } }\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="prices.m.input"):
        load_settings(tmp_path)
