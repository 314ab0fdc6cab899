"""``extractor init``: the layout found in a KB, the commented settings file written from it, and a KB that
then validates and runs on those settings, unedited, with claims landing in the folders it already uses."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from extractor.cli.main import main
from extractor.core.settings import load_settings
from extractor.kb.discover import Note, claim_layout, discover, git_facts, schema_domains
from extractor.kb.yamlio import replace_frontmatter_keys
from tests.conftest import commit_all, git, init_repo
from tests.drafts import SENTENCE, grounded_answer, source_body, source_file
from tests.fakeopenai import FakeOpenAI, Reply, answer

# Corpus sources and the folder the KB keeps their domain's claims in.
SOURCES = {
    "2021-06-29-kaufmann-active-inference-collective-intelligence.md": "foundations/collective-intelligence",
    "2018-03-00-ramstead-answering-schrodingers-question.md": "foundations/critical-systems",
    "2024-11-13-futardio-proposal-cut-emissions-by-50.md": "domains/internet-finance",
}
PROCESSED = "2024-01-doppler-whitepaper-liquidity-bootstrapping.md"  # already extracted: not run again


def plain_claim(request: dict[str, Any]) -> Reply:
    """A claim made of the source's sentences that hold no markup (the gates drop a title with ``**`` in it)."""
    plain = [s for s in SENTENCE.findall(source_body(request)) if not re.search(r"[*_\[\]`|<>]", s)]
    return answer(grounded_answer("\n".join(plain)))


def claim(path: str, domain: str | None) -> Note:
    return Note(PurePosixPath(path), "claim", domain)


def note(path: str, domain: str, kind: str = "claim", status: str | None = None) -> str:
    """A minimal note's text."""
    lines = [f"type: {kind}", f"domain: {domain}"] + ([f"status: {status}"] if status else [])
    return "---\n" + "\n".join(lines) + "\n---\n\n# " + Path(path).stem + "\n"


def write(kb: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        (kb / path).parent.mkdir(parents=True, exist_ok=True)
        (kb / path).write_text(text, encoding="utf-8")


@pytest.fixture
def corpus_copy(tmp_path: Path, corpus: Path) -> Path:
    """A git KB holding the corpus's claims, entity notes and schemas, and a few of its sources, as a person
    would have it before running init: no settings file, a remote it was cloned from."""
    kb = init_repo(tmp_path / "kb")
    for folder in ("domains", "core", "foundations", "entities", "schemas"):
        shutil.copytree(corpus / "kb" / folder, kb / folder)
    inbox = kb / "inbox" / "archive"
    inbox.mkdir(parents=True)
    for name in SOURCES:
        text = (corpus / "inbox" / "archive" / name).read_text(encoding="utf-8")
        (inbox / name).write_text(replace_frontmatter_keys(text, {"status": "unprocessed"}), encoding="utf-8")
    shutil.copy(corpus / "inbox" / "archive" / PROCESSED, inbox / PROCESSED)
    commit_all(kb)
    git(kb, "remote", "add", "origin", str(tmp_path / "origin.git"))
    return kb


# --- the layout, from notes -----------------------------------------------------------------------


def test_claims_dir_is_where_most_domain_folders_are_and_the_rest_are_enrich_dirs() -> None:
    notes = [
        *(claim(f"domains/{d}/c{i}.md", d) for d in ("health", "finance", "space") for i in range(3)),
        *(claim(f"core/{d}/c{i}.md", d) for d in ("mechanisms", "strategy") for i in range(9)),
        claim("foundations/collective-intelligence/a.md", "collective-intelligence"),
        claim("domains/health/stray.md", "collective-intelligence"),  # filed in another domain's folder
        claim("notes/misc/mixed1.md", "health"),  # claims outside any domain folder
        claim("notes/misc/mixed2.md", None),
    ]
    layout = claim_layout(notes)
    assert layout.claims_dir == "domains"  # three domain folders there, two in core (despite more claims)
    assert layout.enrich_dirs == ["core", "foundations", "notes"]
    assert layout.homes["collective-intelligence"] == "foundations/collective-intelligence"
    assert layout.homes["health"] == "domains/health"
    assert layout.claims == {"domains": 10, "core": 18, "foundations": 1, "notes": 2}


def test_a_domain_without_a_folder_of_its_name_lives_where_most_of_its_claims_are() -> None:
    notes = [
        *(claim(f"kb/domains/{d}/c.md", d) for d in ("health", "finance")),
        claim("kb/domains/ideas/a.md", "philosophy"),
        claim("kb/domains/ideas/b.md", "philosophy"),
        claim("kb/domains/ideas/c.md", "health"),
        claim("kb/misc/a.md", "ethics"),  # a claim folder of its own: the settings cannot name it ethics' folder
        claim("top.md", "health"),  # at the KB's top: no folder to allow
        claim("inbox/archive/filed-by-mistake.md", "health"),
    ]
    layout = claim_layout(notes, inbox="inbox/archive")
    assert layout.claims_dir == "kb/domains"
    assert layout.enrich_dirs == ["kb/misc"]
    assert layout.homes == {
        "finance": "kb/domains/finance", "health": "kb/domains/health", "philosophy": "kb/domains/ideas"
    }  # fmt: skip
    assert layout.unplaced == {"ethics": "kb/misc"}


def test_a_claim_schema_lists_its_domains() -> None:
    text = "```yaml\n---\ntype: claim\ndomain: internet-finance | Health |  ai-alignment # primary\n---\n```\n"
    assert schema_domains(text) == ["internet-finance", "health", "ai-alignment"]
    assert schema_domains("# Claims\n\ndomain: health\n") == []


# --- init on the corpus, then validate and run on its settings -----------------------------------------


def test_init_on_the_corpus_then_validate_and_run_put_claims_where_the_kb_keeps_them(
    corpus_copy: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = corpus_copy
    assert main(["init", "--yes", "--kb", str(kb)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {kb / 'extractor.toml'}" in out and "validate" in out and "run --once" in out

    text = (kb / "extractor.toml").read_text(encoding="utf-8")
    settings = load_settings(kb)
    assert settings.claims_dir == "domains"
    assert settings.enrich_dirs == ["core", "foundations"]
    assert settings.domain_dirs["collective-intelligence"] == "foundations/collective-intelligence"
    assert settings.domain_dirs["mechanisms"] == "core/mechanisms"
    assert "internet-finance" not in settings.domain_dirs  # it is in domains/internet-finance
    assert settings.entities_dir == "entities" and settings.inbox_dir == "inbox/archive"
    assert settings.domains[:3] == ["internet-finance", "entertainment", "health"] and len(settings.domains) == 14
    assert settings.main_branch == "main" and settings.commit_mode == "branch"
    assert settings.remote is None and '# remote = "origin"' in text  # found, offered, not pushed to unasked
    commented = [line for line in text.splitlines() if line.startswith("#")]
    assert len(commented) >= 20 and any("schemas/claim.md" in line for line in commented)
    commit_all(kb, "settings from extractor init")

    assert main(["validate", "--kb", str(kb)]) in (0, 1)  # 1: the corpus's own content problems
    checked = capsys.readouterr()
    assert "Traceback" not in checked.err and "checked " in checked.out and "claim(s)" in checked.out

    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    fake_llm.responder = plain_claim
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    capsys.readouterr()
    assert {PurePosixPath(source_file(r)).name for r in fake_llm.requests} == set(SOURCES)

    branches = git(kb, "for-each-ref", "--format=%(refname:short)", "refs/heads/extract/").split()
    assert len(branches) == len(SOURCES)
    placed: dict[str, list[str]] = {}
    for branch in branches:
        changed = git(kb, "diff", "--name-only", "--no-renames", f"main...{branch}").splitlines()
        source = next(PurePosixPath(p).name for p in changed if p.startswith("inbox/"))
        placed[source] = [p for p in changed if not p.startswith("inbox/")]
    for source, folder in SOURCES.items():
        assert placed[source], f"{source}: no claim drafted"
        assert all(str(PurePosixPath(p).parent) == folder for p in placed[source]), (source, placed[source])
    assert not any(p.startswith("domains/collective-intelligence/") for files in placed.values() for p in files)


def test_init_never_replaces_settings_without_force_and_keeps_what_it_does_not_decide(
    corpus_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = corpus_copy
    before = 'model = "local-model"\nclaims_dir = "claims"\n\n[prices.local-model]\ninput = 0.5\noutput = 1.5\n'
    (kb / "extractor.toml").write_text(before, encoding="utf-8")
    assert main(["init", "--yes", "--kb", str(kb)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "extractor.toml exists" in err and "--force" in err
    assert (kb / "extractor.toml").read_text(encoding="utf-8") == before

    assert main(["init", "--yes", "--force", "--kb", str(kb)]) == 0
    settings = load_settings(kb)
    assert settings.claims_dir == "domains"  # found, replacing the old value
    assert settings.model == "local-model" and settings.prices["local-model"].input == 0.5  # kept


class Terminal(io.StringIO):
    """What a person types at a terminal."""

    def isatty(self) -> bool:
        return True


def test_init_asks_before_writing_and_about_pushing(
    corpus_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = corpus_copy
    monkeypatch.setattr(sys, "stdin", Terminal("\nn\n"))  # no push (the default), then: do not write
    assert main(["init", "--kb", str(kb)]) == 1
    shown = capsys.readouterr()
    assert "266 in domains/" in shown.out
    assert re.search(r"^ +collective-intelligence +foundations/collective-intelligence/$", shown.out, re.M)
    assert "push extraction branches to origin" in shown.err and "nothing written" in shown.err
    assert not (kb / "extractor.toml").exists()

    monkeypatch.setattr(sys, "stdin", Terminal("y\n\n"))  # push, then write (the default for a new file)
    assert main(["init", "--kb", str(kb)]) == 0
    assert load_settings(kb).remote == "origin"

    monkeypatch.setattr(sys, "stdin", Terminal(""))  # no answer to "replace?": its default is no
    assert main(["init", "--force", "--kb", str(kb)]) == 1
    assert load_settings(kb).remote == "origin"

    # no terminal to ask at (cron, a pipe) and no --yes: nothing is written, nothing assumed
    (kb / "extractor.toml").unlink()
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\ny\n"))
    assert main(["init", "--kb", str(kb)]) == 2
    assert "pass --yes" in capsys.readouterr().err and not (kb / "extractor.toml").exists()


# --- other KBs ---------------------------------------------------------------------------------------


def test_init_in_a_small_kb_of_another_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kb = init_repo(tmp_path / "kb")
    git(kb, "checkout", "-q", "-b", "trunk")
    write(kb, {
        **{f"notes/{d}/c{i}.md": note(f"c{i}", d) for d in ("health", "energy") for i in range(2)},
        "people/energy/acme.md": note("acme", "energy", kind="entity"),
        "queue/new.md": note("new", "health", kind="source", status="unprocessed"),
        "queue/old.md": note("old", "health", kind="source", status="processed"),
        "README.md": "# Not a note\n",
    })  # fmt: skip
    commit_all(kb)
    found = discover(kb)
    assert (found.main_branch, found.remote, found.has_commits) == ("trunk", None, True)
    assert (found.inbox_dir, found.sources, found.unprocessed) == ("queue", 2, 1)
    assert found.domains == ["energy", "health"] and found.domains_from == "claims"

    assert main(["init", "--yes", "--kb", str(kb)]) == 0
    capsys.readouterr()
    settings = load_settings(kb)
    assert (settings.claims_dir, settings.enrich_dirs, settings.domain_dirs) == ("notes", [], {})
    assert (settings.entities_dir, settings.inbox_dir, settings.main_branch) == ("people", "queue", "trunk")
    assert settings.domains == ["energy", "health"]
    assert "(no remote found)" in (kb / "extractor.toml").read_text(encoding="utf-8")

    assert main(["init", "--yes", "--force", "--json", "--kb", str(kb)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings_file"] == str(kb / "extractor.toml") and report["domain_dirs"] == {}
    assert report["found"]["layout"]["claims"] == {"notes": 4} and report["found"]["entity_notes"] == 1


def test_init_dry_run_prints_the_settings_and_writes_nothing(
    corpus_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--dry-run", "--kb", str(corpus_copy)]) == 0
    printed = capsys.readouterr().out
    assert tomllib.loads(printed)["domain_dirs"]["teleohumanity"] == "core/teleohumanity"
    assert not (corpus_copy / "extractor.toml").exists()


def test_init_in_an_empty_repository_writes_the_defaults_and_says_to_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = init_repo(tmp_path / "kb")
    assert main(["init", "--yes", "--kb", str(kb)]) == 0
    assert "no commit yet" in capsys.readouterr().out
    values = tomllib.loads((kb / "extractor.toml").read_text(encoding="utf-8"))
    assert values["claims_dir"] == "claims" and values["main_branch"] == "main"
    settings = load_settings(kb)
    assert settings.domains == load_settings(None).domains  # none found: the defaults stand


def test_init_outside_a_git_work_tree_is_one_line_and_exit_2(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "extractor", "init", "--yes", "--kb", str(tmp_path)],
                         capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "git init" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "extractor.toml").exists()


def test_the_main_branch_is_the_default_branch_of_the_remote_the_kb_was_cloned_from(tmp_path: Path) -> None:
    origin = init_repo(tmp_path / "origin")
    git(origin, "checkout", "-q", "-b", "trunk")
    write(origin, {"notes/health/a.md": note("a", "health")})
    commit_all(origin)
    git(origin, "branch", "main")  # a branch named main that is not the default
    git(tmp_path, "clone", "-q", str(origin), "clone")
    clone = tmp_path / "clone"
    git(clone, "checkout", "-q", "-b", "feature")  # init run from a feature branch
    facts = git_facts(clone)
    assert (facts.main_branch, facts.remote, facts.has_commits) == ("trunk", "origin", True)
