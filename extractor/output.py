"""What runs say: JSON lines for cron and the daemon, a progress bar for people."""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

LOGGER = "extractor"


def configure_json_logging(stream: Any = None) -> logging.Logger:
    """One JSON object per line on ``stream`` (stdout by default), for log collectors."""
    logger = logging.getLogger(LOGGER)
    logger.handlers.clear()
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter("{asctime}{levelname}{message}", style="{", rename_fields={"asctime": "time"}))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def is_interactive() -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty()
