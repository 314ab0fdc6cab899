"""The reviewer model on real extraction branches: verdicts per item, the accept policy, mechanical fixes,
the pull-request comment, costs and budgets, all through the scripted OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
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

REVIEWER = "reviewer-model"
BRANCH = "extract/2025-12-00-fullstack-alignment-co-aligning-ai-and-institutions"
SLUG = BRANCH.removeprefix("extract/")
CLAIM = "claims/ai-alignment/aligning-ai-systems-with-their-operators-is-not-enough-without-aligning-institutions.md"
_ITEM = re.compile(r"^## ((?:claim|entity)-\d+): .*\nFile: (\S+)$", re.M)

Verdicts = Callable[[str, str, dict[str, Any]], tuple[str, list[dict[str, str]]]]


def approve_all(ident: str, path: str, request: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    return "approve", []


def review_reply(request: dict[str, Any], verdicts: Verdicts) -> Reply:
    """The scripted reviewer: a verdict for every item the request shows, chosen by ``verdicts``."""
    user = request["messages"][-1]["content"]
    items = []
    for ident, path in _ITEM.findall(user):
        verdict, failed = verdicts(ident, path, request)
        items.append({"item": ident, "verdict": verdict, "failed": failed, "fixes": []})
    return answer({"items": items, "summary": "Scripted review."}, prompt_tokens=1000, completion_tokens=200)


class Endpoint:
    """Extractions answer by source; reviews (the reviewer model's requests) by ``self.verdicts``."""

    def __init__(self, fake_llm: FakeOpenAI) -> None:
        self.verdicts: Verdicts = approve_all
        self.extractions: dict[str, dict[str, Any]] = {"fullstack": FULLSTACK_ANSWER}
        self.reviews: list[dict[str, Any]] = []
        self.broken: Reply | None = None  # when set, every review is answered with it
        fake_llm.responder = self

    def __call__(self, request: dict[str, Any]) -> Reply:
        if request["model"] == REVIEWER:
            self.reviews.append(request)
            return self.broken or review_reply(request, self.verdicts)
        text = request["messages"][-1]["content"]
        chosen = next((data for key, data in self.extractions.items() if key in text), NULL)
        return answer(chosen)


@pytest.fixture
def endpoint(fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("EXTRACTOR_RETRY_INITIAL_WAIT", "0.01")
    return Endpoint(fake_llm)


@pytest.fixture
def kb(tmp_path: Path, endpoint: Endpoint) -> Path:
    return create_demo_kb(tmp_path / "kb")


def configure(kb: Path, extra: str = "") -> None:
    settings = f'review_model = "{REVIEWER}"\n' + extra
    (kb / "extractor.toml").write_text(settings, encoding="utf-8")


def branches(kb: Path) -> list[str]:
    return git(kb, "for-each-ref", "--format=%(refname:lstrip=2)", "refs/heads/extract/").split()


def show_json(kb: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["review", "--kb", str(kb), "show", SLUG, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_an_approved_branch_is_accepted_under_approved_and_left_pending_under_never(
    tmp_path: Path, endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    pending = create_demo_kb(tmp_path / "never")
    configure(pending)  # auto_accept defaults to never
    main_before = git(pending, "rev-parse", "main").strip()
    assert main(["extract", str(pending / FULLSTACK)]) == 0
    assert "review: approved" in capsys.readouterr().out
    assert branches(pending) == [BRANCH] and git(pending, "rev-parse", "main").strip() == main_before
    shown = show_json(pending, capsys)
    assert shown["verdict"] == "approved"
    assert [v["verdict"] for claim in shown["claims"] for v in claim["verdicts"]] == ["approve"]
    # One call per branch: the source, the drafts with their gates, the KB's related claims, the criteria.
    [request] = endpoint.reviews
    system, user = request["messages"][0]["content"], request["messages"][1]["content"]
    assert "specificity:" in system and "counter-evidence:" in system and "You are Leo" in system
    assert "Full-Stack Alignment" in user or "full-stack" in user.casefold()
    assert "Gates passed:" in user and "## claim-2: enrichment of an existing claim" in user
    assert "AI alignment is a coordination problem" in user  # a related KB claim
    schema = json.dumps(request["response_format"])
    assert '"claim-1"' in schema and '"claim-2"' in schema and '"universals"' in schema

    accepting = create_demo_kb(tmp_path / "approved")
    configure(accepting, 'auto_accept = "approved"\n')
    assert main(["extract", str(accepting / FULLSTACK)]) == 0
    out = capsys.readouterr().out
    assert "review: approved, accepted into the main branch" in out
    assert branches(accepting) == []
    log = git(accepting, "log", "-1", "--format=%s%n%P", "main").split("\n")
    assert log[0] == f"Accept {BRANCH}" and len(log[1].split()) == 2  # merged as `review accept` merges
    store = StateStore.open(accepting)
    try:
        assert store.get(FULLSTACK).state == "done"  # type: ignore[union-attr]
    finally:
        store.close()
    assert main(["provenance", str(accepting / CLAIM), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reviewed_by"] == [f"lead (leo): {REVIEWER}: approve"]


def test_one_request_for_changes_among_two_reviewers_keeps_the_branch_and_shows_why(
    kb: Path, endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(kb, 'auto_accept = "approved"\nreview_agents = ["lead", "domain"]\n')

    def domain_objects(ident: str, path: str, request: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
        if "You are Theseus" in request["messages"][0]["content"] and ident == "claim-1":
            return "request_changes", [{"criterion": "confidence", "reason": "Speculative is right; cite more."}]
        return "approve", []

    endpoint.verdicts = domain_objects
    assert main(["extract", str(kb / FULLSTACK)]) == 0
    out = capsys.readouterr().out
    assert "review: changes" in out and "not accepted: domain: request_changes on claims/ai-alignment/" in out
    assert branches(kb) == [BRANCH] and len(endpoint.reviews) == 2
    shown = show_json(kb, capsys)
    assert shown["verdict"] == "changes"
    [claim] = shown["claims"]
    by_reviewer = {v["reviewer"]: v for v in claim["verdicts"]}
    assert by_reviewer["lead"]["verdict"] == "approve" and by_reviewer["domain"]["agent"] == "theseus"
    assert by_reviewer["domain"]["findings"] == [
        {"criterion": "confidence", "reason": "Speculative is right; cite more."}
    ]
    assert main(["review", "--kb", str(kb), "list", "--changes", "--json"]) == 0
    assert [item["branch"] for item in json.loads(capsys.readouterr().out)] == [BRANCH]
    assert main(["review", "--kb", str(kb), "list", "--approved", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["review", "--kb", str(kb), "show", SLUG]) == 0
    text = capsys.readouterr().out
    assert "review (domain, theseus, reviewer-model): request_changes" in text and "confidence: Speculative" in text


def test_a_file_outside_the_agents_territory_is_never_accepted_by_policy(
    kb: Path, endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(kb, 'auto_accept = "approved"\n')
    health = "claims/health/randomised-evaluations-are-the-strongest-evidence-for-the-effects-of-health-policy.md"
    answer_outside = json.loads(json.dumps(FULLSTACK_ANSWER))
    answer_outside["enrichments"][0]["target"] = "randomised evaluations are the strongest evidence for the " \
        "effects of health policy"  # fmt: skip
    endpoint.extractions = {"fullstack": answer_outside}
    assert main(["extract", str(kb / FULLSTACK)]) == 0  # theseus's drafts enrich a claim of vida's domain
    out = capsys.readouterr().out
    assert "review: approved" in out and f"not accepted: outside the agent's territory: {health}" in out
    assert branches(kb) == [BRANCH]


def test_a_flagged_item_is_never_accepted_by_policy(
    kb: Path, endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(kb, 'auto_accept = "approved"\n')
    flagged = json.loads(json.dumps(FULLSTACK_ANSWER))
    flagged["claims"][0]["evidence"].append("Institutions were misaligned in 73% of the deployments studied.")
    endpoint.extractions = {"fullstack": flagged}
    assert main(["extract", str(kb / FULLSTACK)]) == 0
    out = capsys.readouterr().out
    assert "review: approved" in out and "not accepted: flagged by the gates:" in out
    assert branches(kb) == [BRANCH]


def commit_on_branch(kb: Path, path: str, change: Callable[[str], str], message: str, keep: bool = False) -> None:
    """A person's commit on the extraction branch, made in a second work tree (main stays checked out), which
    they then remove unless ``keep`` (still working on the branch)."""
    tree = kb.parent / "person"
    if not tree.exists():
        git(kb, "worktree", "add", "-q", str(tree), BRANCH)
    file = tree / path
    file.write_text(change(file.read_text(encoding="utf-8")), encoding="utf-8")
    git(tree, "-c", "user.name=A Person", "-c", "user.email=person@example.org", "commit", "-qam", message)
    if not keep:
        git(kb, "worktree", "remove", str(tree))


def fix_commits(kb: Path) -> list[str]:
    return git(kb, "log", "--format=%H", "--grep=Review-Fix-For", f"main..{BRANCH}").split()


def test_mechanical_findings_are_fixed_once_per_new_commit_and_each_tip_reviewed_once(
    kb: Path, endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(kb)
    assert main(["extract", str(kb / FULLSTACK)]) == 0
    assert fix_commits(kb) == [] and len(endpoint.reviews) == 1  # nothing mechanical in fresh drafts
    claim = git(kb, "diff", "--name-only", "--diff-filter=A", f"main...{BRANCH}", "--", "claims").split()[0]
    commit_on_branch(kb, claim, lambda text: text + "\nSee also [[a note nobody wrote]].\n", "person: add a link")
    person_tip = git(kb, "rev-parse", BRANCH).strip()

    for _ in range(2):  # the second cycle finds nothing new to fix or review
        assert main(["run", "--once", "--kb", str(kb)]) == 0
    [fix] = fix_commits(kb)
    assert git(kb, "rev-parse", f"{fix}~1").strip() == person_tip and git(kb, "rev-parse", BRANCH).strip() == fix
    fixed = git(kb, "show", f"{BRANCH}:{claim}")
    assert "See also a note nobody wrote." in fixed and "[[" not in fixed.split("See also")[1]
    assert "Pentagon-Agent: Theseus <HEADLESS>" in git(kb, "log", "-1", "--format=%B", fix)
    assert git(kb, "log", "-1", "--format=%an", fix).strip() == "extractor"
    assert len(endpoint.reviews) == 2  # the fix's tip was reviewed once, the person's tip not separately
    assert [r["model"] for r in endpoint.reviews] == [REVIEWER, REVIEWER]

    commit_on_branch(kb, claim, lambda text: text + "\nAnd [[another missing note]].\n", "person: another link")
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert len(fix_commits(kb)) == 2 and len(endpoint.reviews) == 3
    assert "[[another missing note]]" not in git(kb, "show", f"{BRANCH}:{claim}")


class ForgeServer:
    """A small Gitea-like forge: pull requests (one per head), their comments, and comment edits."""

    def __init__(self) -> None:
        self.pulls: list[dict[str, Any]] = []
        self.comments: dict[int, dict[str, Any]] = {}
        self.down = False  # every call answers 503
        self.patches = 0
        self.lock = threading.Lock()
        forge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, data: Any) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> Any:
                return json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                with forge.lock:
                    if path.endswith("/pulls"):
                        return self._send(200, forge.pulls)
                    if found := re.search(r"/issues/(\d+)/comments$", path):
                        number = int(found.group(1))
                        return self._send(200, [c for c in forge.comments.values() if c["issue"] == number])
                self._send(404, {"message": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                data, path = self._body(), self.path.split("?")[0]
                if forge.down:
                    return self._send(503, {"message": "forge is down"})
                with forge.lock:
                    if path.endswith("/pulls"):
                        if any(p["head"]["ref"] == data["head"] for p in forge.pulls):
                            return self._send(409, {"message": "pull request already exists for these targets"})
                        number = len(forge.pulls) + 1
                        forge.pulls.append({"number": number, "head": {"ref": data["head"]},
                                            "html_url": f"http://forge/pulls/{number}"})  # fmt: skip
                        return self._send(201, forge.pulls[-1])
                    if found := re.search(r"/issues/(\d+)/comments$", path):
                        ident = len(forge.comments) + 100
                        forge.comments[ident] = {"id": ident, "issue": int(found.group(1)), "body": data["body"]}
                        return self._send(201, forge.comments[ident])
                self._send(404, {"message": "not found"})

            def do_PATCH(self) -> None:  # noqa: N802
                data = self._body()
                with forge.lock:
                    forge.patches += 1
                    found = re.search(r"/issues/comments/(\d+)$", self.path)
                    if found and int(found.group(1)) in forge.comments:
                        forge.comments[int(found.group(1))]["body"] = data["body"]
                        return self._send(200, forge.comments[int(found.group(1))])
                self._send(404, {"message": "not found"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v1"


@pytest.fixture
def forge() -> Iterator[ForgeServer]:
    server = ForgeServer()
    yield server
    server.httpd.shutdown()


def test_a_re_review_after_a_new_commit_replaces_the_pull_request_comment(
    kb: Path, endpoint: Endpoint, forge: ForgeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTRACTOR_FORGE_TOKEN", "forge-token")
    configure(kb, f'forge = "gitea"\nforge_url = "{forge.url}"\nforge_repo = "team/kb"\n')
    endpoint.verdicts = lambda ident, path, request: (
        ("request_changes", [{"criterion": "evidence", "reason": "Quote the paper."}])
        if ident == "claim-1" else ("approve", [])
    )  # fmt: skip
    assert main(["extract", str(kb / FULLSTACK)]) == 0
    [pull] = forge.pulls
    [comment] = forge.comments.values()
    first_tip = git(kb, "rev-parse", BRANCH).strip()
    assert comment["issue"] == pull["number"] and f"<!-- extractor-review branch={BRANCH} -->" in comment["body"]
    assert "REQUEST_CHANGES" in comment["body"] and "Quote the paper." in comment["body"]
    assert first_tip in comment["body"]

    claim = git(kb, "diff", "--name-only", "--diff-filter=A", f"main...{BRANCH}", "--", "claims").split()[0]
    commit_on_branch(kb, claim, lambda text: text.replace("Aligning each system", "Aligning every system"),
                     "person: reword the argument")  # fmt: skip
    endpoint.verdicts = approve_all
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert [p["head"]["ref"] for p in forge.pulls].count(BRANCH) == 1  # the other samples' null results too
    [comment] = [c for c in forge.comments.values() if c["issue"] == pull["number"]]  # replaced, not repeated
    assert "## Review: approved" in comment["body"] and "Quote the paper." not in comment["body"]
    assert git(kb, "rev-parse", BRANCH).strip() in comment["body"]
    data = json.loads(re.search(r"<!-- extractor-review-data (.*?) -->", comment["body"]).group(1))  # type: ignore[union-attr]
    assert data["verdict"] == "approved" and data["reviewers"] == {"lead": "approve"}


def test_costs_show_review_spend_apart_and_budgets_stop_reviews(
    kb: Path, endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    prices = f'[prices.{REVIEWER}]\ninput = 10.0\noutput = 30.0\n[prices."gpt-4o-mini"]\ninput = 0.15\noutput = 0.6\n'
    configure(kb, prices)
    assert main(["extract", str(kb / FULLSTACK)]) == 0
    capsys.readouterr()
    assert main(["costs", "--kb", str(kb), "--json"]) == 0
    costs = json.loads(capsys.readouterr().out)
    stages = {row["stage"]: row for row in costs["stage"]}
    assert stages["review"]["calls"] == 1 and stages["review"]["cost"] == pytest.approx(0.016)  # 1000 in, 200 out
    assert stages["extract"]["calls"] >= 1 and stages["extract"]["cost"] < 0.01
    assert costs["total"]["review_cost"] == pytest.approx(0.016)
    assert main(["costs", "--kb", str(kb)]) == 0
    assert "(reviews: 1 call(s), $0.0160)" in capsys.readouterr().out

    # A daily budget that the next review would break: the review waits, the branch stays unreviewed.
    hanson = "inbox/archive/2013-00-00-hanson-futarchy-vote-values-bet-beliefs.md"
    endpoint.extractions["futarchy"] = FULLSTACK_ANSWER
    configure(kb, "budget_per_day = 0.03\n" + prices)  # $0.016 spent, the next review estimated at $0.016
    assert main(["extract", str(kb / hanson)]) == 0
    out = capsys.readouterr().out
    assert "review: unreviewed" in out and "lead review not made: daily budget $0.03 reached" in out
    assert len(endpoint.reviews) == 1
    assert main(["review", "--kb", str(kb), "list"]) == 0
    listed = capsys.readouterr().out
    assert re.search(r"hanson-futarchy-vote-values-bet-beliefs\s+unreviewed", listed)
    configure(kb, "budget_per_day = 1.0\n" + prices)  # a cycle reviews what the budget held back
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert len(endpoint.reviews) == 2


def test_a_commit_made_on_the_branch_during_the_review_is_not_merged_unseen(
    kb: Path, endpoint: Endpoint, fake_llm: FakeOpenAI
) -> None:
    """Two processes: ``extract`` with the accept policy, and a person who commits on the branch while the
    reviewer is answering. The approval was for the commit it saw: the person's commit is not merged, main
    does not move, and the branch (with their commit) waits for the next review."""
    configure(kb, 'auto_accept = "approved"\n')
    reviewing, committed = threading.Event(), threading.Event()

    def slow_reviewer(request: dict[str, Any]) -> Reply:
        if request["model"] != REVIEWER:
            return endpoint(request)
        reviewing.set()
        assert committed.wait(60)
        return review_reply(request, approve_all)

    fake_llm.responder = slow_reviewer
    main_before = git(kb, "rev-parse", "main").strip()
    env = {**os.environ, "OPENAI_BASE_URL": fake_llm.base_url}
    process = subprocess.Popen([sys.executable, "-m", "extractor", "extract", str(kb / FULLSTACK)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert reviewing.wait(60), process.communicate()
        claim = git(kb, "diff", "--name-only", "--diff-filter=A", f"main...{BRANCH}", "--", "claims").split()[0]
        commit_on_branch(kb, claim, lambda text: text + "\nA person's late addition.\n", "person: add a line")
        person_tip = git(kb, "rev-parse", BRANCH).strip()
        committed.set()
        out, err = process.communicate(timeout=60)
    finally:
        committed.set()
        process.kill()
    assert process.returncode == 0, err
    assert "review: approved" in out and "moved since it was reviewed" in out and "Traceback" not in err
    assert git(kb, "rev-parse", "main").strip() == main_before
    assert git(kb, "rev-parse", BRANCH).strip() == person_tip  # their commit is kept, on the branch


def test_a_branch_published_late_gets_its_review_comment(
    kb: Path, endpoint: Endpoint, forge: ForgeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTRACTOR_FORGE_TOKEN", "forge-token")
    configure(kb, f'forge = "gitea"\nforge_url = "{forge.url}"\nforge_repo = "team/kb"\n')
    forge.down = True
    assert main(["extract", str(kb / FULLSTACK)]) == 0  # reviewed; the pull request fails, to be retried
    assert forge.pulls == [] and len(endpoint.reviews) == 1
    forge.down = False
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    [pull] = [p for p in forge.pulls if p["head"]["ref"] == BRANCH]
    [comment] = [c for c in forge.comments.values() if c["issue"] == pull["number"]]
    assert "## Review: approved" in comment["body"] and len(endpoint.reviews) == 1  # not reviewed again


def test_a_deletion_on_the_branch_is_never_merged_by_policy(
    kb: Path, endpoint: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    """A person's commit deletes a claim of the agent's own folder (a rename is a deletion too): no reviewer
    is shown a deletion, so the policy never merges it, whatever the verdicts on what was shown."""
    configure(kb)
    assert main(["extract", str(kb / FULLSTACK)]) == 0
    kept = "claims/ai-alignment/ai-alignment-is-a-coordination-problem-not-only-a-technical-problem.md"
    tree = kb.parent / "person"
    git(kb, "worktree", "add", "-q", str(tree), BRANCH)
    git(tree, "rm", "-q", kept)
    git(tree, "-c", "user.name=A Person", "-c", "user.email=p@example.org", "commit", "-qm", "person: remove")
    git(kb, "worktree", "remove", str(tree))
    configure(kb, 'auto_accept = "approved"\n')
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert BRANCH in branches(kb) and git(kb, "cat-file", "-t", f"main:{kept}").strip() == "blob"
    capsys.readouterr()
    assert main(["review", "--kb", str(kb), "list", "--json"]) == 0
    listed = {item["branch"]: item for item in json.loads(capsys.readouterr().out)}
    assert listed[BRANCH]["verdict"] == "approved"  # every item shown was approved


def test_a_branch_checked_out_in_a_linked_work_tree_is_neither_fixed_nor_merged_nor_republished(
    kb: Path, endpoint: Endpoint, forge: ForgeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTRACTOR_FORGE_TOKEN", "forge-token")
    configure(kb, f'auto_accept = "approved"\nforge = "gitea"\nforge_url = "{forge.url}"\nforge_repo = "team/kb"\n')
    endpoint.verdicts = lambda ident, path, request: ("request_changes", [{"criterion": "value", "reason": "r"}])
    assert main(["extract", str(kb / FULLSTACK)]) == 0
    claim = git(kb, "diff", "--name-only", "--diff-filter=A", f"main...{BRANCH}", "--", "claims").split()[0]
    commit_on_branch(kb, claim, lambda text: text + "\nSee [[a note nobody wrote]].\n", "person: a link", keep=True)
    person_tip = git(kb, "rev-parse", BRANCH).strip()  # the person's work tree stays on the branch
    endpoint.verdicts = approve_all
    posts_before = len(forge.comments)
    for _ in range(3):
        assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert git(kb, "rev-parse", BRANCH).strip() == person_tip and fix_commits(kb) == []
    assert BRANCH in branches(kb)  # approved, but checked out: a person is working on it
    assert len(endpoint.reviews) == 2  # the new tip reviewed once, not every cycle
    [pull] = [p for p in forge.pulls if p["head"]["ref"] == BRANCH]
    [comment] = [c for c in forge.comments.values() if c["issue"] == pull["number"]]
    assert "checked out in a work tree" in comment["body"] and len(forge.comments) == posts_before
    assert forge.patches == 1  # the comment replaced once, for the one new review
