"""TRL's dataset-format checks, ported from huggingface/trl `trl/data_utils.py`
(`is_conversational`, `maybe_convert_to_chatml`) and the preference / SFT types of its
`docs/source/dataset_formats.md`: a preference row has `prompt`, `chosen`, `rejected`, all strings
(standard) or all message lists (conversational); an SFT row is `messages` (conversational
language modeling) with alternating user / assistant roles."""

from __future__ import annotations


def is_conversational(example: dict) -> bool:
    supported_keys = ["prompt", "chosen", "rejected", "completion", "messages"]
    example_keys = {key for key in example.keys() if key in supported_keys}
    if example_keys:
        key = example_keys.pop()
        maybe_messages = example[key]
        if isinstance(maybe_messages, list):
            maybe_message = maybe_messages[0]
            if isinstance(maybe_message, dict) and "role" in maybe_message:
                return True
    return False


def maybe_convert_to_chatml(example: dict) -> dict:
    for key in ["prompt", "completion", "chosen", "rejected", "messages", "conversations"]:
        if key in example and isinstance(example[key], list):
            for message in example[key]:
                if isinstance(message, dict):
                    if "from" in message:
                        message["role"] = message.pop("from")
                    if "value" in message:
                        message["content"] = message.pop("value")
    if "conversations" in example:
        example["messages"] = example.pop("conversations")
    return example


def preference_type(example: dict) -> str:
    """'standard' or 'conversational'; raises on anything TRL's DPO trainer would not take."""
    assert {"prompt", "chosen", "rejected"} <= set(example), sorted(example)
    values = [example[k] for k in ("prompt", "chosen", "rejected")]
    if all(isinstance(v, str) and v for v in values):
        return "standard"
    assert is_conversational(example), example
    return "conversational"


def sft_roles(example: dict) -> list[str]:
    """The roles of a conversational SFT row; raises unless TRL's chat templates can take it."""
    assert is_conversational(example), example
    roles = [m["role"] for m in example["messages"]]
    assert roles[::2] == ["user"] * len(roles[::2]) and roles[1::2] == ["assistant"] * len(roles[1::2]), roles
    return roles
