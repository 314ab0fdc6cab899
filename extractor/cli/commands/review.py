"""``extractor review``: list, show, serve, accept and reject extraction branches."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from extractor.cli.common import EXIT_OK, fail, print_json, start_kb, usage_error

if TYPE_CHECKING:
    from pathlib import Path

    from extractor.core.settings import Settings


def run_review(args: argparse.Namespace) -> int:
    from extractor.kb.gitrepo import require_main_branch

    kb_root, settings = start_kb(args)
    require_main_branch(kb_root, settings.main_branch)
    action = {"list": review_list, "show": review_show, "serve": review_serve, "accept": review_accept,
              "reject": review_reject}[args.action]  # fmt: skip
    return action(args, kb_root, settings)


def review_list(args: argparse.Namespace, kb_root: Path, settings: Settings) -> int:
    from extractor.cli.commands.lines import age
    from extractor.review import branches as review

    items = review.pending(kb_root, settings)
    if args.with_claims or args.null:
        items = [item for item in items if item.null_result == args.null]
    verdicts = review.verdicts_of(kb_root, items, settings)
    if args.approved or args.changes:
        wanted = {"approved"} if args.approved else {"changes", "rejected"}
        items = [item for item in items if verdicts[item.branch] in wanted]
    if args.json:
        print_json([{**item.model_dump(mode="json"), "verdict": verdicts[item.branch]} for item in items])
        return EXIT_OK
    reviewing = settings.review_model is not None or any(v != "unreviewed" for v in verdicts.values())
    for item in items:
        verdict = f"{verdicts[item.branch]:<10}  " if reviewing else ""  # no column without a reviewer
        print(
            f"{item.slug}  {verdict}{item.source}  {item.agent} (worker {item.worker}) "
            f"{item.model}  "
            f"{len(item.claims)} claim(s), {len(item.enrichments)} enrichment(s), "
            f"{len(item.entities_created) + len(item.entities_updated)} entity note(s), "
            f"{len(item.warnings)} warning(s), {age(item.age_seconds)} old"
        )
    print(f"{len(items)} extraction(s) awaiting review")
    return EXIT_OK


def review_show(args: argparse.Namespace, kb_root: Path, settings: Settings) -> int:
    from extractor.review import branches as review

    if args.html and args.json:
        return usage_error("choose --html or --json")
    if args.html:
        from extractor.review import page as reviewpage  # Jinja2 is loaded only for the page

        text = reviewpage.render_page(reviewpage.gather(kb_root, args.slug, settings))
    elif args.json:
        text = review.show_data(kb_root, args.slug, settings).model_dump_json() + "\n"
    else:
        text = review.show(kb_root, args.slug, settings)
    if args.output is None:
        print(text, end="")
        return EXIT_OK
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        return fail(f"{args.output}: cannot write: {exc.strerror or exc}")
    return EXIT_OK


def review_serve(args: argparse.Namespace, kb_root: Path, settings: Settings) -> int:
    from extractor.review import branches as review
    from extractor.review import serve as reviewserve

    if not 0 <= args.port <= 65535:
        return usage_error("--port must be 0 to 65535")
    if args.slug:
        review.describe_branch(kb_root, review.branch_for(args.slug), settings)  # an unknown slug fails now
    try:
        reviewserve.serve(kb_root, settings, args.port, args.slug)
    except OSError as exc:
        return usage_error(f"cannot serve on 127.0.0.1:{args.port}: {exc.strerror or exc}")
    return EXIT_OK


def review_accept(args: argparse.Namespace, kb_root: Path, settings: Settings) -> int:
    """Every named branch is checked before the first is merged; a merge that fails stops the rest, and what was
    merged before it is still reported."""
    from extractor.review import branches as review
    from extractor.review import decide

    if bool(args.slugs) == args.null:
        return usage_error("name the branches to accept, or --null for every pending null result")
    state_store_readable(kb_root, settings)
    slugs = args.slugs or [item.slug for item in review.pending(kb_root, settings) if item.null_result]
    for slug in slugs:
        review.pending_branch(kb_root, slug)
    accepted = []
    try:
        for slug in slugs:
            decision = decide.accept_branch(kb_root, slug, settings)
            accepted.append(decision)
            if not args.json:
                print(f"accepted {decision.branch} into {settings.main_branch} ({(decision.commit or '')[:12]})")
    finally:
        if args.json:
            print_json([decision.model_dump(mode="json") for decision in accepted])
    if not slugs and not args.json:
        print("no null result awaits review")
    return EXIT_OK


def state_store_readable(kb_root: Path, settings: Settings) -> None:
    """Opens and closes the state store: a damaged one stops a decision before git is touched, not after."""
    from extractor.store.state import open_store

    open_store(kb_root, settings).close()


def review_reject(args: argparse.Namespace, kb_root: Path, settings: Settings) -> int:
    from extractor.review import decide

    if args.reason is not None and not args.reason.strip():
        return usage_error("--reason needs a text: why the drafts are rejected")
    state_store_readable(kb_root, settings)
    decision = decide.reject_branch(kb_root, args.slug, settings, args.reason, args.retry)
    if args.json:
        print_json(decision.model_dump(mode="json"))
    elif args.retry:
        print(f"deleted {decision.branch}; the source is due again")
    else:
        print(f"deleted {decision.branch}; rejection recorded on {decision.source} ({(decision.commit or '')[:12]})")
    return EXIT_OK
