from __future__ import annotations

from pathlib import Path

import pytest

from extractor.kb.sources import SourceError, SourceStatus, load_source, parse_source
from extractor.kb.yamlio import replace_frontmatter_keys, split_document

P = Path("inbox/archive/x.md")


def test_every_corpus_source_loads_or_gives_a_one_line_error(corpus: Path) -> None:
    files = sorted((corpus / "inbox" / "archive").glob("*.md"))
    assert len(files) > 300
    loaded, errors = 0, []
    for path in files:
        try:
            source = load_source(path)
        except SourceError as exc:
            message = str(exc)
            assert "\n" not in message
            assert message.startswith(str(path) + ": ")
            errors.append(message)
        else:
            loaded += 1
            assert source.title
            assert isinstance(source.status, SourceStatus)
    print(f"\n{loaded} sources loaded, {len(errors)} refused:")
    for message in errors:
        print("  " + message.split("/")[-1])
    # The known broken files: duplicate keys, and one claim filed in the inbox.
    assert any("duplicate key 'processed_by'" in e for e in errors)
    assert any("duplicate key 'claims_extracted'" in e for e in errors)
    assert loaded >= 360


def test_partial_dates_are_kept_exactly_as_written() -> None:
    text = "---\ntype: source\ntitle: T\ndate: 2026-03-00\nprocessed_date: 2025-00-00\n---\nbody\n"
    source = parse_source(P, text)
    assert source.date == "2026-03-00"
    assert source.metadata["processed_date"] == "2025-00-00"
    updated = replace_frontmatter_keys(text, {"status": "processed"})
    assert "date: 2026-03-00\n" in updated
    assert "processed_date: 2025-00-00\n" in updated


def test_legacy_keys_are_understood() -> None:
    text = (
        "---\ntype: evidence\ntitle: Old\nsource: https://example.org/a\n"
        "date_published: 2024-01\nsource_type: essay\nstatus: unprocessed\n---\nb\n"
    )
    source = parse_source(P, text)
    assert source.url == "https://example.org/a"
    assert source.date == "2024-01"
    assert source.format == "essay"
    assert source.status is SourceStatus.UNPROCESSED


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ('"unprocessed"', SourceStatus.UNPROCESSED),
        ("'processed'", SourceStatus.PROCESSED),
        ("null-result", SourceStatus.NULL_RESULT),
        ("partial (preview only)", SourceStatus.PROCESSING),
        ("complete (13 pages)", SourceStatus.UNKNOWN),
    ],
)
def test_status_values_including_quoted_ones(raw: str, status: SourceStatus) -> None:
    source = parse_source(P, f"---\ntype: source\ntitle: T\nstatus: {raw}\n---\nb\n")
    assert source.status is status


def test_duplicate_keys_are_a_problem_of_the_file() -> None:
    with pytest.raises(SourceError, match=r"x.md: invalid frontmatter: duplicate key 'status' \(line 4\)"):
        parse_source(P, "---\ntitle: T\nstatus: unprocessed\nstatus: processed\n---\nb\n")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("no frontmatter here\n", "no YAML frontmatter"),
        ("---\n- a\n- b\n---\nbody\n", "frontmatter is not a mapping"),
        ("---\ntitle: [unclosed\n---\nbody\n", "invalid frontmatter"),
        ("---\ntype: claim\ntitle: T\n---\nbody\n", r"not a source \(type: claim\)"),
    ],
)
def test_bad_sources_give_clear_errors(text: str, problem: str) -> None:
    with pytest.raises(SourceError, match=problem):
        parse_source(P, text)


def test_binary_and_non_utf8_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.md"
    bad.write_bytes(b"---\ntitle: \xff\xfe\n---\n")
    with pytest.raises(SourceError, match="not UTF-8"):
        load_source(bad)


def test_frontmatter_update_touches_only_the_managed_keys(corpus: Path) -> None:
    path = corpus / "inbox/archive/2025-11-00-sahoo-rlhf-alignment-trilemma.md"
    text = path.read_text(encoding="utf-8")
    updates = {
        "status": "processed",
        "processed_by": "theseus",
        "processed_date": "2026-11-28",
        "claims_extracted": ["A title: with a colon", 'And "quotes"'],
    }
    updated = replace_frontmatter_keys(text, updates)
    before, body_before = split_document(text)
    after, body_after = split_document(updated)
    assert after == {**before, **updates}
    assert body_after == body_before
    assert updated.endswith(text.split("\n---\n", 1)[1])  # body byte-for-byte
    old_lines = text.split("\n---\n", 1)[0].splitlines()
    new_lines = updated.split("\n---\n", 1)[0].splitlines()
    unchanged = [line for line in old_lines if not line.startswith("status:")]
    assert all(line in new_lines for line in unchanged)


def test_frontmatter_update_replaces_instead_of_stacking() -> None:
    text = "---\ntitle: T\nstatus: processed\nclaims_extracted:\n  - old one\n  - old two\nx: 1\n---\nbody\n"
    once = replace_frontmatter_keys(text, {"claims_extracted": ["new"], "status": "processed"})
    twice = replace_frontmatter_keys(once, {"claims_extracted": ["newer"]})
    meta, body = split_document(twice)
    assert meta == {"title": "T", "status": "processed", "claims_extracted": ["newer"], "x": 1}
    assert twice.count("claims_extracted") == 1
    assert body == "body"
