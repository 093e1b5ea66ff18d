"""A loopback OpenAI Batch API: /v1/files (upload, retrieve, content) and /v1/batches (create,
retrieve). Answers come from a scripted function of each request body, so tests drive the real
`openai` client end to end without a network.

A batch stays `in_progress` for `polls_before_done` retrieves, then completes: each input line is
answered by `answer(body) -> str` (a chat completion with usage) or, when it raises, becomes a line
of the error file. `fail_batches=True` makes every batch end `failed` with no output.
"""

from __future__ import annotations

import email.parser
import itertools
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class BatchServer:
    def __init__(self, answer: Callable[[dict], str], polls_before_done: int = 1, fail_batches: bool = False):
        self.answer = answer
        self.polls_before_done = polls_before_done
        self.fail_batches = fail_batches
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.created = {"files": 0, "batches": 0}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> BatchServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # ----- state -----
    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):06d}"

    def add_file(self, name: str, data: bytes, purpose: str) -> dict:
        file_id = self.new_id("file")
        self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                               "filename": name, "purpose": purpose, "status": "processed", "_data": data}
        return self.files[file_id]

    def create_batch(self, body: dict) -> dict:
        batch_id = self.new_id("batch")
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"], "status": "validating", "created_at": int(time.time()),
            "output_file_id": None, "error_file_id": None, "errors": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
        }
        self.polls[batch_id] = 0
        self.created["batches"] += 1
        return self.batches[batch_id]

    def retrieve_batch(self, batch_id: str) -> dict | None:
        batch = self.batches.get(batch_id)
        if batch is None or batch["status"] in ("completed", "failed"):
            return batch
        self.polls[batch_id] += 1
        if self.polls[batch_id] <= self.polls_before_done:
            batch["status"] = "in_progress"
        elif self.fail_batches:
            batch["status"] = "failed"
        else:
            self._complete(batch)
        return batch

    def _complete(self, batch: dict) -> None:
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]]["_data"].decode().splitlines() if x]
        outputs, errors = [], []
        for line in lines:
            request_id = self.new_id("req")
            try:
                text = self.answer(line["body"])
            except Exception as err:  # the scripted function's way to make a request fail
                errors.append({"id": request_id, "custom_id": line["custom_id"], "response": {
                    "status_code": 400, "request_id": request_id, "body": {"error": {"message": str(err)}}},
                    "error": None})
                continue
            completion = {"id": f"chatcmpl-{request_id}", "object": "chat.completion", "created": int(time.time()),
                          "model": line["body"]["model"],
                          "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": text}}],
                          "usage": {"prompt_tokens": len(json.dumps(line["body"]["messages"]).split()),
                                    "completion_tokens": len(text.split()),
                                    "total_tokens": 0}}
            outputs.append({"id": request_id, "custom_id": line["custom_id"],
                            "response": {"status_code": 200, "request_id": request_id, "body": completion},
                            "error": None})
        to_bytes = lambda rows: "".join(json.dumps(r) + "\n" for r in rows).encode()  # noqa: E731
        batch["output_file_id"] = self.add_file("output.jsonl", to_bytes(outputs), "batch_output")["id"]
        if errors:
            batch["error_file_id"] = self.add_file("errors.jsonl", to_bytes(errors), "batch_output")["id"]
        batch["request_counts"] = {"total": len(lines), "completed": len(outputs), "failed": len(errors)}
        batch["status"] = "completed"

    # ----- HTTP -----
    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, status: int, payload: Any, raw: bytes | None = None) -> None:
                body = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _public(self, record: dict) -> dict:
                return {k: v for k, v in record.items() if not k.startswith("_")}

            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server._lock:
                    if self.path == "/v1/files":
                        fields = _multipart(self.headers["Content-Type"], data)
                        name, content = fields["file"]
                        record = server.add_file(name or "upload.jsonl", content, fields["purpose"][1].decode())
                        server.created["files"] += 1
                        return self._send(200, self._public(record))
                    if self.path == "/v1/batches":
                        body = json.loads(data)
                        if body.get("input_file_id") not in server.files:
                            return self._send(400, {"error": {"message": "unknown input_file_id"}})
                        return self._send(200, server.create_batch(body))
                return self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_GET(self):
                parts = self.path.strip("/").split("/")
                with server._lock:
                    if parts[:2] == ["v1", "batches"] and len(parts) == 3:
                        batch = server.retrieve_batch(parts[2])
                        return self._send(200, batch) if batch else self._send(404, {"error": {"message": "no batch"}})
                    if parts[:2] == ["v1", "files"] and len(parts) >= 3 and parts[2] in server.files:
                        record = server.files[parts[2]]
                        if parts[3:] == ["content"]:
                            return self._send(200, None, raw=record["_data"])
                        return self._send(200, self._public(record))
                return self._send(404, {"error": {"message": f"no route {self.path}"}})

        return Handler


def _multipart(content_type: str, data: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a multipart/form-data body: name -> (filename, bytes)."""
    message = email.parser.BytesParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + data)
    return {part.get_param("name", header="content-disposition"): (part.get_filename(), part.get_payload(decode=True))
            for part in message.get_payload()}
