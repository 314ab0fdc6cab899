"""What runs say: JSON lines for cron and the daemon, a progress bar for people."""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from extractor.core.redact import scrub, scrub_data

LOGGER = "extractor"
# LogRecord attributes that are not the message, its arguments or extra fields: left as they are.
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RedactFilter(logging.Filter):
    """Secrets out of every record a handler writes: message, arguments, extra fields, traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = scrub(record.msg)
        if record.args:
            record.args = scrub_data(record.args)
        for key, value in list(vars(record).items()):
            if key not in _RECORD_FIELDS:
                setattr(record, key, scrub_data(value))
        if record.exc_info:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def iso_time(record: logging.LogRecord) -> str:
    """The record's time in ISO 8601 with the local offset, to the millisecond: 2026-12-03T14:05:09.123+01:00."""
    moment = datetime.datetime.fromtimestamp(record.created).astimezone()
    return moment.isoformat(timespec="milliseconds")


class IsoJsonFormatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        return iso_time(record)


class IsoTextFormatter(logging.Formatter):
    """``time LEVEL message key=value ...``: the extra fields a record carries, after its message."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        return iso_time(record)

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{key}={value}" for key, value in vars(record).items() if key not in _RECORD_FIELDS)
        return super().format(record) + (f" {extras}" if extras else "")


class PipeHandler(logging.StreamHandler):
    """A stream handler whose reader may leave (``run --once | head``): the run goes on, its log lines go
    nowhere, and no "Logging error" traceback is printed for each of them."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if isinstance(sys.exc_info()[1], BrokenPipeError):
            broken, self.stream = self.stream, open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
            if broken is sys.stdout:  # Python's own flush of stdout at exit must not fail either
                with contextlib.suppress(OSError, ValueError):
                    os.dup2(self.stream.fileno(), sys.stdout.fileno())
            return
        super().handleError(record)


def configure_json_logging(stream: Any = None, verbose: bool = False) -> logging.Logger:
    """One JSON object per line on ``stream`` (stdout by default), for log collectors."""
    formatter = IsoJsonFormatter("{asctime}{levelname}{message}", style="{", rename_fields={"asctime": "time"})
    return _configure(PipeHandler(stream or sys.stdout), formatter, verbose)


def configure_text_logging(verbose: bool) -> logging.Logger:
    """``-v`` for people: what happens, one timestamped line each on stderr."""
    return _configure(PipeHandler(sys.stderr), IsoTextFormatter("{asctime} {levelname} {message}", style="{"), verbose)


def _configure(handler: logging.Handler, formatter: logging.Formatter, verbose: bool) -> logging.Logger:
    logger = logging.getLogger(LOGGER)
    logger.handlers.clear()
    handler.setFormatter(formatter)
    handler.addFilter(RedactFilter())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    return logger


def is_interactive() -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty()
