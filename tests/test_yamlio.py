"""libyaml's parser and emitter, where PyYAML has them, read and write exactly what the pure-Python ones do."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from extractor.kb import yamlio


def dump(metadata: dict, dumper: type) -> str:
    return yaml.dump(metadata, Dumper=dumper, default_flow_style=False, allow_unicode=True, sort_keys=False,
                     width=10_000)  # fmt: skip


ODD = {
    "nel": "x\x85y", "separator": "line\u2028sep", "tab": "tab\there", "colon": ": colon", "date": "2026-03-00",
    "tags": ["a", "b"], "unicode": "é ü 中文", "quoted": "'quoted'", "none": None, "null_text": "null",
    "long": "very " * 3000, "nested": {"list": [{"a": 1}, "b"]}, "number_text": "007", "bool_text": "yes",
}  # fmt: skip


def test_the_fast_loader_and_dumper_are_the_ones_used() -> None:
    if not yaml.__with_libyaml__:
        pytest.skip("this PyYAML has no libyaml")
    assert yamlio.LOADER is not yamlio.KeepingLoader and yamlio.DUMPER is not yamlio.KeepingDumper


def test_odd_values_round_trip_the_same_way() -> None:
    text = dump(ODD, yamlio.DUMPER)
    assert text == dump(ODD, yamlio.KeepingDumper)
    assert yaml.load(text, Loader=yamlio.LOADER) == yaml.load(text, Loader=yamlio.KeepingLoader) == ODD


@pytest.mark.parametrize(
    "bad",
    ["a: &x [1]\nb: *x\n", "a: 1\na: 2\n", "[" * 60 + "]" * 60 + "\n", "[1]: 2\n", "a: b: c\n"],
    ids=["alias", "duplicate", "deep", "list-key", "syntax"],
)
def test_both_refuse_the_same_frontmatter(bad: str) -> None:
    errors = []
    for loader in (yamlio.LOADER, yamlio.KeepingLoader):
        with pytest.raises(yaml.YAMLError) as raised:
            yaml.load(bad, Loader=loader)
        errors.append((type(raised.value), raised.value.problem_mark.line))  # type: ignore[attr-defined]
    assert errors[0] == errors[1]


def test_every_corpus_frontmatter_reads_and_writes_the_same(corpus: Path) -> None:
    compared = 0
    for path in sorted(corpus.rglob("*.md")):
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if not yamlio.has_frontmatter(text):
            continue
        try:
            fm = yamlio.HANDLER.split(text)[0]
        except ValueError:
            continue  # frontmatter never closed: refused before YAML is read
        try:
            slow = yaml.load(fm, Loader=yamlio.KeepingLoader)
        except yaml.YAMLError as exc:
            with pytest.raises(yaml.YAMLError) as fast_error:
                yaml.load(fm, Loader=yamlio.LOADER)
            assert type(fast_error.value) is type(exc), path
            continue
        assert yaml.load(fm, Loader=yamlio.LOADER) == slow, path
        if isinstance(slow, dict):
            assert dump(slow, yamlio.DUMPER) == dump(slow, yamlio.KeepingDumper), path
            compared += 1
    assert compared > 2000
