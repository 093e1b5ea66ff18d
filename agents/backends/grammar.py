"""Schema-guided decoding through llguidance: a response model's JSON schema is compiled once per
(schema, token budget) into a grammar, and each answer follows it with an `llguidance.LLMatcher`
whose token masks are computed in microseconds, for a whole batch at a time.

Before compiling, the schema is made finite so that every answer fits its token budget whatever the
weights: a nullable field takes its non-null form, numbers become a short list of values inside
their bounds, every property is written in order and no other, strings hold 1..`maxLength`
characters (`MAX_STRING_CHARS` when unbounded, no escapes), arrays hold at least one item and at most
`maxItems` (`MAX_ITEMS` when unbounded). When the longest such answer could outgrow the budget, string
lengths (then array lengths) shrink until it fits. Text the grammar forces (keys, punctuation) is fed
as the tokenizer's own tokens, and tokens that are only part of a UTF-8 character are never chosen,
so each free token writes at least one character and the budget arithmetic holds. Random-weight
tiny models therefore still produce valid rows.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from typing import Any

MAX_ITEMS = 8
MAX_STRING_CHARS = 200
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ",
                "json_allowed_escapes": ""}


def finite_schema(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The schema with references inlined and every value bounded (see the module docstring)."""
    defs = schema.get("$defs", {}) if defs is None else defs
    if "$ref" in schema:
        return finite_schema(defs[schema["$ref"].split("/")[-1]], defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return finite_schema(options[0], defs)
    if "enum" in schema or "const" in schema:
        return {"enum": list(schema.get("enum", [schema.get("const")]))}
    kind = schema.get("type", "string")
    if kind == "object":
        props = {name: finite_schema(sub, defs) for name, sub in schema.get("properties", {}).items()}
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}
    if kind == "array":
        most = max(1, schema.get("maxItems", MAX_ITEMS))
        least = min(max(1, schema.get("minItems", 1)), most)
        return {"type": "array", "items": finite_schema(schema.get("items", {}), defs),
                "minItems": least, "maxItems": most}
    if kind == "string":
        least = max(1, schema.get("minLength", 0))
        out = {"type": "string", "minLength": least, "maxLength": max(least, schema.get("maxLength", MAX_STRING_CHARS))}
        return out | ({"pattern": schema["pattern"]} if "pattern" in schema else {})
    if kind == "boolean":
        return {"type": "boolean"}
    if kind in ("number", "integer"):
        return {"enum": number_choices(schema, integer=kind == "integer")}
    return {"type": "null"}


def number_choices(schema: dict[str, Any], integer: bool) -> list[float | int]:
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    high = schema.get("maximum", schema.get("exclusiveMaximum", low + (9 if integer else 1)))
    if integer:
        return list(range(int(low), int(high) + 1, max(1, (int(high) - int(low)) // 10 or 1)))
    values = [round(low + (high - low) * i / 10, 2) for i in range(11)]
    values = [v for v in values if v > schema.get("exclusiveMinimum", float("-inf"))]
    return [v for v in values if v < schema.get("exclusiveMaximum", float("inf"))]


def longest_answer(schema: dict[str, Any], count: Callable[[str], int]) -> tuple[int, list[tuple[dict, int]]]:
    """Upper bound on the tokens of an answer, split into a fixed part and the strings (each with
    how many times it can repeat): a free token writes at least one character."""
    if "enum" in schema:
        return max(len(json.dumps(v).encode()) for v in schema["enum"]), []
    kind = schema.get("type")
    if kind == "object":
        fixed, strings = 1, []  # "}" (the opening brace joins the first key's forced text)
        for position, (name, sub) in enumerate(schema["properties"].items()):
            fixed += count(("{" if position == 0 else ", ") + json.dumps(name) + ": ")
            sub_fixed, sub_strings = longest_answer(sub, count)
            fixed, strings = fixed + sub_fixed, strings + sub_strings
        return fixed + (1 if not schema["properties"] else 0), strings
    if kind == "array":
        most = schema["maxItems"]
        item_fixed, item_strings = longest_answer(schema["items"], count)
        return 2 + 2 * (most - 1) + most * item_fixed, [(node, times * most) for node, times in item_strings]
    if kind == "string":
        return 2, [(schema, 1)]
    return 5, []  # true / false / null


def fit_budget(schema: dict[str, Any], budget: int, count: Callable[[str], int]) -> dict[str, Any]:
    """Shrink string (then array) lengths until the longest answer, end token included, fits."""
    schema = copy.deepcopy(schema)
    for _ in range(4):
        fixed, strings = longest_answer(schema, count)
        room = budget - 1 - fixed
        total = sum(node["maxLength"] * times for node, times in strings)
        if total <= room:
            return schema
        floor = sum(node["minLength"] * times for node, times in strings)
        if room < floor and _shrink_arrays(schema):
            continue
        scale = max(room - floor, 0) / max(total - floor, 1)
        for node, _times in strings:
            node["maxLength"] = node["minLength"] + int((node["maxLength"] - node["minLength"]) * scale)
    return schema


def _shrink_arrays(schema: dict[str, Any]) -> bool:
    shrunk = False
    if schema.get("type") == "array" and schema["maxItems"] > schema["minItems"]:
        schema["maxItems"], shrunk = schema["minItems"], True
    for sub in list(schema.get("properties", {}).values()) + ([schema["items"]] if "items" in schema else []):
        shrunk = _shrink_arrays(sub) or shrunk
    return shrunk


class GrammarSet:
    """One tokenizer's compiled grammars and token facts; makes one `AnswerMatcher` per answer."""

    def __init__(self, tokenizer, vocab_size: int | None = None):
        import llguidance
        import llguidance.hf
        import torch

        self.tokenizer = tokenizer
        self.vocab_size = vocab_size or len(tokenizer)
        self.lltokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=self.vocab_size)
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=False)
        partial = torch.zeros(self.vocab_size, dtype=torch.bool)
        # U+FFFD: a token that is only part of a multi-byte character; never chosen, so that every
        # free token writes whole characters (and the budget arithmetic holds)
        partial[: len(texts)] = torch.tensor(["\ufffd" in t for t in texts])
        self.partial = partial
        self.executor = llguidance.LLExecutor(num_threads=1)
        self._grammars: dict[tuple[str, int], str] = {}

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def grammar(self, schema: dict[str, Any], budget: int) -> str:
        key = (json.dumps(schema, sort_keys=True), budget)
        if key not in self._grammars:
            import llguidance

            bounded = fit_budget(finite_schema(schema), budget, self.count)
            self._grammars[key] = llguidance.LLMatcher.grammar_from_json_schema(bounded, overrides=JSON_OPTIONS)
        return self._grammars[key]

    def matcher(self, schema: dict[str, Any], budget: int) -> AnswerMatcher:
        return AnswerMatcher(self, self.grammar(schema, budget))

    def masks(self, matchers: Sequence[AnswerMatcher | None]):
        """Allowed tokens for each row ([rows, vocab] bool); a row without a matcher allows all."""
        import llguidance.torch as lltorch

        bits = lltorch.allocate_token_bitmask(len(matchers), self.vocab_size)
        live = [(m.matcher, row) for row, m in enumerate(matchers) if m is not None and not m.forced()]
        if live:
            lltorch.fill_next_token_bitmask_par(self.executor, live, bits)
        allowed = unpack_bits(bits, self.vocab_size)
        for row, m in enumerate(matchers):
            if m is None:
                continue
            if m.forced():
                allowed[row] = False
                allowed[row, m.forced()[0]] = True
                continue
            whole = allowed[row] & ~self.partial
            if whole.any():
                allowed[row] = whole
        return allowed


def unpack_bits(bits, vocab_size: int):
    import torch

    shifts = torch.arange(32, dtype=torch.int32)
    return ((bits.unsqueeze(-1) >> shifts) & 1).bool().reshape(bits.shape[0], -1)[:, :vocab_size]


class AnswerMatcher:
    """Follows one answer through its grammar: forced tokens first, then the allowed set."""

    def __init__(self, grammars: GrammarSet, grammar: str):
        import llguidance

        self.grammars = grammars
        self.matcher = llguidance.LLMatcher(grammars.lltokenizer, grammar, log_level=0)
        if self.matcher.is_error():
            raise ValueError(f"grammar failed to compile: {self.matcher.get_error()}")
        self._forced: list[int] | None = None

    def forced(self) -> list[int]:
        if self._forced is None:
            self._forced = self.matcher.compute_ff_tokens()
        return self._forced

    def allowed(self):
        return self.grammars.masks([self])[0]

    def advance(self, token: int) -> None:
        self._forced = None
        if not self.matcher.consume_token(token):
            raise RuntimeError(f"constrained decoding rejected token {token}: {self.matcher.get_error()}")

    @property
    def done(self) -> bool:
        return self.matcher.is_stopped()
