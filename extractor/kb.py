"""The index of existing claims: what a new extraction links to or enriches."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from pydantic import BaseModel

from extractor.claims import ClaimParseError, parse_claim

SKIP_DIRS = {".git", ".extractor", "node_modules", ".venv"}


class ClaimRef(BaseModel):
    path: str  # relative to the KB root, POSIX separators
    title: str
    domain: str = ""
    description: str = ""

    @property
    def stem(self) -> str:
        return PurePosixPath(self.path).stem


def _link_key(name: str) -> str:
    name = name.strip()
    if name.lower().endswith(".md"):
        name = name[:-3]
    return PurePosixPath(name).name


class KBIndex:
    """Claims by path, title and stem; lookups accept wiki-link spellings."""

    def __init__(self, root: Path, claims: list[ClaimRef]) -> None:
        self.root = root
        self._build(claims)

    def _build(self, claims: list[ClaimRef]) -> None:
        self.claims = claims
        self._exact: dict[str, ClaimRef] = {}
        self._folded: dict[str, ClaimRef] = {}
        for claim in claims:
            for key in (claim.stem, claim.title):
                self._exact.setdefault(key, claim)
                self._folded.setdefault(key.casefold(), claim)

    @classmethod
    def load(cls, root: Path, exclude: list[str] | None = None) -> KBIndex:
        excluded = {PurePosixPath(e) for e in (exclude or [])}
        claims: list[ClaimRef] = []
        for path in sorted(root.rglob("*.md")):
            rel = PurePosixPath(path.relative_to(root).as_posix())
            if SKIP_DIRS.intersection(rel.parts) or any(rel.is_relative_to(e) for e in excluded):
                continue
            ref = read_claim_ref(path, rel)
            if ref is not None:
                claims.append(ref)
        return cls(root, claims)

    def refresh(self, paths: list[str]) -> None:
        """Re-read these files after a write (new, changed or deleted claims)."""
        touched = set(paths)
        claims = [c for c in self.claims if c.path not in touched]
        for rel in paths:
            file = self.root / rel
            if file.is_file() and rel.endswith(".md"):
                ref = read_claim_ref(file, PurePosixPath(rel))
                if ref is not None:
                    claims.append(ref)
        self._build(claims)

    def resolve(self, name: str) -> ClaimRef | None:
        key = _link_key(name)
        return self._exact.get(key) or self._folded.get(key.casefold())

    def under(self, folder: str) -> list[ClaimRef]:
        prefix = PurePosixPath(folder)
        return [c for c in self.claims if PurePosixPath(c.path).is_relative_to(prefix)]


def read_claim_ref(path: Path, rel: PurePosixPath) -> ClaimRef | None:
    """A claim file's reference, or None for non-claims and unreadable files."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if "type: claim" not in text[:4000]:
        return None
    try:
        doc = parse_claim(text, fallback_title=path.stem)
    except ClaimParseError:
        return None
    if doc.metadata.get("type") != "claim":
        return None
    return ClaimRef(
        path=str(rel),
        title=doc.title,
        domain=str(doc.metadata.get("domain") or ""),
        description=str(doc.metadata.get("description") or ""),
    )
