"""Secrets: the API key and the forge token never reach logs, the state store, git, messages or tracebacks.

Recognisable fake secrets are set, the real commands run through their success
paths and through the failures most likely to leak (an endpoint or forge that
echoes the Authorization header, retries that give up, invalid replies stored
raw, a push to a URL with credentials, a bug in a worker), and then every
output is grepped: stdout, stderr, log lines, every file under the KB, every git
object of the KB and of the pushed bare repository, and every row of the state
database.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import SecretStr

import extractor
from extractor.cli.demo import create_demo_kb
from extractor.cli.main import main
from extractor.cli.output import RedactFilter
from extractor.core import redact
from extractor.core.redact import PLACEHOLDER, known_secrets, scrub_data, url_secrets
from extractor.store.state import StateStore
from tests.conftest import git
from tests.fakeopenai import FakeOpenAI, Reply, answer, completion, error
from tests.test_cycle import FULLSTACK, FULLSTACK_ANSWER, NULL
from tests.test_publish import BRANCH, Forge, forge, free_port, git_daemon  # noqa: F401 - fixtures

API_KEY = "sk-test-SECRET-apikey-7f3a9c1e5b2d4086"
FORGE_TOKEN = "forge-SECRET-token-5e8d2b7a91c3f604"
URL_PASSWORD = "url-SECRET-password-94b1d9e0c2a7"
# Each whole secret, and each half of it: a cut-off secret is a leak too.
NEEDLES = [part for s in (API_KEY, FORGE_TOKEN, URL_PASSWORD) for part in (s, s[: len(s) // 2], s[len(s) // 2 :])]
# Sources whose endpoint misbehaves, each in its own way (see hostile_reply); "crash" fails inside the worker.
MODES = ["unauthorized", "forbidden", "bad-request", "server-error", "invalid-json", "refusal", "crash"]
FORGE_PAD = 174  # puts the echoed token across the 200th character of the forge's answer


def source_for(mode: str) -> str:
    return f"inbox/archive/2026-02-01-leak-{mode}.md"


# --- finding secrets -------------------------------------------------------------------------------


def needles_in(data: bytes) -> list[str]:
    return [needle for needle in NEEDLES if needle.encode() in data]


class Evidence:
    """Everything the product wrote, by where it was found, to be grepped for secrets."""

    def __init__(self) -> None:
        self.parts: dict[str, bytes] = {}

    def add(self, where: str, data: str | bytes) -> None:
        self.parts[where] = self.parts.get(where, b"") + (data.encode() if isinstance(data, str) else data)

    def leaks(self) -> dict[str, list[str]]:
        return {where: found for where, data in self.parts.items() if (found := needles_in(data))}

    def add_repo(self, repo: Path, name: str, skip: tuple[str, ...] = ()) -> None:
        """Every file (the state database and its WAL too), every git object, every commit message."""
        for path in sorted(p for p in repo.rglob("*") if p.is_file()):
            if path.relative_to(repo).as_posix() not in skip:
                self.add(f"{name}: {path.relative_to(repo)}", path.read_bytes())
        objects = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=repo, capture_output=True)
        self.add(f"{name}: git objects", objects.stdout)
        self.add(f"{name}: commit messages", git(repo, "log", "--all", "--format=%B"))

    def add_database(self, kb: Path) -> None:
        """Every row of every table of the state database."""
        db = sqlite3.connect(f"file:{kb / '.extractor' / 'state.db'}?mode=ro", uri=True)
        try:
            tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                self.add(f"state table {table}", repr(db.execute(f"SELECT * FROM {table}").fetchall()))
        finally:
            db.close()

    def assert_clean(self) -> None:
        assert self.parts, "nothing was collected"
        assert self.leaks() == {}


# --- hostile servers -------------------------------------------------------------------------------


def record_authorization(server: FakeOpenAI) -> list[str]:
    """The Authorization header of every request the endpoint receives, in order."""
    seen: list[str] = []

    class Recording(server.httpd.RequestHandlerClass):  # type: ignore[name-defined,misc]
        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            seen.append(self.headers.get("authorization", ""))
            super().do_POST()

    server.httpd.RequestHandlerClass = Recording
    return seen


def hostile_reply(mode: str, authorization: str) -> Reply:
    """What a misconfigured or hostile proxy answers: the caller's credentials echoed back."""
    key = authorization.removeprefix("Bearer ")
    replies = {
        "unauthorized": lambda: error(401, f"Invalid Authorization header: {authorization}"),
        "forbidden": lambda: Reply(status=403, body={"message": f"key {key} may not use this model"}),
        "bad-request": lambda: error(400, f"Bad request: api_key={key}"),
        "server-error": lambda: error(500, f"upstream failed for {authorization}"),
        "invalid-json": lambda: completion(f"Not JSON. You sent {authorization}"),
        "refusal": lambda: completion(None, refusal=f"I will not answer the holder of {key}"),
    }
    return replies.get(mode, lambda: answer(NULL))()


def hostile_endpoint(server: FakeOpenAI) -> list[str]:
    """Sources marked ``leak-mode: X`` get ``hostile_reply(X)``; the fullstack sample a claim; others nothing."""
    seen = record_authorization(server)

    def reply(request: dict[str, Any]) -> Reply:
        text = next(m["content"] for m in request["messages"] if m["role"] == "user")
        if mode := re.search(r"leak-mode: ([a-z-]+)", text):
            return hostile_reply(mode.group(1), seen[-1])
        return answer(FULLSTACK_ANSWER if "fullstack" in text.lower() else NULL)

    server.responder = reply
    return seen


def echo_credentials(server: Forge) -> None:
    """While ``server.echo`` holds a status, the forge answers it with the caller's token in the body."""
    server.echo = None  # type: ignore[attr-defined]

    class Echoing(server.httpd.RequestHandlerClass):  # type: ignore[name-defined,misc]
        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            if server.echo is None:  # type: ignore[attr-defined]
                return super().do_POST()
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            auth = self.headers.get("authorization", "")
            server.calls.append({"path": self.path, "auth": auth, "body": body})
            data = f"denied: {'.' * FORGE_PAD}{auth.split()[-1]}".encode()
            self.send_response(server.echo)  # type: ignore[attr-defined]
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server.httpd.RequestHandlerClass = Echoing


# --- knowledge bases -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_registered_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no secret known from earlier settings, so none passes thanks to another."""
    monkeypatch.setattr(redact, "_registered", set())


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch, fake_llm: FakeOpenAI) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("EXTRACTOR_FORGE_TOKEN", FORGE_TOKEN)


def add_hostile_sources(kb: Path) -> None:
    for mode in MODES:
        (kb / source_for(mode)).write_text(
            f"---\ntype: source\ntitle: Leak test {mode}\nauthor: A\ndate: 2026-02-01\ndomain: ai-alignment\n"
            f"status: unprocessed\n---\n\nleak-mode: {mode}\n\nA note about alignment.\n",
            encoding="utf-8",
        )
    git(kb, "add", "inbox")
    git(kb, "-c", "user.name=Test User", "-c", "user.email=test@example.com", "commit", "-qm", "hostile sources")


def write_settings(kb: Path, lines: str) -> None:
    base = "max_per_cycle = 20\nmax_attempts = 3\nmax_reasks = 1\nretry_initial_wait = 0.01\nretry_max_wait = 0.05\n"
    (kb / "extractor.toml").write_text(base + lines, encoding="utf-8")


def run_subprocess(kb: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``python -m extractor run --once`` with the SDK's debug logging on and a fault injected into the workers.

    The fault is a ``sitecustomize`` on PYTHONPATH, so the command and its spawned
    worker processes load it: extraction of the "crash" source raises an error
    whose message carries the key, as a library that prints request headers would.
    """
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        textwrap.dedent("""
            import os

            from extractor.run import service

            _extract = service.extract_source


            def _crashing(source, source_path, *args, **kwargs):
                if "leak-crash" in source_path:
                    key = os.environ["OPENAI_API_KEY"]
                    raise RuntimeError(f"request failed with headers {{'Authorization': 'Bearer {key}'}}")
                return _extract(source, source_path, *args, **kwargs)


            service.extract_source = _crashing
        """),
        encoding="utf-8",
    )
    project = Path(extractor.__file__).resolve().parent.parent  # the same code the in-process commands run
    env = {**os.environ, "OPENAI_LOG": "debug", "PYTHONPATH": os.pathsep.join([str(inject), str(project)])}
    return subprocess.run(
        [sys.executable, "-m", "extractor", "run", "--once", "--kb", str(kb)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


# --- the redaction itself --------------------------------------------------------------------------


def test_configured_values_are_redacted_in_every_form_they_take() -> None:
    secret = "p@ss/word+SECRET-1234"
    text = f"raw {secret}, in a URL {quote(secret, safe='')}, in JSON {json.dumps(secret)}"
    assert redact.redact(text, [secret]) == f'raw {PLACEHOLDER}, in a URL {PLACEHOLDER}, in JSON "{PLACEHOLDER}"'
    assert redact.redact("key abc", ["abc"]) == "key abc"  # too short to be a secret; redacting it would garble


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJhbGciOi.J9x", f"Authorization: Bearer {PLACEHOLDER}"),
        ("header token 0123456789abcdef", f"header token {PLACEHOLDER}"),
        ("authorization: Basic dXNlcjpwYXNz", f"authorization: Basic {PLACEHOLDER}"),
        ('{"api-key": "abcdEFGH1234"}', f'{{"api-key": "{PLACEHOLDER}"}}'),
        ("X-Api-Key=zz99zz99zz99", f"X-Api-Key={PLACEHOLDER}"),
        ("https://bot:hunter2@git.example.org/kb.git", f"https://bot:{PLACEHOLDER}@git.example.org/kb.git"),
        ("https://ghp_0123abcd@github.com/o/r", f"https://{PLACEHOLDER}@github.com/o/r"),
        ("lookup of user:pw-SECRET@127.0.0.1 failed", f"lookup of user:{PLACEHOLDER}@127.0.0.1 failed"),
    ],
)
def test_credentials_and_url_passwords_are_redacted(text: str, expected: str) -> None:
    assert redact.redact(text, ["pw-SECRET"]) == expected


@pytest.mark.parametrize(
    "text",
    [
        "the bearer of bad news; a basic income; token limits of 4096",
        "api_key: Input should be a valid string",
        "ssh://git@github.com/o/r.git and http://host/p?x=a@b",
        "claims/ai-alignment/aligning-ai-systems-with-their-operators.md",
    ],
)
def test_prose_paths_and_plain_urls_are_left_alone(text: str) -> None:
    assert redact.redact(text) == text


def test_url_secrets_are_the_password_or_a_lone_https_token() -> None:
    assert url_secrets("git://bot:p%40ss@host/kb.git") == ["p%40ss", "p@ss"]
    assert url_secrets("https://TOKEN123@host/kb.git") == ["TOKEN123", "TOKEN123"]
    assert url_secrets("ssh://git@host/kb.git") == url_secrets("origin") == url_secrets(None) == []


def test_known_secrets_come_from_the_environment_and_the_loaded_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("EXTRACTOR_REMOTE", f"https://bot:{URL_PASSWORD}@host/kb.git")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    redact.register(SecretStr(FORGE_TOKEN), "short", None)
    assert known_secrets() == {API_KEY, URL_PASSWORD, FORGE_TOKEN}
    data = scrub_data({"error": f"Bearer {API_KEY}", "list": [(FORGE_TOKEN, 3)], "n": 1})
    assert data == {"error": f"Bearer {PLACEHOLDER}", "list": [(PLACEHOLDER, 3)], "n": 1}


def test_log_records_are_redacted_in_message_arguments_extras_and_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A filter on the JSON log handler: whatever a caller logs, the line written carries no secret."""
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactFilter())
    logger = logging.getLogger("extractor.test-secrets")
    logger.addHandler(handler)
    try:
        logger.warning("sent %s", API_KEY, extra={"outcome": {"error": f"HTTP 401: {API_KEY}"}})
        try:
            raise RuntimeError(f"crashed holding {API_KEY}")
        except RuntimeError:
            logger.exception("poll failed")
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert f"sent {PLACEHOLDER}" in written and f"crashed holding {PLACEHOLDER}" in written
    assert needles_in(written.encode()) == []


# --- the grep catches what it should ---------------------------------------------------------------


def test_the_grep_finds_a_secret_planted_in_each_place_it_searches(tmp_path: Path) -> None:
    """Without this the other tests could pass by looking in the wrong places: compressed objects, the DB."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    identity = ["-c", "user.name=T", "-c", "user.email=t@example.com"]
    git(repo, *identity, "commit", "-q", "--allow-empty", "-m", f"carries {FORGE_TOKEN[:18]}")
    subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=API_KEY.encode(), capture_output=True)
    store = StateStore.open(repo)
    store.db.execute("INSERT INTO cycles (started_at, mode, note) VALUES (0, 'once', ?)", (URL_PASSWORD,))
    store.close()

    evidence = Evidence()
    evidence.add_repo(repo, "repo", skip=(".extractor/state.db",))
    evidence.add_database(repo)
    leaks = evidence.leaks()
    assert leaks["repo: commit messages"] == [FORGE_TOKEN[: len(FORGE_TOKEN) // 2]]  # half a token counts
    assert API_KEY in leaks["repo: git objects"]  # found although the object file is compressed
    assert URL_PASSWORD in leaks["state table cycles"]
    assert not any(where.startswith("repo: .git/objects") for where in leaks)  # the raw files alone would miss them


# --- the real commands -----------------------------------------------------------------------------


def test_hostile_endpoint_and_forge_leave_no_secret_anywhere(
    tmp_path: Path,
    secrets: None,
    fake_llm: FakeOpenAI,
    forge: Forge,  # noqa: F811 - the imported fixture
    git_daemon: tuple[str, Path],  # noqa: F811 - the imported fixture
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One cycle in a real subprocess, then status, review, extract, provenance and validate in process."""
    remote, bare = git_daemon
    kb = create_demo_kb(tmp_path / "kb")
    add_hostile_sources(kb)
    git(kb, "remote", "add", "origin", remote)
    write_settings(kb, f'workers = 2\nremote = "origin"\nforge = "gitea"\nforge_url = "{forge.url}"\n'
                       'forge_repo = "team/kb"\n')  # fmt: skip
    seen = hostile_endpoint(fake_llm)
    echo_credentials(forge)
    forge.echo = 401  # type: ignore[attr-defined]
    holder = StateStore.open(kb)  # an open reader keeps the WAL file in place, so its bytes are grepped too
    evidence = Evidence()
    try:
        ran = run_subprocess(kb, tmp_path)
        evidence.add("subprocess stdout", ran.stdout)
        evidence.add("subprocess stderr", ran.stderr)
        assert ran.returncode == 1, ran.stderr[-2000:]
        assert_cycle_logged(ran.stdout)
        assert "DEBUG" in ran.stderr  # the SDK's debug logging was on

        caplog.set_level(logging.DEBUG)
        forge.echo = 500  # type: ignore[attr-defined]
        run_in_process(kb, capsys, evidence)
        assert (kb / ".extractor" / "state.db-wal").stat().st_size > 0
        evidence.add_repo(kb, "kb")
    finally:
        holder.close()
    evidence.add_database(kb)
    evidence.add_repo(bare, "pushed")
    evidence.add("log records", caplog.text)

    assert set(seen) == {f"Bearer {API_KEY}"}  # the key was really in use
    assert forge.calls and {call["auth"] for call in forge.calls} == {f"token {FORGE_TOKEN}"}
    git(kb, "merge-base", "--is-ancestor", git(bare, "rev-parse", BRANCH).strip(), "main")  # pushed, then accepted
    assert_state_redacted(kb)
    evidence.assert_clean()


def assert_cycle_logged(stdout: str) -> None:
    """Every failure was logged, and each error had the echoed secret replaced, not just left out."""
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    errors = {r["source_path"]: r["error"] for r in records if r.get("message") == "source" and not r["ok"]}
    assert set(errors) == {source_for(mode) for mode in MODES}
    for mode in set(MODES) - {"invalid-json"}:  # that reply is kept raw (see assert_state_redacted), not in the error
        assert PLACEHOLDER in errors[source_for(mode)], (mode, errors[source_for(mode)])
    assert "HTTP 401" in errors[source_for("unauthorized")] and "HTTP 500" in errors[source_for("server-error")]
    assert "internal error: RuntimeError" in errors[source_for("crash")]


def run_in_process(kb: Path, capsys: pytest.CaptureFixture[str], evidence: Evidence) -> None:
    """The commands a person runs next, each one's output kept as evidence and checked for what it should say."""

    def command(argv: list[str], code: int | None, expect: Callable[[str, str], bool]) -> None:
        status = main(argv)
        out, err = capsys.readouterr()
        evidence.add(f"extractor {argv[0]} {argv[-1]}: stdout", out)
        evidence.add(f"extractor {argv[0]} {argv[-1]}: stderr", err)
        assert code is None or status == code, (argv, out, err)
        assert expect(out, err), (argv, out, err)

    slug, kb_arg = BRANCH.removeprefix("extract/"), ["--kb", str(kb)]
    command(["run", "--once", *kb_arg, "--workers", "1"], 0, lambda out, _: "HTTP 500" in out)  # publish retried
    command(["status", *kb_arg, "--json"], 0, lambda out, _: "failed" in out)
    command(["status", *kb_arg], 0, lambda out, _: f"Bearer {PLACEHOLDER}" in out)
    command(["review", *kb_arg, "list", "--json"], 0, lambda out, _: slug in out)
    command(["review", *kb_arg, "show", slug], 0, lambda out, _: "Aligning AI systems" in out)
    command(["extract", str(kb / source_for("unauthorized"))], 1, lambda _, err: f"Bearer {PLACEHOLDER}" in err)
    command(["extract", str(kb / source_for("forbidden"))], 1, lambda _, err: "HTTP 403" in err)
    command(["review", *kb_arg, "accept", slug], 0, lambda out, _: "accepted" in out)
    claim = next((kb / "claims" / "ai-alignment").glob("aligning-ai-systems*.md"))
    command(["provenance", str(claim)], 0, lambda out, _: "Theseus" in out)
    command(["validate", *kb_arg], None, lambda out, _: "checked" in out)


def assert_state_redacted(kb: Path) -> None:
    """Errors, raw replies and publish errors were stored with the placeholder where the secret was."""
    store = StateStore.open(kb)
    try:
        raw = [call["raw_reply"] for call in store.calls_for(source_for("invalid-json"))]
        publish_error = (store.get(FULLSTACK) or pytest.fail("no row")).publish_error or ""
    finally:
        store.close()
    assert len(raw) == 2 and all(f"Bearer {PLACEHOLDER}" in reply for reply in raw)
    # The echoed token sat across the 200th character: redacted first, then cut, so no part of it is left.
    assert "HTTP 500" in publish_error and publish_error.endswith(f"...{PLACEHOLDER}")


@pytest.mark.parametrize("given_as", ["url", "remote name"])
def test_a_push_to_a_url_with_credentials_names_no_password(
    tmp_path: Path,
    secrets: None,
    fake_llm: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    given_as: str,
) -> None:
    """git itself prints the userinfo of a git:// URL it cannot reach ("unable to look up user:password@host")."""
    kb = create_demo_kb(tmp_path / "kb")
    hostile_endpoint(fake_llm)
    url = f"git://x-access-token:{URL_PASSWORD}@127.0.0.1:{free_port()}/kb.git"
    if given_as == "url":
        monkeypatch.setenv("EXTRACTOR_REMOTE", url)
    else:
        git(kb, "remote", "add", "creds", url)
        write_settings(kb, 'remote = "creds"\n')
    assert main(["extract", str(kb / FULLSTACK)]) == 0  # the extraction stands; the push is retried later
    out, err = capsys.readouterr()
    assert "push of extract/" in err and f"x-access-token:{PLACEHOLDER}@127.0.0.1" in err
    assert main(["status", "--kb", str(kb), "--json"]) == 0
    status = capsys.readouterr().out

    evidence = Evidence()
    evidence.add("stdout", out + status)
    evidence.add("stderr", err)
    evidence.add_repo(kb, "kb", skip=(".git/config",) if given_as == "remote name" else ())
    evidence.add_database(kb)
    store = StateStore.open(kb)
    row = store.get(FULLSTACK)
    store.close()
    assert row is not None and not row.published and PLACEHOLDER in (row.publish_error or "")
    evidence.assert_clean()


def test_an_unexpected_exception_is_printed_without_the_key(
    tmp_path: Path, secrets: None, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A bug's traceback still reaches the user, with the secrets in its message replaced."""
    kb = create_demo_kb(tmp_path / "kb")
    hostile_endpoint(fake_llm)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"proxy said: key {API_KEY} and token {FORGE_TOKEN} are not allowed")

    monkeypatch.setattr("extractor.run.service.extract_source", broken)
    assert main(["extract", str(kb / FULLSTACK)]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" in err and f"RuntimeError: proxy said: key {PLACEHOLDER} and token {PLACEHOLDER}" in err
    evidence = Evidence()
    evidence.add("stdout", out)
    evidence.add("stderr", err)
    evidence.add_repo(kb, "kb")
    evidence.add_database(kb)
    evidence.assert_clean()


def test_a_model_that_repeats_the_key_commits_no_secret(
    tmp_path: Path, secrets: None, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    """The KB is shared: a secret the model repeats in a claim, a key fact or its notes is replaced before writing."""
    kb = create_demo_kb(tmp_path / "kb")
    leaky = json.loads(json.dumps(FULLSTACK_ANSWER))
    leaky["key_facts"].append(f"The request was signed with {API_KEY}.")
    leaky["notes"] = f"Forge token seen in the source: {FORGE_TOKEN}"
    fake_llm.push(answer(leaky))
    assert main(["extract", str(kb / FULLSTACK)]) == 0
    shown = git(kb, "show", "--format=%B", "extract/" + Path(FULLSTACK).stem)
    assert (
        f"The request was signed with {PLACEHOLDER}." in shown
        and f"Forge token seen in the source: {PLACEHOLDER}" in shown
    )
    evidence = Evidence()
    evidence.add("stdout", capsys.readouterr().out)
    evidence.add_repo(kb, "kb")
    evidence.assert_clean()


def test_a_worker_that_fails_outside_a_task_prints_a_redacted_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spawned worker knows the secrets too (it registers its settings), so its dying words are redacted."""
    from extractor.core.settings import Settings
    from extractor.run import workers

    # Run here, in the test's process: keep its signal handlers and its parent-death setting as they are.
    monkeypatch.setattr(workers, "_die_with_parent", lambda: None)
    monkeypatch.setattr(workers.signal, "signal", lambda *args: None)

    class BrokenQueue:
        def get(self) -> None:
            raise RuntimeError(f"queue broke while holding {API_KEY}")

    class Results:
        def put(self, item: object) -> None:
            pass

    settings = Settings(base_url="http://127.0.0.1:9/v1", api_key=SecretStr(API_KEY))
    with pytest.raises(SystemExit) as ended:
        workers.worker_main(1, tmp_path, settings, BrokenQueue(), Results())
    err = capsys.readouterr().err
    assert ended.value.code == 1 and "RuntimeError: queue broke while holding" in err
    assert needles_in(err.encode()) == [], err
