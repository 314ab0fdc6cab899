"""``extractor worker``: compute drafts for a run on another host, through the queue in the state database."""

from __future__ import annotations

import argparse
import os
import socket
import zlib

from extractor.cli.common import EXIT_OK, start_kb
from extractor.core.errors import ConfigurationError


def run_worker(args: argparse.Namespace) -> int:
    from extractor.cli.output import configure_json_logging
    from extractor.llm.endpoint import llm_endpoint
    from extractor.run.remote import work

    if args.state:
        os.environ["EXTRACTOR_STATE_URL"] = args.state  # read with the rest of the settings, checked alike
    kb_root, settings = start_kb(args)
    if settings.state_url is None:
        raise ConfigurationError("extractor worker needs the state database: --state postgresql://... or state_url")
    configure_json_logging(verbose=args.verbose)
    with llm_endpoint(settings) as live:
        work(kb_root, live, number=args.number or default_number(), concurrency=args.concurrency, once=args.once)
    return EXIT_OK


def default_number() -> int:
    """A worker's number when none is given: from its host and process id, so that workers in containers
    (each its own process 1) are told apart in provenance."""
    return 10_000 + zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 90_000
