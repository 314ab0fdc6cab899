"""The ``extractor`` command: parse, run the command's module, and turn every expected failure into one line.

Exit codes: 0 done; 1 an operation failed; 2 a usage or configuration error (argparse's own, bad settings,
no KB, a missing main branch, another run holding the lock); 130 interrupted; 141 stdout's reader went away.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import traceback
from typing import TYPE_CHECKING

from extractor.cli.common import EXIT_BROKEN_PIPE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, fail
from extractor.cli.parser import HANDLERS, build_parser

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

__all__ = ["build_parser", "main"]


def handler_for(command: str) -> Callable[[argparse.Namespace], int]:
    """The command's function, its module imported only now: each command loads what it uses, no more."""
    module, function = HANDLERS[command].split(":")
    return getattr(importlib.import_module(f"extractor.cli.{module}"), function)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # Unwind like Ctrl-C, so the embedded server and half-done writes are cleaned up.
    raise SystemExit(128 + signum)


def _stdout_gone() -> int:
    """``extractor ... | head``: the reader left. Nothing more is written, and Python's exit flush must not
    raise again, so stdout now goes nowhere."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (extractor completion SHELL)
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # runs replace it with a graceful stop
    from extractor.core.errors import ConfigurationError, ExtractorError

    try:
        code = handler_for(args.command)(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _stdout_gone()
    except ConfigurationError as exc:  # it could not start as asked: exit 2
        return fail(str(exc), EXIT_USAGE)
    except ExtractorError as exc:  # any expected error a command did not handle itself: one line
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except OSError as exc:  # the machine refused (disk full, permissions): the file and why, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}")
    except Exception:  # noqa: BLE001 - a bug: its traceback, as Python would print it, but redacted
        from extractor.core.redact import scrub

        print(scrub(traceback.format_exc()), end="", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
