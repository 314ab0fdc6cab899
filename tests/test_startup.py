"""Instant start: commands import only what they use, and shell completion works through the installed script.

Each command runs in a fresh interpreter, as a user starts it: what a module imports at the top is paid by
every command that imports the module, so the check is on the modules a whole run loads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kbfactory import make_inbox_kb

ENTRY = Path(sys.executable).with_name("extractor")  # the console script the package installs


def imported_by(args: list[str], cwd: Path) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """Every module ``python -m extractor ARGS`` imports, read from ``-X importtime``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "extractor", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    names = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return names, done


def test_help_imports_neither_the_sdk_nor_the_index_nor_git(tmp_path: Path) -> None:
    names, done = imported_by(["--help"], tmp_path)
    assert done.returncode == 0 and "usage: extractor" in done.stdout
    assert "extractor.cli.main" in names  # the import log was read
    assert names & {"openai", "tantivy", "pygit2"} == set()


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["costs"], ["review", "list"]], ids=" ".join)
def test_reading_commands_do_not_import_the_sdk_or_the_index(tmp_path: Path, command: list[str]) -> None:
    kb = make_inbox_kb(tmp_path / "kb", sources=2)
    names, done = imported_by(command, kb)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "extractor.cli.main" in names
    assert names & {"openai", "tantivy"} == set()


def need_entry_point() -> Path:
    if not ENTRY.exists():
        pytest.skip(f"the extractor script is not installed beside {sys.executable}")
    return ENTRY


def test_the_bash_script_sourced_in_bash_completes_a_command() -> None:
    """What a user's shell does: eval the script, then press Tab after ``extractor rev``."""
    entry = need_entry_point()
    script = subprocess.run([entry, "completion", "bash"], capture_output=True, text=True, timeout=60)
    assert script.returncode == 0
    assert "complete -o nospace -o default -o bashdefault -F _python_argcomplete extractor" in script.stdout
    tab = (
        'eval "$SCRIPT"; COMP_LINE="extractor rev"; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(extractor rev); '
        'COMP_CWORD=1; _python_argcomplete extractor rev extractor; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = {**os.environ, "SCRIPT": script.stdout, "PATH": f"{entry.parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", tab], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [line.strip() for line in done.stdout.splitlines()] == ["review"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("extractor rev", {"review"}),
        ("extractor review l", {"list"}),
        ("extractor costs --by s", {"stage", "source"}),
        ("extractor completion f", {"fish"}),
    ],
)
def test_the_entry_point_answers_argcomplete_on_fd_8(line: str, expected: set[str]) -> None:
    """The protocol the shell scripts speak: the line and cursor in the environment, the answers on fd 8
    separated by the IFS character, stdout and stderr silenced, as bash runs it."""
    assert complete(line) == expected


def test_a_review_slug_completes_to_the_kb_s_extraction_branches(tmp_path: Path) -> None:
    kb = make_inbox_kb(tmp_path / "kb", sources=1)
    for slug in ("2026-01-00-alpha", "2026-01-00-beta", "2025-12-00-gamma"):
        subprocess.run(["git", "branch", f"extract/{slug}"], cwd=kb, check=True)
    subprocess.run(["git", "branch", "person/2026-01-00-delta"], cwd=kb, check=True)
    assert complete("extractor review show 2026", cwd=kb) == {"2026-01-00-alpha", "2026-01-00-beta"}
    assert complete(f"extractor review reject --kb {kb} 2025") == {"2025-12-00-gamma"}


def complete(line: str, cwd: Path | None = None) -> set[str]:
    entry = need_entry_point()
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_SHELL": "bash",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_IFS": "\v",
        "_ARGCOMPLETE_SUPPRESS_SPACE": "1",
    }
    done = subprocess.run(
        ["bash", "-c", '"$0" 8>&1 9>/dev/null 1>/dev/null 2>&1 </dev/null', str(entry)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    return {word.strip() for word in done.stdout.split("\v")}
