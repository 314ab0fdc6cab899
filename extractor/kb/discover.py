"""Where a KB keeps its claims, entity notes, sources and schemas, found from its files and its git repository.

``extractor init`` writes its settings from this record. Files are only read: their frontmatter says what
they are (``type: claim``, ``type: entity``, a source type) and which domain they belong to, and the
folders that hold them say the layout. The reading is in :func:`read_notes` and :func:`discover`; the rest
are pure functions of what was read, so a layout can be tested without a KB on disk.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Literal, NamedTuple

import yaml
from pydantic import BaseModel, Field
from slugify import slugify

from extractor.kb.notes import markdown_files
from extractor.kb.sources import FORMAT_LIKE_TYPES, SOURCE_TYPES, SourceStatus, normalise_status
from extractor.kb.yamlio import split_document

CLAIM_SCHEMA = "schemas/claim.md"
ENTITY_SCHEMA = "schemas/entity.md"
TOP = PurePosixPath(".")
_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# The domain line of the schema's frontmatter example: "domain: internet-finance | entertainment | health".
_SCHEMA_DOMAINS = re.compile(r"^\s*domain:\s*(\S.*\|.*)$", re.M)
_MAX_NOTE_BYTES = 2 * 1024 * 1024  # larger files are not notes a person wrote; they are skipped unread

NoteKind = Literal["claim", "entity", "source"]


class Note(NamedTuple):
    """One file's frontmatter, as far as the layout is concerned."""

    path: PurePosixPath
    kind: NoteKind
    domain: str | None  # the domain as a folder name would spell it; None when absent or unusable
    unprocessed: bool = False  # a source waiting to be extracted (status: unprocessed)


class ClaimLayout(BaseModel):
    """Where claims live: the folder new domains go under, the other claim folders, each domain's folder."""

    claims_dir: str | None = Field(description="the folder holding the per-domain folders of most domains")
    enrich_dirs: list[str] = Field(description="the other folders holding claims")
    homes: dict[str, str] = Field(description="domain -> the folder its claims are kept in")
    claims: dict[str, int] = Field(description="claims found under each of claims_dir and enrich_dirs")
    unplaced: dict[str, str] = Field(
        default_factory=dict,
        description="domain -> where its claims are, a folder the settings cannot name as the domain's (a claim "
        "folder itself, or inside another domain's folder): its new claims go to claims_dir/<domain>",
    )


class Discovery(BaseModel):
    """What a KB holds and where: the record ``extractor init`` writes its settings from."""

    kb_root: str
    layout: ClaimLayout
    domains: list[str] = Field(description="the domains the KB names, from its claim schema or else its claims")
    domains_from: Literal["schema", "claims", "none"]
    unlisted_domains: list[str] = Field(description="domains claims use that the claim schema does not list")
    entities_dir: str | None
    entities_apart: bool = Field(
        default=True, description="the entity folder is apart from the claim folders and the inbox, as it must be"
    )
    entity_notes: int
    entity_schema: bool = Field(description=f"{ENTITY_SCHEMA} is there (its entity types are used)")
    inbox_dir: str | None
    sources: int = Field(description="source files directly in inbox_dir")
    unprocessed: int = Field(description="of those, the ones not yet extracted")
    main_branch: str | None
    remote: str | None
    has_commits: bool

    def domain_dirs(self) -> dict[str, str]:
        """The domains whose folder is not ``claims_dir/<domain>``: what a settings file must name."""
        base = self.layout.claims_dir
        return {
            domain: folder
            for domain, folder in sorted(self.layout.homes.items())
            if domain in self.domains and (base is None or folder != f"{base}/{domain}")
        }


def domain_name(value: object) -> str | None:
    """A frontmatter domain as the folder name it would get, or None if it cannot name a folder."""
    if not isinstance(value, str):
        return None
    name = slugify(value)
    return name if _DOMAIN.match(name) else None


def note_of(rel: str, text: str) -> Note | None:
    """What the file at ``rel`` is, from its frontmatter; None for anything that is not a claim, an entity
    note or a source (and for files whose frontmatter does not parse: this is discovery, not validation)."""
    if not text.lstrip().startswith("---"):
        return None
    try:
        metadata, _ = split_document(text)
    except (ValueError, yaml.YAMLError):
        return None
    kind = str(metadata.get("type") or "").strip().lower()
    path = PurePosixPath(rel)
    if kind in ("claim", "entity"):
        return Note(path, "claim" if kind == "claim" else "entity", domain_name(metadata.get("domain")))
    if kind in SOURCE_TYPES or kind in FORMAT_LIKE_TYPES:
        unprocessed = normalise_status(metadata) is SourceStatus.UNPROCESSED  # what a run takes
        return Note(path, "source", domain_name(metadata.get("domain")), unprocessed)
    return None


def read_notes(kb_root: Path) -> list[Note]:
    """Every claim, entity note and source in the KB (tool folders such as ``.git`` skipped)."""
    notes = []
    for rel, entry in markdown_files(kb_root):
        try:
            if entry.stat(follow_symlinks=False).st_size > _MAX_NOTE_BYTES:
                continue
            text = Path(entry.path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        note = note_of(rel, text)
        if note is not None:
            notes.append(note)
    return notes


def _is_under(path: PurePosixPath, folder: PurePosixPath) -> bool:
    return path == folder or path.is_relative_to(folder)


def claim_layout(claims: Iterable[Note], inbox: str | None = None) -> ClaimLayout:
    """The claim folders a KB uses, from where its claims are.

    A domain's folder is the one named for it that holds its claims (the fullest, if several), else a folder
    where most claims are of that domain. Folders named for their domain are gathered under their parent
    (``domains/`` for ``domains/health``); claims_dir is the parent holding most domains' folders (then most
    claims), and every other folder of claims is an enrich_dir, so enrichments may edit what it holds. What
    the settings could not say is left out: claims in the inbox, a domain's folder that is not inside a
    claim folder (it is one itself), a domain's folder inside another's.
    """
    avoid = PurePosixPath(inbox) if inbox else None
    by_folder: dict[PurePosixPath, Counter[str | None]] = defaultdict(Counter)
    for note in claims:
        if avoid is None or not _is_under(note.path.parent, avoid):
            by_folder[note.path.parent][note.domain] += 1
    if not by_folder:
        return ClaimLayout(claims_dir=None, enrich_dirs=[], homes={}, claims={})

    def fullest(folders: list[PurePosixPath], domain: str) -> PurePosixPath:
        return max(folders, key=lambda f: (by_folder[f][domain], -len(f.parts), str(f)))

    domains = sorted({d for counts in by_folder.values() for d in counts if d is not None})
    homes: dict[str, PurePosixPath] = {}
    for domain in domains:
        named = [f for f in by_folder if f.name == domain and by_folder[f][domain] > 0]
        if named:
            homes[domain] = fullest(named, domain)
    taken = set(homes.values())
    for domain in domains:
        if domain in homes:
            continue
        mostly = [
            f for f in by_folder
            if f not in taken and f != TOP and by_folder[f][domain] * 2 > sum(by_folder[f].values())
        ]  # fmt: skip
        if mostly:
            homes[domain] = fullest(mostly, domain)
            taken.add(homes[domain])

    # The folders to allow: a named domain folder's parent, else the folder itself (never the KB's top).
    roots: set[PurePosixPath] = set()
    named_under: Counter[PurePosixPath] = Counter()
    for domain, folder in homes.items():
        if folder.name == domain and folder.parent != TOP:
            roots.add(folder.parent)
            named_under[folder.parent] += 1
        else:
            roots.add(folder)
    homed = set(roots)
    for folder in by_folder:
        if folder != TOP and not any(_is_under(folder, root) for root in roots):
            # Other claims: their highest folder that holds no domain's folder (nor the inbox), so one entry
            # covers a tree.
            root = next((
                a for a in [*reversed(folder.parents[:-1]), folder]
                if not any(_is_under(h, a) for h in homed) and not (avoid and _is_under(avoid, a))
            ), None)  # fmt: skip
            if root is not None:
                roots.add(root)
    roots = {r for r in roots if not any(r != other and _is_under(r, other) for other in roots)}
    claims_under = {
        root: sum(sum(counts.values()) for f, counts in by_folder.items() if _is_under(f, root)) for root in roots
    }
    if not roots:  # claims only at the KB's top
        return ClaimLayout(claims_dir=None, enrich_dirs=[], homes={}, claims={})
    claims_dir = max(roots, key=lambda r: (named_under[r], claims_under[r], -len(r.parts), str(r)))
    placeable = {
        domain: folder
        for domain, folder in homes.items()
        if folder not in roots and not any(o != folder and _is_under(folder, o) for o in homes.values())
    }
    return ClaimLayout(
        unplaced={domain: str(folder) for domain, folder in sorted(homes.items()) if domain not in placeable},
        claims_dir=str(claims_dir),
        enrich_dirs=sorted(str(r) for r in roots if r != claims_dir),
        homes={domain: str(folder) for domain, folder in sorted(placeable.items())},
        claims={str(r): claims_under[r] for r in sorted(roots, key=lambda r: (r != claims_dir, str(r)))},
    )


def entities_folder(entities: Iterable[Note]) -> str | None:
    """The folder of entity notes: the parent of the per-domain folders holding most notes."""
    counts: Counter[PurePosixPath] = Counter()
    for note in entities:
        folder = note.path.parent
        counts[folder.parent if folder.parent != TOP else folder] += 1
    counts.pop(TOP, None)
    return str(max(counts, key=lambda f: (counts[f], -len(f.parts), str(f)))) if counts else None


def inbox_folder(sources: Iterable[Note]) -> str | None:
    """The folder holding most source files directly (the inbox is not read recursively)."""
    counts = Counter(note.path.parent for note in sources)
    counts.pop(TOP, None)
    return str(max(counts, key=lambda f: (counts[f], -len(f.parts), str(f)))) if counts else None


def schema_domains(text: str) -> list[str]:
    """The domains a claim schema lists in its frontmatter example (``domain: a | b | c``), in its order."""
    found = _SCHEMA_DOMAINS.search(text)
    if found is None:
        return []
    names = (domain_name(part.strip().strip("\"'`")) for part in found.group(1).split("#")[0].split("|"))
    return list(dict.fromkeys(name for name in names if name))


class GitFacts(NamedTuple):
    main_branch: str | None
    remote: str | None
    has_commits: bool


def git_facts(kb_root: Path) -> GitFacts:
    """The branch drafts start from and the remote to push to, as the repository has them.

    The main branch is the remote's default branch if it is here, else ``main`` or ``master``, else the
    branch checked out (even one with no commit yet). The remote is ``origin``, or the only one.
    """
    import pygit2

    from extractor.kb.gitrepo import open_repository

    repository = open_repository(kb_root)
    remotes = [remote.name for remote in repository.remotes if remote.name]
    remote = "origin" if "origin" in remotes else (remotes[0] if len(remotes) == 1 else None)
    local = set(repository.branches.local)
    candidates = []
    if remote is not None:
        default = repository.references.get(f"refs/remotes/{remote}/HEAD")
        if default is not None and default.type == pygit2.enums.ReferenceType.SYMBOLIC:
            candidates.append(str(default.target).removeprefix(f"refs/remotes/{remote}/"))
    candidates += ["main", "master"]
    if not repository.head_is_detached:
        candidates.append(str(repository.lookup_reference("HEAD").target).removeprefix("refs/heads/"))
    has_commits = not repository.head_is_unborn
    if not has_commits:  # nothing is a branch yet: the one HEAD names will be
        return GitFacts(candidates[-1] if not repository.head_is_detached else None, remote, False)
    branch = next((name for name in candidates if name in local), None)
    if branch is None and len(local) == 1:
        branch = next(iter(local))
    return GitFacts(branch, remote, True)


def discover(kb_root: Path) -> Discovery:
    """Everything ``extractor init`` needs to know about the KB at ``kb_root`` (a git work tree's top)."""
    notes = read_notes(kb_root)
    inbox = inbox_folder(n for n in notes if n.kind == "source")
    claims = [n for n in notes if n.kind == "claim"]
    layout = claim_layout(claims, inbox)
    schema = kb_root / CLAIM_SCHEMA
    try:
        listed = schema_domains(schema.read_text(encoding="utf-8")) if schema.is_file() else []
    except (OSError, UnicodeDecodeError):
        listed = []
    used = sorted({n.domain for n in claims if n.domain}, key=lambda d: (-sum(n.domain == d for n in claims), d))
    domains = listed or used
    # A listed domain with no claim yet lives in a folder of its name, if one is already there.
    homes = dict(layout.homes)
    for domain in domains:
        if domain not in homes:
            for root in [layout.claims_dir, *layout.enrich_dirs]:
                if root is not None and (kb_root / root / domain).is_dir():
                    homes[domain] = f"{root}/{domain}"
                    break
    layout = layout.model_copy(update={"homes": dict(sorted(homes.items()))})
    in_inbox = [n for n in notes if n.kind == "source" and inbox is not None and str(n.path.parent) == inbox]
    entities = [n for n in notes if n.kind == "entity"]
    entities_dir = entities_folder(entities)
    # Entity notes kept among claims or sources cannot be told apart from them by folder: the default instead.
    taken = [PurePosixPath(f) for f in [*layout.claims, *([inbox] if inbox else [])]]
    apart = entities_dir is None or not any(
        _is_under(PurePosixPath(entities_dir), f) or _is_under(f, PurePosixPath(entities_dir)) for f in taken
    )
    facts = git_facts(kb_root)
    return Discovery(
        kb_root=str(kb_root),
        layout=layout,
        domains=domains,
        domains_from="schema" if listed else ("claims" if used else "none"),
        unlisted_domains=[d for d in used if listed and d not in listed],
        entities_dir=entities_dir if apart else None,
        entities_apart=apart,
        entity_notes=len(entities),
        entity_schema=(kb_root / ENTITY_SCHEMA).is_file(),
        inbox_dir=inbox,
        sources=len(in_inbox),
        unprocessed=sum(n.unprocessed for n in in_inbox),
        main_branch=facts.main_branch,
        remote=facts.remote,
        has_commits=facts.has_commits,
    )
