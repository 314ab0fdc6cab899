"""The documentation: the generated references cover every setting and every command, the site builds strict
(a broken link fails it), and the README stays a quickstart that starts with the two set-up commands."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import Field

from extractor.cli.main import build_parser
from extractor.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def load_hooks() -> ModuleType:
    """docs/hooks.py as MkDocs loads it: a file, not a package module."""
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hooks() -> ModuleType:
    return load_hooks()


def section(page: str, heading: str) -> str:
    """The text under a heading line, up to the next heading of any level."""
    start = page.index(heading + "\n")
    following = re.search(r"^#{1,6} ", page[start + len(heading) :], flags=re.M)
    return page[start : start + len(heading) + (following.start() if following else len(page))]


def commands_of(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], list[str]]:
    """Every command path the parser accepts, with its options: read straight from argparse, apart from the
    generator's own walk."""
    found = {path: [option for action in parser._actions for option in action.option_strings]}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(commands_of(sub, (*path, name)))
    return found


def test_every_setting_is_in_the_configuration_reference(hooks: ModuleType) -> None:
    page = hooks.settings_reference()
    missing = [name for name in Settings.model_fields if f"### `{name}`\n" not in page]
    assert not missing, f"settings missing from the configuration reference: {missing}"
    for name, field in Settings.model_fields.items():
        entry = section(page, f"### `{name}`")
        assert f"`EXTRACTOR_{name.upper()}`" in entry or field.validation_alias, entry
        assert "- Type: `" in entry and "- Default: " in entry, entry
        assert entry.split("\n")[2].strip(), f"{name} has no description: give its Field a description="
    assert "Default: `4096`" in section(page, "### `max_tokens`")
    assert "`OPENAI_BASE_URL`" in section(page, "### `base_url`")
    assert '`"json_schema" | "json_object_schema" | "prompt"`' in section(page, "### `structured_mode`")
    assert "## LLM endpoint" in page  # the model's own grouping comments head the sections


def test_every_setting_describes_itself_in_the_model() -> None:
    """The reference's one source: a setting without a description on its field fails here, by name."""
    bare = sorted(name for name, field in Settings.model_fields.items() if not (field.description or "").strip())
    assert not bare, f"settings without description= on their Field: {bare}"


def test_a_new_setting_appears_without_touching_the_generator(hooks: ModuleType) -> None:
    class MoreSettings(Settings):
        # Newly grouped
        wobble_limit: int = Field(default=3, ge=2, description="how much wobble a cycle tolerates")
        wobble_names: list[str] = Field(default_factory=lambda: ["a"], description="who wobbles")

    page = hooks.settings_reference(MoreSettings)
    entry = section(page, "### `wobble_limit`")
    assert "How much wobble a cycle tolerates." in entry
    assert "- Default: `3`" in entry and "- Allowed: at least 2" in entry
    assert "`EXTRACTOR_WOBBLE_LIMIT`" in entry
    assert "`EXTRACTOR_WOBBLE_NAMES` (as JSON)" in section(page, "### `wobble_names`")
    assert "## Newly grouped" in page
    assert all(f"### `{name}`\n" in page for name in Settings.model_fields)


def test_every_command_and_option_is_in_the_command_reference(hooks: ModuleType) -> None:
    parser = build_parser()
    page = hooks.command_reference(parser)
    commands = commands_of(parser)
    assert len(commands) > 10
    shared = set(commands[()])
    for path, options in commands.items():
        heading = next(
            (
                line
                for line in page.splitlines()
                if line.startswith("#") and line.endswith(f" `{' '.join(('extractor', *path))}`")
            ),
            None,
        )
        assert heading is not None, f"command missing from the reference: extractor {' '.join(path)}"
        entry = section(page, heading)
        assert "```text\nusage: extractor" in entry, entry
        for option in options:
            if option in ("-h", "--help") or (path and option in shared):
                continue
            assert re.search(rf"`[^`]*(?<![\w-]){re.escape(option)}(?![\w-])", entry), (
                f"extractor {' '.join(path)}: {option} missing from the reference"
            )
    for option in shared - {"-h", "--help"}:
        assert option in section(page, "## `extractor`"), option


def test_a_new_nested_command_appears_without_touching_the_generator(hooks: ModuleType) -> None:
    parser = build_parser()
    top = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    garden = top.add_parser("garden", aliases=["g"], help="tend the garden")
    beds = garden.add_subparsers(dest="bed", required=True)
    weed = beds.add_parser("weed", help="pull what does not belong").add_subparsers(dest="how", required=True)
    weed.add_parser("gently", help="by hand").add_argument("--gloves", choices=["thin", "thick"], help="which pair")
    page = hooks.command_reference(parser)
    assert "Also: `g`." in section(page, "## `extractor garden`")
    entry = section(page, "#### `extractor garden weed gently`")
    assert "By hand." in entry and "usage: extractor garden weed gently" in entry
    assert "| `--gloves {thin,thick}` | which pair |" in entry
    assert page.count("`extractor garden`") == 1, "an alias is not a second command"
    assert "[`weed`](#extractor-garden-weed)" in section(page, "### `extractor garden weed`") or (
        "[`weed`](#extractor-garden-weed)" in section(page, "## `extractor garden`")
    )


def test_help_text_is_not_read_as_markup(hooks: ModuleType) -> None:
    parser = argparse.ArgumentParser(prog="tool", description="Use <KB>/x.toml, not *this* | that.")
    parser.add_argument("--path", help="a glob such as 'inbox/*' or [[link]]")
    page = hooks.command_reference(parser)
    assert "&lt;KB&gt;/x.toml, not \\*this\\* | that." in page
    assert "a glob such as 'inbox/\\*' or \\[\\[link\\]\\]" in page


def test_the_example_settings_file_is_valid_settings() -> None:
    """The configuration page's extractor.toml names real settings with allowed values (renamed ones fail)."""
    page = (ROOT / "docs" / "configuration.md").read_text()
    example = re.search(r"```toml\n(.*?)```", page, flags=re.S)
    assert example is not None
    values = tomllib.loads(example.group(1))
    assert len(values) > 40
    Settings(**values)


def test_readme_starts_with_the_two_set_up_commands_and_its_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", readme, flags=re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.split("#")[0].strip()]
    assert commands == ["make run", "make test"]
    assert len(readme.splitlines()) < 150, "the README is a quickstart; the rest belongs under docs/"
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert any(link.startswith("docs/") for link in local)
    broken = [link for link in local if not (ROOT / link).exists()]
    assert not broken, f"README links to files that do not exist: {broken}"


def mkdocs_or_skip() -> None:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs and mkdocs-material are not installed (pip install -e '.[docs]'; make docs does)")


def build(tree: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_the_site_builds_strict_with_the_generated_references(tmp_path: Path) -> None:
    mkdocs_or_skip()
    done = build(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    settings_page = (tmp_path / "site" / "reference" / "configuration.html").read_text()
    commands_page = (tmp_path / "site" / "reference" / "commands.html").read_text()
    assert 'id="budget_per_day"' in settings_page
    assert 'id="extractor-review-accept"' in commands_page
    assert "Per source, excluding the LLM" in (tmp_path / "site" / "benchmarks.html").read_text()


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    mkdocs_or_skip()
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "docs", tree / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("mkdocs.yml", "BENCHMARKS.md"):
        shutil.copy(ROOT / name, tree / name)
    (tree / "extractor").symlink_to(ROOT / "extractor")  # watched by mkdocs serve; must exist
    with (tree / "docs" / "operating.md").open("a") as page:
        page.write("\nSee [the unit](systemd.md) and [budgets](spending.md#no-such-anchor).\n")
    done = build(tree, tmp_path / "site")
    assert done.returncode != 0
    assert "systemd.md" in done.stderr and "no-such-anchor" in done.stderr
