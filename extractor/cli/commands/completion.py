"""``extractor completion SHELL``: the script that completes commands, options and choices as you type."""

from __future__ import annotations

import argparse


def run_completion(args: argparse.Namespace) -> int:
    import argcomplete

    print(argcomplete.shellcode(["extractor"], shell=args.shell), end="")
    return 0
