"""Schema-guided decoding: a logits processor that lets a causal LM write only JSON that fits a
pydantic model's JSON schema.

The schema is walked into a skeleton: the punctuation and keys are forced token by token, enums,
booleans, bounded numbers and "one more array item?" are choices among a few token sequences, and
only string values are free text (at least one character; any token without a quote, backslash or control character, up
to the field's `maxLength` in characters, closed by the model choosing the `"` token). So the
answer always parses, whatever the weights: real small models become reliable, and tiny
random-weight models still produce rows. Arrays hold at least one item (capped by `maxItems`,
else `MAX_ITEMS`); every property is written, optional ones included.

Given the token budget, the machine keeps enough tokens in reserve to finish the skeleton: once
the budget left is down to the shortest possible rest of the answer, strings close and arrays end,
so a long-winded model still ends with valid JSON instead of a truncated one.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Generator
from typing import Any

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
