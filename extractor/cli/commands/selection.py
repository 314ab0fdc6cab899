"""Sources named on the command line, as the KB-relative paths and globs the scheduler matches."""

from __future__ import annotations

import posixpath
from pathlib import Path

from extractor.core.errors import ConfigurationError


def source_patterns(kb_root: Path, named: list[str]) -> list[str]:
    """Each SOURCE as a path or glob relative to the KB: a file that exists (``./x.md``, an absolute path,
    a path from a subfolder) becomes its KB path; anything else is a glob from where the user stands."""
    root = kb_root.resolve()
    here = Path.cwd().resolve()
    base = here.relative_to(root) if here.is_relative_to(root) else Path()
    patterns = []
    for text in named:
        path = Path(text)
        if path.exists():
            resolved = path.resolve()
            if not resolved.is_relative_to(root):
                raise ConfigurationError(f"{text}: not inside the KB at {kb_root}")
            patterns.append(resolved.relative_to(root).as_posix())
        elif path.is_absolute():
            if not path.is_relative_to(root):
                raise ConfigurationError(f"{text}: not inside the KB at {kb_root}")
            patterns.append(path.relative_to(root).as_posix())
        else:  # a glob from where the user stands; ``..`` steps out of the folder, never out of the KB
            pattern = posixpath.normpath((base / path).as_posix())
            if pattern == ".." or pattern.startswith("../"):
                raise ConfigurationError(f"{text}: not inside the KB at {kb_root}")
            patterns.append(pattern)
    return patterns
