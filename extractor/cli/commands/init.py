"""``extractor init``: a commented ``extractor.toml`` written from what the KB holds, and what to run next.

The layout is found, not asked for (:mod:`extractor.kb.discover`): where claims, each domain, entity notes
and sources are kept, the domains the claim schema lists, the main branch and the remote. Without ``--yes``
the findings are shown and a confirmation asked; an existing settings file is replaced only with
``--force``, and the settings init does not decide (an endpoint, a model, prices...) are kept from it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from extractor.cli.common import EXIT_FAILED, EXIT_OK, print_json, usage_error

if TYPE_CHECKING:
    from tomlkit.container import Container
    from tomlkit.items import Table
    from tomlkit.toml_document import TOMLDocument

    from extractor.core.settings import Settings
    from extractor.kb.discover import Discovery

# The settings init decides from the KB; any other key of a replaced file is kept as it was.
DECIDED = ("inbox_dir", "claims_dir", "enrich_dirs", "entities_dir", "domains", "main_branch", "domain_dirs")
# Shown commented out unless the replaced file sets them: the endpoint is the first thing a person sets.
ENDPOINT_HINTS = {
    "base_url": ('"https://api.openai.com/v1"', "An OpenAI-compatible endpoint (or OPENAI_BASE_URL in the "
                 "environment); unset, the embedded model runs, if installed (pip install 'extractor[local]')."),
    "model": ('"gpt-4o-mini"', "The model asked (default gpt-4o-mini). Its key belongs in OPENAI_API_KEY, "
              "not in this file."),
}  # fmt: skip
WIDTH = 100


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def comment(into: TOMLDocument | Table, text: str) -> None:
    """``text`` as comment lines of at most :data:`WIDTH` characters."""
    import tomlkit

    for line in textwrap.wrap(text, WIDTH - 2, break_long_words=False, break_on_hyphens=False):
        into.add(tomlkit.comment(line))


def remarks(found: Discovery) -> list[str]:
    """What was found that the settings cannot say, for the person to know."""
    said = [
        f"The claims of {domain} are in {folder}/, which the settings cannot name as its folder (it is a claim "
        f"folder itself, or inside another domain's): new ones go to {found.layout.claims_dir or 'claims'}/{domain}/."
        for domain, folder in found.layout.unplaced.items()
    ]
    if not found.entities_apart:
        said.append("Entity notes were found among claims or sources; they must be kept in a folder of their own.")
    if found.unlisted_domains:
        said.append(f"Claims also name {', '.join(found.unlisted_domains)}, which schemas/claim.md does not list.")
    return said


def settings_toml(found: Discovery, previous: Container | None = None, push: bool = False) -> str:
    """The settings file for what was found, each key with a comment saying what it does and what was seen.

    ``previous`` is the file being replaced: its commit_mode and remote, and every key init does not decide,
    are kept. ``push`` sets ``remote`` to the remote found.
    """
    import tomlkit

    layout = found.layout
    kept = dict(previous.items()) if previous is not None else {}
    doc = tomlkit.document()
    comment(doc, "Settings of extractor for this knowledge base, written by `extractor init` from what the KB "
                 "holds. Settings not named here keep their defaults (see the configuration reference); the "
                 "environment wins over this file: OPENAI_BASE_URL, OPENAI_API_KEY, EXTRACTOR_<SETTING>.")  # fmt: skip
    for remark in remarks(found):
        comment(doc, f"Note: {remark}")

    doc.add(tomlkit.nl())
    doc.add(tomlkit.comment("--- The model"))
    for key, (example, why) in ENDPOINT_HINTS.items():
        comment(doc, why)
        if key in kept:
            doc.add(key, kept.pop(key))
        else:
            doc.add(tomlkit.comment(f"{key} = {example}"))

    doc.add(tomlkit.nl())
    doc.add(tomlkit.comment("--- Where things are, as found in the KB"))
    if found.inbox_dir:
        seen = f"found: {plural(found.sources, 'source')}, {found.unprocessed} waiting to be extracted"
    else:
        seen = "no source file found: the default"
    comment(doc, f"Sources waiting to be read: the .md files directly in this folder ({seen}).")
    doc.add("inbox_dir", found.inbox_dir or "inbox/archive")

    claims_dir = layout.claims_dir or "claims"
    if layout.claims_dir:
        under = sum(1 for domain, folder in layout.homes.items() if folder == f"{claims_dir}/{domain}")
        seen = f"found: {plural(layout.claims[claims_dir], 'claim')} in {plural(under, 'domain folder')}"
    else:
        seen = "no claim found: the default"
    comment(doc, f"New claims go to {claims_dir}/<domain>/, unless [domain_dirs] below names the domain's "
                 f"folder ({seen}).")  # fmt: skip
    doc.add("claims_dir", claims_dir)

    seen = ", ".join(f"{plural(layout.claims[folder], 'claim')} in {folder}" for folder in layout.enrich_dirs)
    comment(doc, "More folders of claims: enrichments may edit the claims they hold, and the domains kept "
                 f"there get their new claims there ({'found: ' + seen if seen else 'none found'}).")  # fmt: skip
    doc.add("enrich_dirs", layout.enrich_dirs)

    seen = f"found: {plural(found.entity_notes, 'note')}" if found.entities_dir else "none found: the default"
    schema = "; their types are read from schemas/entity.md" if found.entity_schema else ""
    comment(doc, f"Entity notes, in a folder per domain ({seen}{schema}).")
    doc.add("entities_dir", found.entities_dir or "entities")

    origin = {"schema": "as schemas/claim.md lists them", "claims": "those the KB's claims name",
              "none": "none found: the defaults stand"}[found.domains_from]  # fmt: skip
    comment(doc, f"The domains a source or a claim may name ({origin}).")
    if found.domains:
        domains = tomlkit.array()
        domains.extend(found.domains)
        doc.add("domains", domains.multiline(True))

    doc.add(tomlkit.nl())
    doc.add(tomlkit.comment("--- Git"))
    seen = "found" if found.main_branch else "not found: check it"
    comment(doc, f"The branch extraction branches start from and accepted drafts merge into ({seen}).")
    doc.add("main_branch", found.main_branch or "main")
    comment(doc, "branch: each source's drafts go on a branch extract/<source>, for `extractor review`; main: "
                 "they are committed straight onto the branch checked out, with nobody reviewing them.")  # fmt: skip
    doc.add("commit_mode", kept.pop("commit_mode", "branch"))
    comment(doc, "The git remote extraction branches are pushed to, for review there; unset, they stay here.")
    if "remote" in kept:
        doc.add("remote", kept.pop("remote"))
    elif push and found.remote:
        doc.add("remote", found.remote)
    elif found.remote:
        doc.add(tomlkit.comment(f'remote = "{found.remote}"'))
    else:
        doc.add(tomlkit.comment("(no remote found)"))

    for key in DECIDED:
        kept.pop(key, None)
    if kept:
        doc.add(tomlkit.nl())
        doc.add(tomlkit.comment("--- Kept from the settings file this one replaced"))
        for key, value in kept.items():
            doc.add(key, value)

    table = tomlkit.table()
    elsewhere = found.domain_dirs()
    comment(table, f"Where the domains kept outside {claims_dir}/<domain>/ are.")
    in_claims_dir = [d for d in found.domains if d not in elsewhere and layout.homes.get(d) == f"{claims_dir}/{d}"]
    if in_claims_dir:
        comment(table, f"In {claims_dir}/<domain>/: {', '.join(in_claims_dir)}.")
    no_folder = [d for d in found.domains if d not in layout.homes]
    if no_folder:
        comment(table, f"No folder yet, so {claims_dir}/<domain>/ for their first claims: {', '.join(no_folder)}.")
    for domain, folder in elsewhere.items():
        table.add(domain, folder)
    doc.add(tomlkit.nl())
    doc.add("domain_dirs", table)
    return tomlkit.dumps(doc)


def findings(found: Discovery) -> list[str]:
    """What was found, a line per kind, for a person deciding whether to write it."""
    layout = found.layout
    elsewhere = found.domain_dirs()
    claims = ", ".join(f"{count} in {folder}/" for folder, count in layout.claims.items()) or "none found"
    domains = {"schema": " (listed in schemas/claim.md)", "claims": " (named by claims)", "none": ""}
    width = max((len(domain) for domain in elsewhere), default=0)
    lines = [
        f"claims      {claims}",
        f"domains     {len(found.domains)}{domains[found.domains_from]}: new claims go to "
        f"{layout.claims_dir or 'claims'}/<domain>/" + (", except" if elsewhere else ""),
        *(f"              {domain:<{width}}  {folder}/" for domain, folder in elsewhere.items()),
        f"entities    {f'{found.entity_notes} notes in {found.entities_dir}/' if found.entities_dir else 'none found'}",
        f"inbox       {found.inbox_dir}/: {plural(found.sources, 'source')}, {found.unprocessed} waiting"
        if found.inbox_dir
        else "inbox       no source found (inbox/archive/ by default)",
        f"git         main branch {found.main_branch or '(not found)'}"
        + (f"; remote {found.remote}" if found.remote else "; no remote")
        + ("" if found.has_commits else "; no commit yet"),
    ]
    return lines + [f"note        {remark}" for remark in remarks(found)]


def ask(question: str, default: bool) -> bool:
    """A yes/no answer from a person at the terminal (the question on stderr, so stdout stays the command's
    output); the end of the input means the default."""
    print(f"{question} [{'Y/n' if default else 'y/N'}] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline() if sys.stdin is not None else ""
    if not answer:
        print(file=sys.stderr)
    answer = answer.strip().lower()
    return default if not answer else answer in ("y", "yes")


def next_steps(kb_root: Path, target: Path, found: Discovery, settings: Settings) -> list[str]:
    """The commands to run now, each under what it does, to copy as they are."""
    from extractor.cli.commands.demo import command_name

    here = Path.cwd().resolve()
    program = command_name() + ("" if here.is_relative_to(kb_root) else f" --kb {shlex.quote(str(kb_root))}")
    waiting = (
        f"the {plural(found.unprocessed, 'source')} waiting in {found.inbox_dir}/" if found.inbox_dir else "the inbox"
    )
    drafts = "each on a branch extract/<source>" if settings.commit_mode == "branch" else "onto the branch checked out"
    steps = [("check the KB's notes against the gates (it changes nothing)", f"{program} validate")]
    if not settings.has_endpoint:
        steps.append(("point it at an endpoint (or set base_url in the file; unset, the embedded model runs)",
                      "export OPENAI_BASE_URL=https://... OPENAI_API_KEY=..."))  # fmt: skip
    steps.append((f"draft claims from {waiting}, {drafts}", f"{program} run --once"))
    if settings.commit_mode == "branch":
        steps.append(("see the drafts awaiting review", f"{program} review list"))
    lines = [f"wrote {target}: commit it, so every clone and worker uses the same settings"]
    if not found.has_commits:
        lines.append("the repository has no commit yet: commit the KB before running")
    return [*lines, "next:", *(line for why, command in steps for line in (f"  {why}:", f"    {command}"))]


def read_previous(path: Path) -> Container | None:
    """The settings file being replaced, to keep what init does not decide; None if it does not parse."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, TOMLKitError):
        return None


def loaded(kb_root: Path, text: str) -> Settings:
    """The settings as every command will load them: a file init writes never stops a command."""
    from extractor.core.errors import ConfigurationError
    from extractor.core.settings import SettingsError, load_settings

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "extractor.toml"
        path.write_text(text, encoding="utf-8")
        try:
            return load_settings(kb_root, path)
        except SettingsError as exc:
            problem = str(exc).replace(str(path), "the settings found")
            raise ConfigurationError(f"{problem}; nothing written (write the settings by hand)") from None


def run_init(args: argparse.Namespace) -> int:
    from extractor.cli.common import kb_root_of
    from extractor.core.errors import ConfigurationError
    from extractor.core.settings import SETTINGS_FILE
    from extractor.kb.discover import discover
    from extractor.kb.files import atomic_write
    from extractor.kb.gitrepo import GitError

    try:
        kb_root = kb_root_of(args).resolve()
    except GitError as exc:
        hint = " (a KB is a git repository: `git init` it first)" if "not inside a git work tree" in str(exc) else ""
        raise ConfigurationError(f"{exc}{hint}") from None
    configured = args.config or (Path(os.environ["EXTRACTOR_CONFIG"]) if os.environ.get("EXTRACTOR_CONFIG") else None)
    target = configured or kb_root / SETTINGS_FILE
    dry_run = getattr(args, "dry_run", False)
    exists = target.exists()
    if exists and not args.force and not dry_run:
        return usage_error(f"{target} exists: pass --force to replace it (the settings init does not find are kept)")

    found = discover(kb_root)
    previous = read_previous(target) if exists else None
    if dry_run:
        text = settings_toml(found, previous)
        if args.json:
            print_json({"settings_file": str(target), "found": found.model_dump(mode="json"),
                        "domain_dirs": found.domain_dirs(), "settings": text, "written": False})  # fmt: skip
        else:
            print(text, end="")
        return EXIT_OK
    if not args.yes and not sys.stdin.isatty():
        return usage_error("init asks before it writes, and stdin is not a terminal: pass --yes to write what it found")
    shown = sys.stderr if args.json else sys.stdout
    if not args.yes:
        print(f"in {kb_root}:", file=shown)
        for line in findings(found):
            print(f"  {line}", file=shown)
    push = False
    if not args.yes and found.remote and not (previous is not None and "remote" in previous):
        push = ask(f"push extraction branches to {found.remote} for review there?", default=False)
    text = settings_toml(found, previous, push=push)
    settings = loaded(kb_root, text)
    if not args.yes and not ask(f"replace {target}?" if exists else f"write {target}?", default=not exists):
        print("nothing written", file=sys.stderr)
        return EXIT_FAILED
    atomic_write(target, text)
    if args.json:
        data: dict[str, Any] = {"settings_file": str(target), "found": found.model_dump(mode="json")}
        print_json({**data, "domain_dirs": found.domain_dirs()})
    elif not getattr(args, "quiet", False):
        print("\n".join(next_steps(kb_root, target, found, settings)))
    return EXIT_OK
