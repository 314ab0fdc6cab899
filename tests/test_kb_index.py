"""The KB index a worker keeps: a reload reads only what changed, and gives what a fresh load gives."""

from __future__ import annotations

import multiprocessing
import shutil
import subprocess
from pathlib import Path

import pytest

from extractor.kb import gitrepo
from extractor.kb import index as kb_module
from extractor.kb.index import KBIndex


def claim(title: str, description: str) -> str:
    return f"---\ntype: claim\ndomain: health\ndescription: {description}\n---\n\n# {title}\n\nBody.\n"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = kb_module._read_file

    def counting(root: Path, rel: str) -> str | None:
        seen.append(rel)
        return real(root, rel)

    monkeypatch.setattr(kb_module, "_read_file", counting)
    return seen


def test_a_reload_reads_only_changed_files_and_matches_a_fresh_load(tmp_path: Path, reads: list[str]) -> None:
    folder = tmp_path / "claims" / "health"
    folder.mkdir(parents=True)
    fruits = ["apples", "pears", "plums", "cherries", "lemons"]
    for n, fruit in enumerate(fruits):
        (folder / f"claim-{n}.md").write_text(claim(f"Claim number {n} says something true", f"about {fruit}"))
    first = KBIndex.load(tmp_path)
    assert len(reads) == 5 and first.related("plums", 1)[0].title == "Claim number 2 says something true"

    reads.clear()
    same = KBIndex.load(tmp_path, previous=first)
    assert reads == [] and same.claims == first.claims

    reads.clear()
    (folder / "claim-1.md").write_text(claim("Claim number 1 now says something longer", "about walruses"))
    (folder / "claim-5.md").write_text(claim("A new claim joins the others here", "about otters"))
    (folder / "claim-4.md").unlink()
    reloaded = KBIndex.load(tmp_path, previous=same)
    assert sorted(reads) == ["claims/health/claim-1.md", "claims/health/claim-5.md"]
    fresh = KBIndex.load(tmp_path)
    assert [c.model_dump() for c in reloaded.claims] == [c.model_dump() for c in fresh.claims]
    assert reloaded.files == fresh.files
    assert reloaded.related("walruses", 1)[0].path == "claims/health/claim-1.md"
    assert reloaded.resolve("claim-4") is None and reloaded.resolve("claim-5") is not None


def git(kb: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=p", "-c", "user.email=p@x", *args], cwd=kb, check=True,
                   capture_output=True)  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    kb = tmp_path / "kb"
    folder = kb / "claims" / "health"
    folder.mkdir(parents=True)
    for n, fruit in enumerate(["apples", "pears", "plums", "cherries", "lemons"]):
        (folder / f"claim-{n}.md").write_text(claim(f"Claim number {n} says something true", f"about {fruit}"))
    (kb / "inbox").mkdir()
    (kb / "inbox" / "source-1.md").write_text(claim("A source that looks like a claim", "about plums"))
    git(kb, "init", "-q", "-b", "main")
    git(kb, "add", "-A")
    git(kb, "commit", "-qm", "claims")
    return kb


@pytest.fixture
def blob_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = gitrepo.blob_text

    def counting(kb: Path, blob: str) -> str:
        seen.append(blob)
        return real(kb, blob)

    monkeypatch.setattr(gitrepo, "blob_text", counting)
    return seen


def same_contents(one: KBIndex, other: KBIndex) -> None:
    assert [c.model_dump() for c in one.claims] == [c.model_dump() for c in other.claims]
    assert one.files == other.files and one.entities == other.entities
    for query in ("plums", "walruses", "otters", "claim number true"):
        assert [c.path for c in one.related(query, 3)] == [c.path for c in other.related(query, 3)]


def test_an_index_of_a_commit_reads_only_what_the_commits_since_changed(repo: Path, blob_reads: list[str]) -> None:
    folder = repo / "claims" / "health"
    first = KBIndex.load(repo, exclude=["inbox"], at="main")
    assert len(blob_reads) == 6 and first.commit == gitrepo.rev_parse(repo, "main")
    assert [c.path for c in first.related("plums", 5)] == ["claims/health/claim-2.md"]  # the inbox is no claim
    assert first.resolve_link("source-1") == ("inbox/source-1.md", True)

    blob_reads.clear()
    (folder / "claim-1.md").write_text(claim("Claim number 1 now says something longer", "about walruses"))
    (folder / "claim-5.md").write_text(claim("A new claim joins the others here", "about otters"))
    (folder / "claim-4.md").unlink()
    git(repo, "mv", "claims/health/claim-3.md", "claims/health/moved.md")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "edits")
    (folder / "claim-0.md").write_text(claim("An edit not yet committed", "about walruses"))  # not main's

    reloaded = KBIndex.load(repo, exclude=["inbox"], previous=first, at="main")
    assert len(blob_reads) == 3  # claim-1, claim-5, moved: nothing else is read
    assert reloaded.related("walruses", 1)[0].path == "claims/health/claim-1.md"
    assert reloaded.resolve("claim-4") is None and reloaded.resolve("claim-3") is None
    assert reloaded.resolve("moved") is not None and reloaded.resolve("claim-0").title.startswith("Claim number 0")

    blob_reads.clear()
    elsewhere = KBIndex.load(repo, exclude=["inbox"], at="main")  # another process: read from disk, nothing parsed
    assert blob_reads == []
    same_contents(elsewhere, reloaded)
    shutil.rmtree(repo / ".extractor" / "index")
    same_contents(KBIndex.load(repo, exclude=["inbox"], at="main"), reloaded)


def test_an_index_holding_a_later_commit_is_kept_and_a_switch_of_history_is_followed(repo: Path) -> None:
    older = gitrepo.rev_parse(repo, "main")
    (repo / "claims" / "health" / "claim-9.md").write_text(claim("A later claim about otters", "about otters"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "later")
    later = KBIndex.load(repo, exclude=["inbox"], at="main")
    assert older is not None and KBIndex.load(repo, exclude=["inbox"], at=older).commit == later.commit

    git(repo, "checkout", "-q", "-b", "other", older)
    (repo / "claims" / "health" / "claim-7.md").write_text(claim("Another line of history", "about walruses"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "other")
    other = KBIndex.load(repo, exclude=["inbox"], at="other")
    assert other.resolve("claim-7") is not None and other.resolve("claim-9") is None


def test_a_damaged_or_foreign_index_is_built_again(repo: Path) -> None:
    built = KBIndex.load(repo, exclude=["inbox"], at="main")
    built._table.set("commit", "0" * 40)  # a commit no longer in the repository (a gc after a rewrite)
    same_contents(KBIndex.load(repo, exclude=["inbox"], at="main"), built)
    (repo / ".extractor" / "index" / "notes.sqlite").write_bytes(b"not a database at all" * 100)
    for name in ("notes.sqlite-wal", "notes.sqlite-shm"):
        (repo / ".extractor" / "index" / name).unlink(missing_ok=True)
    (repo / ".extractor" / "index" / "ranking" / "meta.json").write_text("{broken")
    same_contents(KBIndex.load(repo, exclude=["inbox"], at="main"), KBIndex.load(repo, exclude=["inbox"]))
    assert len(KBIndex.load(repo, exclude=[], at="main").related("plums", 5)) == 2  # other exclusions: rebuilt


def _load_in_a_process(kb: str) -> list[str]:
    index = KBIndex.load(Path(kb), exclude=["inbox"], at="main")
    return [c.path for c in index.claims]


def test_processes_building_one_index_at_once_agree(repo: Path) -> None:
    for n in range(40):
        (repo / "claims" / "health" / f"more-{n}.md").write_text(claim(f"More claim {n}", "about figs"))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "more")
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.map(_load_in_a_process, [str(repo)] * 3)
    assert results[0] == results[1] == results[2] and len(results[0]) == 45


def test_the_ranking_is_rewritten_only_when_a_title_or_description_changes(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = KBIndex.load(repo, exclude=["inbox"], at="main")
    rewritten: list[list[str]] = []
    real = kb_module.Ranking.replace

    def counting(self: kb_module.Ranking, removed: list[str], added: list[tuple[str, str]], **kw: bool) -> None:
        rewritten.append(sorted([*removed, *(path for path, _ in added)]))
        real(self, removed, added, **kw)

    monkeypatch.setattr(kb_module.Ranking, "replace", counting)
    file = repo / "claims" / "health" / "claim-2.md"
    file.write_text(file.read_text() + "\nMore evidence, in the body only.\n")
    git(repo, "commit", "-qam", "body")
    index = KBIndex.load(repo, exclude=["inbox"], previous=index, at="main")
    assert rewritten == [] and index.related("plums", 1)[0].path == "claims/health/claim-2.md"
    file.write_text(claim("Claim number 2 says something true", "about quinces"))
    git(repo, "commit", "-qam", "description")
    index = KBIndex.load(repo, exclude=["inbox"], previous=index, at="main")
    assert rewritten == [["claims/health/claim-2.md"]]
    assert index.related("quinces", 1)[0].path == "claims/health/claim-2.md" and index.related("plums", 1) == []
