"""Settings that would break a run later, or write where no draft belongs, are refused when loaded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from extractor.core.settings import SettingsError, load_settings

CORPUS_LAYOUT = (
    'claims_dir = "domains"\nenrich_dirs = ["core", "foundations"]\n'
    'domain_dirs = { collective-intelligence = "foundations/collective-intelligence" }\n'
)


def refusal(kb: Path, text: str) -> str:
    """The one-line message loading ``text`` as the KB's settings file is refused with."""
    (kb / "extractor.toml").write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings(kb)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        # folders outside the KB, or the KB itself
        ('claims_dir = "../outside"\n', "claims_dir", "inside the KB"),
        ('claims_dir = "/tmp/claims"\n', "claims_dir", "absolute"),
        ('claims_dir = ""\n', "claims_dir", "not the KB root itself"),
        ('claims_dir = "."\n', "claims_dir", "not the KB root itself"),
        ('claims_dir = "domains/../.."\n', "claims_dir", "inside the KB"),
        ('inbox_dir = "../inbox"\n', "inbox_dir", "inside the KB"),
        ('entities_dir = "/srv/entities"\n', "entities_dir", "absolute"),
        ('enrich_dirs = ["core", "../.."]\n', "enrich_dirs.1", "inside the KB"),
        # git's folder and the state folder
        ('claims_dir = ".git"\n', "claims_dir", "git's own folder"),
        ('claims_dir = ".git/hooks"\n', "claims_dir", "git's own folder"),
        ('enrich_dirs = [".git"]\n', "enrich_dirs.0", "git's own folder"),
        ('entities_dir = "vendor/.git"\n', "entities_dir", "git's own folder"),
        ('claims_dir = ".extractor"\n', "claims_dir", "state folder"),
        ('claims_dir = "./.extractor/claims"\n', "claims_dir", "state folder"),
        ('inbox_dir = ".extractor"\n', "inbox_dir", "state folder"),
        # overlapping the inbox
        ('claims_dir = "inbox/archive"\n', "claims_dir", "overlaps the inbox"),
        ('claims_dir = "inbox"\n', "claims_dir", "overlaps the inbox"),
        ('claims_dir = "inbox/archive/claims"\n', "claims_dir", "overlaps the inbox"),
        ('entities_dir = "inbox/archive/"\n', "entities_dir", "overlaps the inbox"),
        ('enrich_dirs = ["inbox"]\n', "enrich_dirs.0", "overlaps the inbox"),
        # claim folders among themselves, and the entity folder
        ('claims_dir = "domains"\nenrich_dirs = ["domains/"]\n', "enrich_dirs.0", "listed twice"),
        ('claims_dir = "domains"\nenrich_dirs = ["domains/health"]\n', "enrich_dirs.0", "inside claims_dir"),
        ('claims_dir = "kb/domains"\nenrich_dirs = ["kb"]\n', "enrich_dirs.0", "holds claims_dir"),
        ('enrich_dirs = ["core", "core"]\n', "enrich_dirs.1", "listed twice"),
        ('entities_dir = "claims/entities"\n', "entities_dir", "overlaps claims_dir"),
        ('claims_dir = "domains"\nentities_dir = "domains"\n', "entities_dir", "overlaps claims_dir"),
        # where each domain lives
        (CORPUS_LAYOUT + 'domains = ["health"]\n', "domain_dirs.collective-intelligence", "not one of domains"),
        (
            'claims_dir = "domains"\ndomain_dirs = { health = "medicine/health" }\n',
            "domain_dirs.health",
            "inside claims_dir or one of enrich_dirs",
        ),
        ('claims_dir = "domains"\ndomain_dirs = { health = "domains" }\n', "domain_dirs.health", "inside claims_dir"),
        ('domain_dirs = { health = "../health" }\n', "domain_dirs.health", "inside the KB"),
        (
            'domain_dirs = { health = "claims/h", ai-alignment = "claims/h/ai" }\n',
            "domain_dirs.ai-alignment",
            "inside the folder of health",
        ),
        # types: no true/false for a number, no number for true/false
        ("workers = true\n", "workers", "a number, not true/false"),
        ("max_per_cycle = false\n", "max_per_cycle", "a number, not true/false"),
        ("timeout = true\n", "timeout", "a number, not true/false"),
        ("seed = true\n", "seed", "a number, not true/false"),
        ("budget_per_day = false\n", "budget_per_day", "a number, not true/false"),
        ("cache = 0\n", "cache", "true or false, not a number"),
        ("entities = 1\n", "entities", "true or false, not a number"),
        # endpoints
        ('base_url = "localhost:8080/v1"\n', "base_url", "http:// or https:// URL"),
        ('base_url = "http:///v1"\n', "base_url", "http:// or https:// URL"),
        ('forge = "gitea"\nforge_url = "ftp://forge.example"\n', "forge_url", "http:// or https:// URL"),
    ],
)
def test_refused_when_loaded_naming_file_and_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    message = refusal(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'extractor.toml'}: {key}: "), message
    assert problem in message


def test_unknown_key_and_wrong_type_read_as_one_line_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "extractor.toml"
    assert refusal(tmp_path, "claim_dir = 'x'\n") == f"{path}: claim_dir: unknown setting (did you mean claims_dir?)"
    assert refusal(tmp_path, "bogus = 1\n") == f"{path}: bogus: unknown setting"
    assert refusal(tmp_path, 'workers = "many"\n') == f"{path}: workers: a number, not the string 'many'"
    assert refusal(tmp_path, "workers = 1.5\n").startswith(f"{path}: workers: Input should be a valid integer")


def test_a_folder_leading_out_of_the_kb_through_a_link_is_refused(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    kb.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (kb / "claims").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    message = refusal(kb, 'claims_dir = "claims"\n')
    assert message.startswith(f"{kb / 'extractor.toml'}: claims_dir: ") and "outside the KB" in message
    # a folder not made yet below the link leads out as well
    assert "outside the KB" in refusal(kb, 'claims_dir = "claims/new"\n')


def test_a_folder_linked_into_the_state_folder_or_the_inbox_is_refused(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    (kb / ".extractor").mkdir(parents=True)
    (kb / "inbox" / "archive").mkdir(parents=True)
    (kb / "notes").symlink_to(kb / ".extractor", target_is_directory=True)
    (kb / "drafts").symlink_to(kb / "inbox" / "archive", target_is_directory=True)
    assert "state folder" in refusal(kb, 'claims_dir = "notes"\n')
    assert "overlaps the inbox" in refusal(kb, 'claims_dir = "drafts"\n')


def test_the_corpus_layout_loads(tmp_path: Path) -> None:
    (tmp_path / "extractor.toml").write_text(CORPUS_LAYOUT, encoding="utf-8")
    settings = load_settings(tmp_path)
    assert settings.writable_claim_dirs == ["domains", "core", "foundations"]
    assert settings.domain_dirs == {"collective-intelligence": "foundations/collective-intelligence"}


def test_the_corpus_kb_itself_loads(corpus: Path, tmp_path: Path) -> None:
    """The real KB's folders (resolved on disk) pass the checks that follow links."""
    (tmp_path / "extractor.toml").write_text(CORPUS_LAYOUT, encoding="utf-8")
    settings = load_settings(corpus / "kb", tmp_path / "extractor.toml")
    assert settings.enrich_dirs == ["core", "foundations"]


def test_folders_are_kept_in_one_spelling(tmp_path: Path) -> None:
    (tmp_path / "extractor.toml").write_text(
        'claims_dir = "./domains/"\nenrich_dirs = ["core//"]\ninbox_dir = "inbox/archive/"\n', encoding="utf-8"
    )
    settings = load_settings(tmp_path)
    assert (settings.claims_dir, settings.enrich_dirs, settings.inbox_dir) == ("domains", ["core"], "inbox/archive")


def test_environment_values_still_load_and_are_named_when_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "extractor.toml").write_text("workers = 2\n", encoding="utf-8")
    monkeypatch.setenv("EXTRACTOR_WORKERS", "3")
    monkeypatch.setenv("EXTRACTOR_TIMEOUT", "7.5")
    monkeypatch.setenv("EXTRACTOR_CACHE", "false")
    monkeypatch.setenv("EXTRACTOR_ENRICH_DIRS", '["core"]')
    settings = load_settings(tmp_path)
    assert (settings.workers, settings.timeout, settings.cache, settings.enrich_dirs) == (3, 7.5, False, ["core"])

    monkeypatch.setenv("EXTRACTOR_WORKERS", "lots")
    with pytest.raises(SettingsError, match=r"^EXTRACTOR_WORKERS: workers: Input should be a valid integer"):
        load_settings(tmp_path)
    monkeypatch.setenv("EXTRACTOR_WORKERS", "3")
    monkeypatch.setenv("EXTRACTOR_CLAIMS_DIR", ".git")
    with pytest.raises(SettingsError, match=r"^EXTRACTOR_CLAIMS_DIR: claims_dir: .*git's own folder"):
        load_settings(tmp_path)
    monkeypatch.setenv("EXTRACTOR_CLAIMS_DIR", "inbox")
    with pytest.raises(SettingsError, match=r"^EXTRACTOR_CLAIMS_DIR: claims_dir: .*overlaps the inbox"):
        load_settings(tmp_path)
    monkeypatch.delenv("EXTRACTOR_CLAIMS_DIR")
    monkeypatch.setenv("EXTRACTOR_ENRICH_DIRS", "[core")
    with pytest.raises(SettingsError, match=r"^EXTRACTOR_ENRICH_DIRS: enrich_dirs: not valid JSON"):
        load_settings(tmp_path)


def test_values_given_in_code_are_checked_and_named_settings() -> None:
    """Overrides (the command line's) pass the same checks as the file, and no file is named."""
    with pytest.raises(SettingsError, match=r"^settings: claims_dir: '\.\./x': .*inside the KB"):
        load_settings(None, None, claims_dir="../x")
    with pytest.raises(SettingsError, match=r"^settings: workers: a number, not true/false"):
        load_settings(None, None, workers=True)


def test_generic_environment_names_are_not_taken_for_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """``API_KEY`` and ``BASE_URL`` belong to whatever else runs in the shell, not to this tool's endpoint."""
    monkeypatch.setenv("API_KEY", "sk-someone-elses")
    monkeypatch.setenv("BASE_URL", "http://elsewhere.example/v1")
    settings = load_settings()
    assert settings.api_key is None and settings.base_url is None
    monkeypatch.setenv("EXTRACTOR_API_KEY", "sk-mine")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    settings = load_settings()
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "sk-mine"
    assert settings.base_url == "http://127.0.0.1:9/v1"


def status_in(kb: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "extractor", "status", "--kb", str(kb)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_status_in_a_kb_with_bad_settings_says_one_line_and_exits_2(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXTRACTOR_", "OPENAI_"))}
    for text, expected in [
        ('claims_dir = ".git"\n', "claims_dir: '.git': is git's own folder"),
        ("workers = true\n", "workers: a number, not true/false"),
        ("nonsense = 1\n", "nonsense: unknown setting"),
    ]:
        (tmp_path / "extractor.toml").write_text(text, encoding="utf-8")
        done = status_in(tmp_path, env)
        assert done.returncode == 2, done
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
        assert f"{tmp_path / 'extractor.toml'}: {expected}" in done.stderr
    env["EXTRACTOR_ENRICH_DIRS"] = "[core"
    (tmp_path / "extractor.toml").write_text("", encoding="utf-8")
    done = status_in(tmp_path, env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "EXTRACTOR_ENRICH_DIRS: enrich_dirs: not valid JSON" in done.stderr


@pytest.mark.parametrize(("line", "message"), [
    ('workers = "3"', "workers: a number, not the string '3'"),
    ('budget_per_day = "1.5"', "budget_per_day: a number, not the string '1.5'"),
    ('cache = "false"', "cache: true or false, not the string 'false'"),
])  # fmt: skip
def test_a_quoted_number_or_switch_in_the_file_is_refused(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "extractor.toml").write_text(line + "\n", encoding="utf-8")
    with pytest.raises(SettingsError) as raised:
        load_settings(tmp_path)
    assert str(raised.value) == f"{tmp_path / 'extractor.toml'}: {message}"


@pytest.mark.parametrize("name", ["", "a..b", "-x", "x/", "x.lock", "a b", "x~1", "x@{0}", "x^", "@"])
def test_main_branch_must_be_a_branch_name(tmp_path: Path, name: str) -> None:
    (tmp_path / "extractor.toml").write_text(f"main_branch = {name!r}\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="main_branch: .* is not a git branch name"):
        load_settings(tmp_path)


def test_real_branch_names_are_kept(tmp_path: Path) -> None:
    for name in ("main", "master", "trunk", "release/2026", "team.kb-main"):
        (tmp_path / "extractor.toml").write_text(f"main_branch = {name!r}\n", encoding="utf-8")
        assert load_settings(tmp_path).main_branch == name
