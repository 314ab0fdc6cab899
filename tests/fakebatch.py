"""A local server with the files and batches endpoints of the OpenAI API, as the SDK calls them.

A test completes a batch with :meth:`FakeBatchAPI.complete`, choosing each
request's result; the output file lists results in an order of its own, as
the real service may.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.loopback import LoopbackServer

Result = dict[str, Any] | None  # a chat completion body, or None for a failed request


class FakeBatchAPI(LoopbackServer):
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def reply(self, status: int, body: Any, raw: bool = False) -> None:
                data = body if raw else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/octet-stream" if raw else "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path == "/v1/files":
                    message = BytesParser(policy=HTTP).parsebytes(
                        f"content-type: {self.headers['content-type']}\r\n\r\n".encode() + raw
                    )
                    parts = {
                        part.get_param("name", header="content-disposition"): part for part in message.iter_parts()
                    }
                    with api.lock:
                        file_id = f"file-{len(api.files) + 1}"
                        api.files[file_id] = parts["file"].get_payload(decode=True)
                    purpose = parts["purpose"].get_content().strip()
                    size = len(api.files[file_id])
                    self.reply(200, {"id": file_id, "object": "file", "bytes": size, "created_at": int(time.time()),
                                     "filename": "batch.jsonl", "purpose": purpose})  # fmt: skip
                elif self.path == "/v1/batches":
                    request = json.loads(raw)
                    with api.lock:
                        batch_id = f"batch_{len(api.batches) + 1}"
                        api.batches[batch_id] = {
                            "id": batch_id, "object": "batch", "endpoint": request["endpoint"], "errors": None,
                            "input_file_id": request["input_file_id"], "completion_window": "24h",
                            "status": "validating", "output_file_id": None, "error_file_id": None,
                            "created_at": int(time.time()), "metadata": request.get("metadata"),
                        }  # fmt: skip
                    self.reply(200, api.batches[batch_id])
                else:
                    self.reply(404, {"error": {"message": f"no route {self.path}"}})

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                parts = self.path.strip("/").split("/")
                if parts[:2] == ["v1", "batches"] and parts[2] in api.batches:
                    self.reply(200, api.batches[parts[2]])
                elif parts[:2] == ["v1", "files"] and len(parts) == 4 and parts[3] == "content":
                    self.reply(200, api.files[parts[2]], raw=True)
                else:
                    self.reply(404, {"error": {"message": f"no route {self.path}"}})

        self.serve(Handler)

    def requests(self, batch_id: str) -> list[dict[str, Any]]:
        """The JSONL lines of a batch's input file."""
        data = self.files[self.batches[batch_id]["input_file_id"]].decode()
        return [json.loads(line) for line in data.splitlines() if line.strip()]

    def expire(self, batch_id: str) -> None:
        """The completion window passed with no request done: no output file at all."""
        with self.lock:
            self.batches[batch_id]["status"] = "expired"

    def complete(
        self, batch_id: str, result: Callable[[dict[str, Any]], Result], seed: int = 0, garbage: bool = False
    ) -> None:
        """Finish a batch: ``result`` answers each request's body; the output is shuffled (with a broken line
        and a line of another shape among them when ``garbage``)."""
        output, errors = [], []
        for number, line in enumerate(self.requests(batch_id)):
            body = result(line["body"])
            entry = {"id": f"batch_req_{number}", "custom_id": line["custom_id"]}
            if body is None:
                errors.append({**entry, "response": None, "error": {"code": "server_error", "message": "failed"}})
            else:
                output.append({**entry, "response": {"status_code": 200, "request_id": f"r{number}", "body": body},
                               "error": None})  # fmt: skip
        random.Random(seed).shuffle(output)
        text = {kind: [json.dumps(line) for line in lines] for kind, lines in (("output_file_id", output),
                                                                              ("error_file_id", errors))}  # fmt: skip
        if garbage:
            text["output_file_id"][1:1] = ['{"custom_id": "source-', '["not", "a", "result"]']
        with self.lock:
            batch = self.batches[batch_id]
            for kind, lines in text.items():
                if lines:
                    file_id = f"file-{len(self.files) + 1}"
                    self.files[file_id] = "\n".join(lines).encode()
                    batch[kind] = file_id
            batch["status"] = "completed"
