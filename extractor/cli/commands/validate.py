"""``extractor validate``: stored claims, sources and entity notes against the gates; ``--fix-links``."""

from __future__ import annotations

import argparse

from extractor.cli.common import EXIT_FAILED, EXIT_OK, print_json, start_kb, usage_error


def run_validate(args: argparse.Namespace) -> int:
    from extractor.review.lint import lint

    kb_root, settings = start_kb(args)
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        return usage_error(f"{missing[0]}: no such file or folder")
    outside = [p for p in args.paths if not p.resolve().is_relative_to(kb_root.resolve())]
    if outside:
        return usage_error(f"{outside[0]}: not inside the KB at {kb_root} (name the KB with --kb)")
    result = lint(kb_root, settings, [p.resolve() for p in args.paths] or None, fix_links=args.fix_links)
    code = EXIT_FAILED if result.problems else EXIT_OK
    if args.json:
        print_json({
            "files": result.files,
            "claims": result.claims,
            "sources": result.sources,
            "entities": result.entities,
            "problems": [problem.model_dump(mode="json") for problem in result.problems],
            "totals": dict(result.totals()),
            "links_unlinked": result.links_unlinked,
            "unlinked": result.unlinked,
        })  # fmt: skip
        return code
    for problem in result.problems:
        print(problem)
    for path, targets in sorted(result.unlinked.items()):
        print(f"{path}: unlinked {len(targets)} wiki link(s): {', '.join(f'[[{t}]]' for t in targets)}")
    totals = ", ".join(f"{n} {check}" for check, n in sorted(result.totals().items())) or "none"
    fixed = f"unlinked {sum(result.links_unlinked.values())} link(s); " if args.fix_links else ""
    print(
        f"checked {result.files} file(s): {result.claims} claim(s), {result.sources} source(s), "
        f"{result.entities} entity note(s); {fixed}"
        f"{len(result.problems)} problem(s){' left' if args.fix_links else ''}: {totals}"
    )
    return code
