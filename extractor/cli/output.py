"""What runs say: JSON lines for cron and the daemon, a progress bar for people."""

from __future__ import annotations

import logging
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


def configure_json_logging(stream: Any = None) -> logging.Logger:
    """One JSON object per line on ``stream`` (stdout by default), for log collectors."""
    logger = logging.getLogger(LOGGER)
    logger.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter("{asctime}{levelname}{message}", style="{", rename_fields={"asctime": "time"}))
    handler.addFilter(RedactFilter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def is_interactive() -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty()
