"""The local chat backend as it was before continuous batching: static batches of `concurrency`
requests through `generate`, JSON constrained by a hand-written per-row vocabulary mask. Kept only as
the baseline `bench/chat.py` measures against."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

from agents.backends.chat import (
    ChatBackend,
    ChatModelConfig,
    ChatRequest,
    ChatResult,
    json_schema,
    parse_answer,
)

MAX_ITEMS = 8
MAX_STRING_CHARS = 200

Step = tuple  # ("lit", text) | ("str", min_chars, max_chars) | ("choice", [texts], "closes"?)


def walk(schema: dict[str, Any], defs: dict[str, Any]) -> Generator[Step, int | None, None]:
    """Yield the skeleton of a JSON value; a "choice" step is sent back the index chosen."""
    if "$ref" in schema:
        yield from walk(defs[schema["$ref"].split("/")[-1]], defs)
        return
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            yield from walk(options[0], defs)
            return
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        yield ("choice", [json.dumps(v) for v in values])
        return
    kind = schema.get("type", "string")
    if kind == "object":
        yield ("lit", "{")
        for position, (name, sub) in enumerate(schema.get("properties", {}).items()):
            yield ("lit", (", " if position else "") + json.dumps(name) + ": ")
            yield from walk(sub, defs)
        yield ("lit", "}")
    elif kind == "array":
        yield from _walk_array(schema, defs)
    elif kind == "string":
        yield ("lit", '"')
        # at least one character: an empty string is never a useful answer
        yield ("str", max(1, schema.get("minLength", 0)), schema.get("maxLength", MAX_STRING_CHARS))
    elif kind == "boolean":
        yield ("choice", ["true", "false"])
    elif kind in ("number", "integer"):
        yield ("choice", number_candidates(schema, integer=kind == "integer"))
    else:  # null
        yield ("lit", "null")


def _walk_array(schema: dict[str, Any], defs: dict[str, Any]) -> Generator[Step, int | None, None]:
    most = max(1, schema.get("maxItems", MAX_ITEMS))
    least = min(max(1, schema.get("minItems", 1)), most)
    yield ("lit", "[")
    count = 0
    while True:
        yield from walk(schema.get("items", {}), defs)
        count += 1
        if count >= most:
            break
        if count < least:
            yield ("lit", ", ")
            continue
        if (yield ("choice", ["]", ", "], "closes")) == 0:
            return
    yield ("lit", "]")


def number_candidates(schema: dict[str, Any], integer: bool) -> list[str]:
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    high = schema.get("maximum", schema.get("exclusiveMaximum", low + (9 if integer else 1)))
    if integer:
        values = range(int(low), int(high) + 1, max(1, (int(high) - int(low)) // 10 or 1))
        return [str(v) for v in values]
    values = [round(low + (high - low) * i / 10, 2) for i in range(11)]
    values = [v for v in values if v > schema.get("exclusiveMinimum", float("-inf"))]
    return [f"{v:.2f}" for v in values if v < schema.get("exclusiveMaximum", float("inf"))]


class TokenTable:
    """Per-tokenizer facts the machine needs, computed once: each token's text length and whether
    it may sit inside a JSON string."""

    def __init__(self, tokenizer):
        import torch

        self.tokenizer = tokenizer
        size = len(tokenizer)
        texts = tokenizer.batch_decode([[i] for i in range(size)], skip_special_tokens=False)
        special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        self.safe = torch.tensor(
            [i not in special and bool(t) and _string_safe(t) for i, t in enumerate(texts)], dtype=torch.bool
        )
        self.length = torch.tensor([len(t) for t in texts])
        quote = tokenizer.encode('"', add_special_tokens=False)
        self.quote_id = quote[0] if len(quote) == 1 else None
        self._cache: dict[str, list[int]] = {}

    def encode(self, text: str) -> list[int]:
        if text not in self._cache:
            self._cache[text] = self.tokenizer.encode(text, add_special_tokens=False)
        return self._cache[text]


def _string_safe(text: str) -> bool:
    # U+FFFD: a token that is part of a multi-byte character decodes to the replacement sign on its
    # own; leaving such tokens out keeps every generated string valid, visible text (rare
    # characters that exist only as byte pieces cannot be written).
    return '"' not in text and "\\" not in text and "\ufffd" not in text and all(ord(c) >= 0x20 for c in text)


def shortest_answer_tokens(schema: dict[str, Any], table: TokenTable) -> int:
    """Tokens of the shortest answer the skeleton allows: an upper bound on what finishing takes."""
    steps = walk(schema, schema.get("$defs", {}))
    total, sent = 0, None
    while True:
        try:
            step = steps.send(sent) if sent is not None else next(steps)
        except StopIteration:
            return total + 1  # the end-of-sequence token
        sent = None
        if step[0] == "lit":
            total += len(table.encode(step[1]))
        elif step[0] == "str":
            total += step[1] + 1  # one token per required character at worst, then the quote
        else:
            total += max(len(table.encode(t)) for t in step[1])
            sent = 0


class SchemaMachine:
    """Follows one answer through the skeleton: which tokens are allowed next, then what was chosen."""

    def __init__(self, schema: dict[str, Any], table: TokenTable, eos_id: int, budget: int | None = None):
        self.table = table
        self.eos_id = eos_id
        self.left = budget  # tokens the answer may still use
        self.reserve = shortest_answer_tokens(schema, table) if budget is not None else 0
        self.closes = False  # the pending choice ends an array
        self.steps = walk(schema, schema.get("$defs", {}))
        self.forced: deque[int] = deque()
        self.free: list[int] | None = None  # [min_chars, max_chars, chars written]
        self.options: list[list[int]] | None = None
        self.position = 0
        self.done = False
        self._next(None)

    def allowed(self, vocab_size: int):
        import torch

        mask = torch.zeros(vocab_size, dtype=torch.bool)
        if self.done:
            mask[self.eos_id] = True
        elif self.forced:
            mask[self.forced[0]] = True
        elif self.options is not None:
            live = [o for o in self.options if o]
            if self.closes and self.position == 0 and self._short_of_tokens():
                live = live[:1]
            mask[[o[self.position] for o in live]] = True
        else:
            least, most, written = self.free
            if written >= least and self._short_of_tokens():
                mask[self.table.quote_id] = True
                return mask
            size = min(vocab_size, len(self.table.safe))
            mask[:size] = self.table.safe[:size] & (self.table.length[:size] <= most - written)
            if written >= least:
                mask[self.table.quote_id] = True
        return mask

    def _short_of_tokens(self) -> bool:
        return self.left is not None and self.left <= self.reserve

    def advance(self, token: int) -> None:
        if self.done:
            return
        if self.left is not None:
            self.left -= 1
        if self.forced:
            self.forced.popleft()
            if not self.forced:
                self._next(None)
        elif self.options is not None:
            self._advance_choice(token)
        elif token == self.table.quote_id:
            self.free = None
            self._next(None)
        else:
            self.free[2] += int(self.table.length[token])

    def _advance_choice(self, token: int) -> None:
        # indices stay stable (the step is told which one won); ruled-out options become empty
        self.options = [o if o and o[self.position] == token else [] for o in self.options]
        self.position += 1
        for index, option in enumerate(self.options):
            if option and len(option) == self.position:
                self.options = None
                self._next(index)
                return
        if not any(self.options):
            raise RuntimeError("constrained decoding left every option")

    def _next(self, sent: int | None) -> None:
        """Pull skeleton steps until one needs the model."""
        while True:
            try:
                step = self.steps.send(sent) if sent is not None else next(self.steps)
            except StopIteration:
                self.done = True
                return
            sent = None
            if step[0] == "lit":
                self.forced.extend(self.table.encode(step[1]))
                if self.forced:
                    return
            elif step[0] == "str":
                self.free = [step[1], step[2], 0]
                return
            else:
                self.options = [self.table.encode(text) for text in step[1]]
                self.closes = len(step) > 2
                self.position = 0
                return


class SchemaLogitsProcessor:
    """A transformers logits processor running one SchemaMachine per batch row."""

    def __init__(
        self, schemas: list[dict[str, Any] | None], table: TokenTable, eos_id: int, budgets: list[int] | None = None
    ):
        budgets = budgets or [None] * len(schemas)
        self.machines = [
            SchemaMachine(s, table, eos_id, b) if s is not None else None for s, b in zip(schemas, budgets, strict=False)
        ]
        self.started = False

    def __call__(self, input_ids, scores):
        for row, machine in enumerate(self.machines):
            if machine is None:
                continue
            if self.started:
                machine.advance(int(input_ids[row, -1]))
            mask = machine.allowed(scores.shape[-1]).to(scores.device)
            scores[row] = scores[row].masked_fill(~mask, float("-inf"))
        self.started = True
        return scores

QWEN_VL_TYPES = ("qwen2_vl", "qwen2_5_vl")


class StaticBatchChatBackend(ChatBackend):
    def __init__(self, cfg: ChatModelConfig):
        self.cfg = cfg
        self.model = cfg.model
        self.revision = cfg.revision
        self._model = None
        self._kind = ""

    def setup(self) -> None:
        import torch

        from agents.backends.models import ModelNotFound, resolve_model

        path = resolve_model(self.cfg.model, self.cfg.revision, self.cfg.seed)
        model_type = json.loads((path / "config.json").read_text()).get("model_type", "")
        if model_type == "internvl_chat":
            raise ModelNotFound(
                f"model {self.cfg.model!r} is InternVL's remote-code format, which the local backend does "
                f"not load; serve it with `vllm serve {self.cfg.model}` and use backend: openai with base_url"
            )
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        torch.manual_seed(self.cfg.seed)
        self._kind = "qwen_vl" if model_type in QWEN_VL_TYPES else "processor" if model_type == "internvl" else "text"
        self._load(path, dtype)
        self._model.to(self.device).eval()
        self._table = None
        if self.cfg.constrained:
            table = TokenTable(self._tokenizer)
            self._table = table if table.quote_id is not None else None

    def _load(self, path: Path, dtype) -> None:
        import transformers as tf

        if self._kind == "processor":
            self._processor = tf.AutoProcessor.from_pretrained(path)
            self._tokenizer = self._processor.tokenizer
            self._model = tf.AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
        else:
            self._tokenizer = tf.AutoTokenizer.from_pretrained(path)
            model_class = tf.AutoModelForImageTextToText if self._kind == "qwen_vl" else tf.AutoModelForCausalLM
            self._model = model_class.from_pretrained(path, dtype=dtype)
            if self._kind == "qwen_vl":
                self._images = tf.Qwen2VLImageProcessorPil.from_pretrained(path)
        self._tokenizer.padding_side = "left"
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token

    def teardown(self) -> None:
        self._model = None

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        if self._model is None:
            self.setup()
        results: list[ChatResult] = []
        size = self.cfg.concurrency
        for start in range(0, len(requests), size):
            chunk = requests[start : start + size]
            try:
                results.extend(self._generate(chunk))
            except Exception as err:  # one broken batch (bad image, OOM) must not end the run
                detail = f"{type(err).__name__}: {err}"[:300]
                results.extend(ChatResult(error="generation_failed", detail=detail) for _ in chunk)
        return results

    def _generate(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        import torch

        inputs = {k: v.to(self.device) for k, v in self._inputs(requests).items()}
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        sampling = any(r.temperature > 0 for r in requests)
        settings: dict[str, Any] = dict(
            max_new_tokens=max(min(r.max_tokens, self.cfg.max_new_tokens) for r in requests),
            do_sample=sampling,
            pad_token_id=self._tokenizer.pad_token_id,
            eos_token_id=self._tokenizer.eos_token_id,
        )
        if sampling:
            settings["temperature"] = max(r.temperature for r in requests)
            torch.manual_seed(requests[0].seed or self.cfg.seed)
        processor = self._schema_processor(requests, settings["max_new_tokens"])
        if processor is not None:
            settings["logits_processor"] = [processor]
        with torch.inference_mode():
            output = self._model.generate(**inputs, **settings)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return [
            self._result(request, row, int(prompt))
            for request, row, prompt in zip(requests, new_tokens, prompt_tokens, strict=False)
        ]

    def _result(self, request: ChatRequest, tokens, prompt_tokens: int) -> ChatResult:
        ids = tokens.tolist()[: request.max_tokens]  # a batch generates up to its largest budget
        stop = {self._tokenizer.eos_token_id, self._tokenizer.pad_token_id}
        length = next((i + 1 for i, t in enumerate(ids) if t in stop), len(ids))
        text = self._tokenizer.decode(ids[:length], skip_special_tokens=True).strip()
        result = parse_answer(text, request.response_model)
        result.prompt_tokens, result.completion_tokens = prompt_tokens, length
        return result

    def _schema_processor(self, requests: Sequence[ChatRequest], max_new_tokens: int):
        if self._table is None or all(r.response_model is None for r in requests):
            return None
        schemas = [json_schema(r.response_model) if r.response_model else None for r in requests]
        budgets = [min(r.max_tokens, max_new_tokens) for r in requests]
        return SchemaLogitsProcessor(schemas, self._table, self._tokenizer.eos_token_id, budgets)

    def _inputs(self, requests: Sequence[ChatRequest]) -> dict[str, Any]:
        if self._kind == "processor":
            return self._processor.apply_chat_template(
                [r.messages for r in requests], add_generation_prompt=True, tokenize=True,
                return_dict=True, return_tensors="pt", padding=True,
            )
        texts = [
            self._tokenizer.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
            for r in requests
        ]
        images = [p["image"] for r in requests for p in _parts(r.messages) if p.get("type") == "image"]
        extra: dict[str, Any] = {}
        if images and self._kind == "qwen_vl":
            texts, extra = self._expand_images(texts, images)
        elif images:
            raise ValueError(f"{self.cfg.model} is a text model and cannot read images")
        batch = self._tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {**batch, **extra}

    def _expand_images(self, texts: list[str], images: list) -> tuple[list[str], dict[str, Any]]:
        """What Qwen-VL's processor does: one `<|image_pad|>` per merged patch of each image."""
        pixels = self._images(images=[im.convert("RGB") for im in images], return_tensors="pt")
        merge = self._images.merge_size**2
        counts = iter((pixels["image_grid_thw"].prod(dim=1) // merge).tolist())
        pad = "<|image_pad|>"
        expanded = []
        for text in texts:
            pieces = text.split(pad)
            out = pieces[0]
            for piece in pieces[1:]:
                out += "<|placeholder|>" * next(counts) + piece
            expanded.append(out.replace("<|placeholder|>", pad))
        return expanded, {"pixel_values": pixels["pixel_values"], "image_grid_thw": pixels["image_grid_thw"]}


def _parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for m in messages if isinstance(m.get("content"), list) for p in m["content"]]
