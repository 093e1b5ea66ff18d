"""OpenAI Batch API mode: the same `ChatBackend` contract, answered asynchronously at half price.

`chat_batch(requests)` writes the requests as JSONL (one line per request, `custom_id` = its
position and digest), uploads them (files API, purpose "batch"; split at `max_requests_per_file`),
creates one batch per file, then polls until every batch ends and folds the output lines back into
`ChatResult`s in request order, exactly as an online call would have returned them.

The batch ids are persisted before polling starts, in `<state_dir>/<job>.json` where `job` is a
digest of the requests, so a crashed or interrupted run that asks the same requests again resumes
the batches it already paid for instead of submitting new ones. Pass the dataset's `_batches/`
folder as `state_dir`. `max_wait_s` bounds one call; past it `BatchPending` is raised with the
state file kept, and the next call picks the batches up again.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.backends.chat import ChatBackend, ChatRequest, ChatResult, json_schema, parse_answer

ENDPOINT = "/v1/chat/completions"
DONE = {"completed", "failed", "expired", "cancelled"}


class BatchPending(RuntimeError):
    """The batches were submitted but have not finished within `max_wait_s`; rerun to resume.

    The engine treats it as a failure of the whole shard (never retried clip by clip, which would
    submit one new batch per clip) with the retryable reason `batch_pending`."""

    reason = "batch_pending"
    whole_shard = True


class OpenAIBatchBackend(ChatBackend):
    whole_batches = True  # one Batch API job per call: a shard's requests travel together

    def __init__(self, model: str, state_dir: str | Path | None, *, revision: str = "main", base_url: str | None = None,
                 api_key: str | None = None, client: Any = None, poll_interval_s: float = 30.0,
                 max_wait_s: float = 24 * 3600, max_requests_per_file: int = 50_000):
        self.model = model
        self.revision = revision
        self.state_dir = Path(state_dir) if state_dir is not None else None  # bound later by the stage
        self.base_url = base_url
        self.api_key = api_key
        self.client = client
        self.poll_interval_s = poll_interval_s
        self.max_wait_s = max_wait_s
        self.max_requests_per_file = max_requests_per_file

    def setup(self) -> None:
        if self.client is None:
            from openai import OpenAI

            key = self.api_key or os.environ.get("OPENAI_API_KEY")
            if not key and self.base_url is None:
                from agents.backends.models import ModelNotFound

                raise ModelNotFound(f"model {self.model!r} is served by the OpenAI Batch API, which needs a key: "
                                    "set $OPENAI_API_KEY, or point base_url at a server with the batch endpoints")
            self.client = OpenAI(base_url=self.base_url, api_key=key or "unused")  # local servers take any key

    # ----- the contract -----
    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        if not requests:
            return []
        if self.client is None:
            self.setup()
        if self.state_dir is None:
            raise RuntimeError("the batch backend needs a state folder for its batch ids (state_dir)")
        lines = [self.request_line(i, r) for i, r in enumerate(requests)]
        job = hashlib.sha256("\n".join(line["custom_id"] for line in lines).encode()).hexdigest()[:20]
        state_path = self.state_dir / f"{job}.json"
        state = self._load_state(state_path) or self._submit(lines, state_path)
        batches = self._wait(state, state_path)
        outputs: dict[str, dict] = {}
        for batch in batches:
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id:
                    for row in self._download(file_id):
                        outputs[row["custom_id"]] = row
        return [self._fold(outputs.get(line["custom_id"]), request, batches)
                for line, request in zip(lines, requests, strict=True)]

    # ----- building -----
    def request_line(self, position: int, request: ChatRequest) -> dict:
        body: dict[str, Any] = {"model": self.model, "messages": to_openai_messages(request.messages),
                                "max_tokens": request.max_tokens, "temperature": request.temperature}
        if request.seed is not None:
            body["seed"] = request.seed
        if request.response_model is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": request.response_model.__name__, "schema": json_schema(request.response_model)}}
        return {"custom_id": f"{position}-{request.digest(self.model)[:24]}", "method": "POST", "url": ENDPOINT,
                "body": body}

    def _submit(self, lines: list[dict], state_path: Path) -> dict:
        state: dict[str, Any] = {"model": self.model, "requests": len(lines), "batches": []}
        for start in range(0, len(lines), self.max_requests_per_file):
            chunk = lines[start : start + self.max_requests_per_file]
            payload = "".join(json.dumps(line) + "\n" for line in chunk).encode()
            uploaded = self.client.files.create(file=("requests.jsonl", payload, "application/jsonl"), purpose="batch")
            batch = self.client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h")
            state["batches"].append({"batch_id": batch.id, "input_file_id": uploaded.id})
            self._save_state(state_path, state)  # after each batch: a crash mid-way loses no paid work
        return state

    # ----- waiting and folding back -----
    def _wait(self, state: dict, state_path: Path) -> list[Any]:
        deadline = time.monotonic() + self.max_wait_s
        while True:
            batches = [self.client.batches.retrieve(b["batch_id"]) for b in state["batches"]]
            if all(b.status in DONE for b in batches):
                state["statuses"] = [b.status for b in batches]
                self._save_state(state_path, state)
                return batches
            if time.monotonic() >= deadline:
                raise BatchPending(f"batches {[b['batch_id'] for b in state['batches']]} still running; "
                                   f"state kept in {state_path}, run again to resume")
            time.sleep(self.poll_interval_s)

    def _download(self, file_id: str) -> list[dict]:
        text = self.client.files.content(file_id).text
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _fold(self, row: dict | None, request: ChatRequest, batches: list[Any]) -> ChatResult:
        if row is None:
            statuses = ",".join(sorted({b.status for b in batches}))
            return ChatResult(error="api_error", detail=f"no result in batch (status {statuses})", retryable=True)
        response = row.get("response") or {}
        if row.get("error") or response.get("status_code", 500) >= 400:
            detail = json.dumps(row.get("error") or response.get("body"))[:300]
            return ChatResult(error="api_error", detail=detail, retryable=response.get("status_code", 500) >= 429)
        body = response["body"]
        text = body["choices"][0]["message"].get("content") or ""
        result = parse_answer(text, request.response_model)
        usage = body.get("usage") or {}
        result.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        result.completion_tokens = int(usage.get("completion_tokens") or 0)
        return result

    # ----- state -----
    def _load_state(self, path: Path) -> dict | None:
        try:
            state = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return state if state.get("model") == self.model and state.get("batches") else None

    def _save_state(self, path: Path, state: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, path)


def to_openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our messages with PIL image parts turned into data URLs, as the OpenAI API takes them; a
    video part becomes its frames as images (the API has no video part)."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [wire for p in content for wire in _wire_parts(p)]
        out.append({**message, "content": content})
    return out


def _wire_parts(part: dict) -> list[dict]:
    if part.get("type") == "image":
        return [_image_part(part)]
    if part.get("type") == "video" and isinstance(part.get("video"), list):
        return [_image_part({"image": frame}) for frame in part["video"]]
    return [part]


def _image_part(part: dict) -> dict:
    image = part["image"]
    if isinstance(image, str):  # already a URL or data URL
        return {"type": "image_url", "image_url": {"url": image}}
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {"type": "image_url", "image_url": {"url": url}}
