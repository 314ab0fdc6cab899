"""The documentation site's generated pages, made on every ``mkdocs build`` so neither can drift from the code.

- ``reference/configuration.md``: every field of ``extractor.core.settings.Settings`` with its type, default,
  bounds, environment variable and description.
- ``reference/commands.md``: every command and subcommand that ``extractor.cli.main.build_parser`` holds, found by
  walking the parser (not a list kept here), with its usage, help and arguments.

MkDocs loads this file as a hook (``hooks:`` in mkdocs.yml); tests/test_docs.py calls the generators directly.
"""

from __future__ import annotations

import argparse
import ast
import html
import inspect
import json
import re
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import PurePath
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files

SETTINGS_PAGE = "reference/configuration.md"
COMMANDS_PAGE = "reference/commands.md"
USAGE_WIDTH = 76  # usage lines wrap here, whatever the terminal that builds the site


def escape(text: str) -> str:
    """Help and descriptions are plain text: markdown must not read ``<KB>`` as HTML nor ``*`` as emphasis."""
    return re.sub(r"([\\`*_\[\]#])", r"\\\1", html.escape(" ".join(text.split()), quote=False))


def sentence(text: str) -> str:
    """A help string or description as a sentence of its own: capitalised, with a full stop."""
    text = " ".join(text.split())
    return escape(text[:1].upper() + text[1:] + ("" if not text or text[-1] in ".!?:" else "."))


# The configuration reference


def type_name(annotation: Any) -> str:
    """A setting's type as a settings file spells it."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_name(args[0])
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in args if arg is not type(None))
    if origin is Literal:
        return " | ".join(json.dumps(arg) for arg in args)
    if origin in (list, tuple, set, frozenset):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"table of {type_name(args[0])} -> {type_name(args[1])}" if args else "table"
    if isinstance(annotation, type):
        if issubclass(annotation, Enum):
            return " | ".join(json.dumps(member.value) for member in annotation)
        if issubclass(annotation, BaseModel):
            return "table { " + ", ".join(annotation.model_fields) + " }"
        names = {bool: "boolean", int: "integer", float: "number", str: "string", SecretStr: "string (secret)"}
        if annotation in names:
            return names[annotation]
        if issubclass(annotation, PurePath):
            return "path"
    return str(getattr(annotation, "__name__", annotation))


def toml_key(key: object) -> str:
    return str(key) if re.fullmatch(r"[A-Za-z0-9_-]+", str(key)) else json.dumps(str(key))


def toml_value(value: Any) -> str:
    """A default as it would be written in extractor.toml."""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_none=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, SecretStr):
        return '"(secret)"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(f"{toml_key(key)} = {toml_value(item)}" for key, item in value.items())
        return "{ " + pairs + " }" if pairs else "{}"
    return json.dumps(str(value))


def bounds(field: FieldInfo) -> str:
    """The field's numeric and length constraints, in words."""
    words = {
        annotated_types.Ge: ("at least", "ge"),
        annotated_types.Gt: ("more than", "gt"),
        annotated_types.Le: ("at most", "le"),
        annotated_types.Lt: ("less than", "lt"),
        annotated_types.MinLen: ("at least {} item(s)", "min_length"),
        annotated_types.MaxLen: ("at most {} item(s)", "max_length"),
    }
    said = []
    for constraint in field.metadata:
        for kind, (phrase, attribute) in words.items():
            if isinstance(constraint, kind):
                number = getattr(constraint, attribute)
                said.append(phrase.format(number) if "{}" in phrase else f"{phrase} {number}")
    return ", ".join(said)


def env_names(model: type[BaseModel], name: str, field: FieldInfo) -> list[str]:
    """The environment variables that set a field: its upper-case aliases, and the prefix with its name unless an
    alias replaces the name (``validate_by_name`` off)."""
    alias = field.validation_alias
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias] if isinstance(alias, str) else []
    named = [choice for choice in choices if isinstance(choice, str) and choice.isupper()]
    config = model.model_config
    if not choices or config.get("validate_by_name") or config.get("populate_by_name"):
        named.append(f"{config.get('env_prefix') or ''}{name}".upper())
    return list(dict.fromkeys(named))


def is_table(annotation: Any) -> bool:
    """Lists and tables come from the environment as JSON."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return is_table(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return any(is_table(arg) for arg in get_args(annotation))
    return origin in (list, tuple, set, frozenset, dict) or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel)
    )


def field_groups(model: type[BaseModel]) -> list[tuple[str, list[str]]]:
    """The fields under the comment lines that head their part of the class body (``# Spending``), in order.

    Fields declared elsewhere (a parent class) come under "Other settings"; a class whose source cannot be read
    gives one group."""
    names = list(model.model_fields)
    try:
        source = textwrap.dedent(inspect.getsource(model))
    except (OSError, TypeError):
        return [("Settings", names)]
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    field_line = {
        stmt.target.id: stmt.lineno
        for stmt in body.body
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id in names
    }
    indent = " " * (body.body[0].col_offset if body.body else 4)
    headings = [
        (number, line.strip().removeprefix("#").strip())
        for number, line in enumerate(source.splitlines(), start=1)
        if line.startswith(indent + "#") and not line.startswith(indent + " ")
    ]
    groups: dict[str, list[str]] = {}
    for name in names:
        if name not in field_line:
            groups.setdefault("Other settings", []).append(name)
            continue
        above = [text for number, text in headings if number < field_line[name]]
        groups.setdefault(above[-1] if above else "Settings", []).append(name)
    return list(groups.items())


def setting_entry(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    description = field.description or ""
    envs = ", ".join(f"`{env}`" for env in env_names(model, name, field))
    lines = [
        f"### `{name}`",
        "",
        sentence(description),
        "",
        f"- Type: `{type_name(field.annotation)}`",
        f"- Default: {'unset' if default is None else '`' + toml_value(default) + '`'}",
    ]
    if bound := bounds(field):
        lines.append(f"- Allowed: {bound}")
    lines.append(f"- Environment: {envs}" + (" (as JSON)" if is_table(field.annotation) else ""))
    return "\n".join(lines)


def settings_reference(model: type[BaseModel] | None = None) -> str:
    """The configuration reference page: every field of the settings model, in the model's groups."""
    if model is None:
        from extractor.core.settings import SETTINGS_FILE, Settings

        model, settings_file = Settings, SETTINGS_FILE
    else:
        settings_file = "extractor.toml"
    parts = [
        "# Configuration reference",
        "",
        "<!-- Generated by docs/hooks.py from extractor.core.settings.Settings on every build: edit the model. -->",
        "",
        f"Every setting, as a key of the settings file (`{settings_file}` at the KB root, or the file named by "
        "`--config` or `EXTRACTOR_CONFIG`) or as its environment variable, which wins over the file. "
        "How settings are found, and an example file, are in [Configuration](../configuration.md).",
    ]
    for title, names in field_groups(model):
        parts += ["", f"## {escape(title)}"]
        parts += ["", *(setting_entry(model, name, model.model_fields[name]) + "\n" for name in names)]
    return "\n".join(parts).rstrip() + "\n"


# The command reference


@dataclass(frozen=True)
class Command:
    """One parser in the tree: ``path`` is the words typed after the program's name."""

    path: tuple[str, ...]
    parser: argparse.ArgumentParser
    help: str | None
    aliases: tuple[str, ...] = ()


def walk_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = (), help: str | None = None, aliases: tuple[str, ...] = ()
) -> Iterator[Command]:
    """The parser and every subcommand under it, depth first, in the order they were added."""
    yield Command(path, parser, help or parser.description, aliases)
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        names: dict[int, list[str]] = {}  # a subcommand's aliases map to the same parser
        for name, sub in action.choices.items():
            names.setdefault(id(sub), []).append(name)
        for name, *others in names.values():
            sub = action.choices[name]
            yield from walk_commands(sub, (*path, name), helps.get(name), tuple(others))


def usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def argument_row(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """One table row: how the argument is written, and what it does."""
    formatter = argparse.HelpFormatter(parser.prog, width=USAGE_WIDTH)
    if action.option_strings:
        shown = ", ".join(action.option_strings)
        if action.nargs != 0:
            shown += " " + formatter._format_args(action, action.dest.upper())
    else:
        shown = formatter._format_args(action, action.dest)
    helped = formatter._expand_help(action) if action.help else ""
    if action.choices is not None and "{" not in shown:
        helped += f" (one of: {', '.join(map(str, action.choices))})"
    return f"| `{shown}` | {escape(helped.strip()).replace('|', '&#124;')} |"


def option_key(action: argparse.Action) -> tuple[tuple[str, ...], str | None]:
    return tuple(action.option_strings), action.help


def command_section(command: Command, program: str, shared: frozenset[tuple[tuple[str, ...], str | None]]) -> str:
    """One command: its help, usage and arguments; options it shares with the program (``shared``) are listed
    once, under the program."""
    parser = command.parser
    title = " ".join((program, *command.path))
    depth = min(max(len(command.path), 1) + 1, 6)  # the program and its commands under the page's title
    lines = [f"{'#' * depth} `{title}`", ""]
    if command.help:
        lines += [sentence(command.help), ""]
    if command.aliases:
        lines += ["Also: " + ", ".join(f"`{alias}`" for alias in command.aliases) + ".", ""]
    if parser.description and parser.description != command.help:
        lines += [sentence(parser.description), ""]
    lines += ["```text", usage(parser), "```"]
    shown = [
        action
        for action in parser._actions
        if action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction)
    ]
    subcommands = [action for action in shown if isinstance(action, argparse._SubParsersAction)]
    arguments = [action for action in shown if action not in subcommands]
    own = [action for action in arguments if not command.path or option_key(action) not in shared]
    if own:
        lines += ["", "| Argument | Meaning |", "| --- | --- |", *(argument_row(parser, action) for action in own)]
    if len(own) < len(arguments):
        lines += ["", f"It takes the [options of `{program}`](#{anchor(program)}) too."]
    if subcommands:
        names = [name for action in subcommands for name in dict.fromkeys(action.choices)]
        links = ", ".join(f"[`{name}`](#{anchor(title + ' ' + name)})" for name in names)
        lines += ["", f"Subcommands: {links}."]
    if parser.epilog:
        lines += ["", sentence(parser.epilog)]
    return "\n".join(lines)


def anchor(title: str) -> str:
    """The id MkDocs' toc extension gives the heading `` `title` ``."""
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", title).strip().lower())


def command_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """The command reference page: every command the parser holds, found by walking it."""
    if parser is None:
        from extractor.cli.main import build_parser

        parser = build_parser()
    program = parser.prog
    shared = frozenset(
        option_key(action)
        for action in parser._actions
        if action.option_strings and not isinstance(action, argparse._HelpAction | argparse._VersionAction)
    )
    parts = [
        "# Command reference",
        "",
        "<!-- Generated by docs/hooks.py from extractor.cli.main.build_parser on every build: edit the parser. -->",
        "",
        f"Every command of `{program}`, as its parser defines it; `{program} COMMAND --help` prints the same.",
    ]
    for command in walk_commands(parser):
        parts += ["", command_section(command, program, shared)]
    return "\n".join(parts).rstrip() + "\n"


# The MkDocs hook


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Adds the generated pages to the site, as if they were files under docs/."""
    from mkdocs.structure.files import File

    for page, content in ((SETTINGS_PAGE, settings_reference()), (COMMANDS_PAGE, command_reference())):
        files.append(File.generated(config, page, content=content))
    return files
