"""``extractor eval``: drafts measured against recorded runs people reviewed."""

from __future__ import annotations

import argparse

from extractor.cli.common import usage_error


def run_eval(args: argparse.Namespace) -> int:
    from extractor.cli import evaluation
    from extractor.core.errors import ConfigurationError, ExtractorError

    if args.limit is not None and args.limit < 1:
        return usage_error("--limit must be 1 or more")
    try:
        text, code = evaluation.run_eval(args)
    except ExtractorError as exc:
        raise ConfigurationError(str(exc)) from None
    print(text, end="")
    return code
