"""YAML frontmatter reading and writing that never rewrites what a person wrote.

Dates such as ``2026-03-00`` are not valid calendar dates, so the stock loader
crashes on them; we keep every date-looking scalar as the string it was written
as. Duplicate keys silently lose data in the stock loader; we make them an error.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import frontmatter
import yaml


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice."""


def describe_yaml_error(exc: Exception) -> str:
    """One short line: the parser's problem and the file line it is on."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        # The parsed text starts right after the opening "---", on the file's first line.
        where = f" (line {mark.line + 1})" if mark is not None else ""
        context = f"{exc.context} " if exc.context and not isinstance(exc, DuplicateKeyError) else ""
        return f"{context}{exc.problem}{where}"
    return " ".join(str(exc).split())


def _without_timestamps(resolvers: dict[str, list]) -> dict[str, list]:
    return {
        first: [(tag, regexp) for tag, regexp in entries if tag != "tag:yaml.org,2002:timestamp"]
        for first, entries in resolvers.items()
    }


MAX_DEPTH = 50


class KeepingRules:
    """Safe loading that keeps dates as written and refuses duplicate keys.

    Frontmatter comes from files anyone may have written, so what the stock
    loader would turn into a crash or a blow-up is an error here: aliases (a
    few nested ones expand to billions of items when compared or printed),
    nesting deeper than :data:`MAX_DEPTH` (recursion), unhashable keys.
    """

    yaml_implicit_resolvers = _without_timestamps(yaml.SafeLoader.yaml_implicit_resolvers)
    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]  # a mixin: the loader supplies it
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None,
                None,
                "aliases (*name) are not allowed",
                event.start_mark,  # type: ignore[arg-type]
            )
        if self.depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[misc]
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[attr-defined]
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(None, None, "a key is a list or mapping", key_node.start_mark)
            if key in seen:
                raise DuplicateKeyError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


class KeepingLoader(KeepingRules, yaml.SafeLoader):
    """The keeping rules on PyYAML's pure-Python scanner and parser."""


if getattr(yaml, "__with_libyaml__", False):
    from yaml._yaml import CParser

    class FastKeepingLoader(
        KeepingRules, yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver, CParser
    ):
        """The keeping rules on libyaml's scanner and parser, several times faster; the composer stays
        Python's, so aliases and depth are still refused before anything expands."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    LOADER: type = FastKeepingLoader
else:  # a PyYAML built without libyaml
    LOADER = KeepingLoader


class KeepingDumper(yaml.SafeDumper):
    """Safe dumper whose idea of a plain scalar matches :class:`KeepingLoader`."""

    yaml_implicit_resolvers = _without_timestamps(yaml.SafeDumper.yaml_implicit_resolvers)


FLOW_LIST_MAX = 100


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    """Short lists of scalars inline (``tags: [a, b]``, as KB files write them), others as blocks."""
    scalars = all(isinstance(item, (str, int, float, bool)) or item is None for item in data)
    short = sum(len(str(item)) + 4 for item in data) <= FLOW_LIST_MAX
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=scalars and short)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    """Strings holding NEL or a Unicode line separator, double-quoted (escaped).

    The dumper's other styles write those characters raw, and a raw one reads back as a space.
    """
    style = '"' if any(ch in data for ch in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


KeepingDumper.add_representer(list, _represent_list)
KeepingDumper.add_representer(str, _represent_str)

if getattr(yaml, "__with_libyaml__", False):
    from yaml._yaml import CEmitter

    class FastKeepingDumper(
        CEmitter, yaml.serializer.Serializer, yaml.representer.SafeRepresenter, yaml.resolver.Resolver
    ):
        """:class:`KeepingDumper` on libyaml's emitter: five times faster, and the same bytes (checked on every
        frontmatter of the test corpus)."""

        yaml_implicit_resolvers = KeepingDumper.yaml_implicit_resolvers

        def __init__(self, stream: Any, default_style: str | None = None, default_flow_style: bool | None = False,
                     sort_keys: bool = True, **emitter_options: Any) -> None:  # fmt: skip
            CEmitter.__init__(self, stream, **emitter_options)
            yaml.representer.SafeRepresenter.__init__(
                self,
                default_style=default_style,
                default_flow_style=default_flow_style,  # type: ignore[arg-type]
                sort_keys=sort_keys,
            )
            yaml.resolver.Resolver.__init__(self)

    FastKeepingDumper.add_representer(list, _represent_list)  # type: ignore[arg-type]
    FastKeepingDumper.add_representer(str, _represent_str)  # type: ignore[arg-type]
    DUMPER: type = FastKeepingDumper
else:
    DUMPER = KeepingDumper


class KeepingYAMLHandler(frontmatter.YAMLHandler):
    """Frontmatter handler wired to the keeping loader and dumper."""

    def load(self, fm: str, **kwargs: object) -> Any:
        return yaml.load(fm, Loader=LOADER)

    def export(self, metadata: dict[str, object], **kwargs: object) -> str:
        return yaml.dump(
            metadata,
            Dumper=DUMPER,
            default_flow_style=False,
            allow_unicode=True,
            sort_keys=False,
            width=10_000,
        ).strip()


HANDLER = KeepingYAMLHandler()


def split_document(text: str) -> tuple[dict[str, Any], str]:
    """Parse a markdown document into its frontmatter mapping and body."""
    text = text.strip()
    if not HANDLER.detect(text):
        raise ValueError("no frontmatter")
    try:
        fm, content = HANDLER.split(text)
    except ValueError as exc:
        raise ValueError("frontmatter is not closed by a '---' line") from exc
    metadata = HANDLER.load(fm)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise yaml.YAMLError("frontmatter is not a mapping")
    odd = [key for key in metadata if not isinstance(key, str)]
    if odd:
        raise yaml.YAMLError(f"key {odd[0]!r} is not text")
    return metadata, content.strip()


def join_document(metadata: dict[str, Any], body: str) -> str:
    """Render frontmatter and body back into one markdown document."""
    post = frontmatter.Post(body, handler=HANDLER, **metadata)
    return frontmatter.dumps(post, handler=HANDLER).rstrip("\n") + "\n"


def has_frontmatter(text: str) -> bool:
    return HANDLER.detect(text.strip())


def _dump_entries(values: dict[str, Any]) -> list[str]:
    return HANDLER.export(values).splitlines() if values else []


def replace_frontmatter_keys(text: str, updates: dict[str, Any]) -> str:
    """Set top-level frontmatter keys, leaving every other line byte-for-byte.

    Keys that exist are rewritten where they stand; new keys are appended. The
    line span of each key comes from the YAML parser's own node marks. The
    result is re-parsed and compared with the intended mapping; if anything
    differs the whole frontmatter is re-dumped instead, so the update is exact
    either way.
    """
    metadata, body = split_document(text)
    expected = {**metadata, **updates}
    boundaries = list(HANDLER.FM_BOUNDARY.finditer(text))
    head_end, fm_close = boundaries[0].end(), boundaries[1]
    fm_text = text[head_end : fm_close.start()].strip("\n")
    lines = fm_text.splitlines()

    root = yaml.compose(fm_text, Loader=LOADER) if fm_text.strip() else None
    spans: dict[str, tuple[int, int]] = {}
    if isinstance(root, yaml.MappingNode):
        for key_node, value_node in root.value:
            end = value_node.end_mark
            stop = end.line if end.column == 0 else end.line + 1
            spans[str(key_node.value)] = (key_node.start_mark.line, stop)

    replacement: dict[int, list[str]] = {}
    dropped: set[int] = set()
    appended: dict[str, Any] = {}
    for key, value in updates.items():
        if key in spans:
            start, stop = spans[key]
            replacement[start] = _dump_entries({key: value})
            dropped.update(range(start, stop))
        else:
            appended[key] = value
    new_lines: list[str] = []
    for number, line in enumerate(lines):
        if number in replacement:
            new_lines.extend(replacement[number])
        if number not in dropped:
            new_lines.append(line)
    new_lines.extend(_dump_entries(appended))

    result = "---\n" + "\n".join(new_lines) + "\n" + text[fm_close.start() :]
    try:
        check, check_body = split_document(result)
    except yaml.YAMLError:
        check, check_body = None, None
    if check != expected or check_body != body:
        return join_document(expected, body_text(text))
    return result


def body_text(text: str) -> str:
    """The document after its frontmatter, exactly as written."""
    boundaries = list(HANDLER.FM_BOUNDARY.finditer(text))
    return text[boundaries[1].end() :].lstrip("\n")
