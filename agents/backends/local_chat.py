"""The local transformers chat backend: Qwen2 / Qwen2.5 / Qwen3 text models, Qwen2-VL / Qwen2.5-VL / Qwen3-VL for images,
and transformers-native InternVL (`*-hf` checkpoints) through its processor.

Requests run in batches of `concurrency` with left padding, the checkpoint's chat template and
greedy decoding (sampling only when a request asks for temperature > 0). With `constrained` on
(the default), a request with a response model is decoded by `SchemaLogitsProcessor`, so the
answer is schema-valid JSON whatever the weights; the answer still goes through `parse_answer`,
and anything that fails it (a string over its length, a token budget too small for the skeleton)
is a `parse_failed` result that the stage turns into a rejection.

Images, not videos: Qwen-VL images are prepared with the PIL image processor (the video
processors need torchvision, absent on CPU). InternVL's processor needs torchvision, so that path
runs where torchvision does (GPU machines). InternVL2 in its original remote-code format is not
loaded here: serve it with vLLM or LMDeploy and use the OpenAI-compatible backend.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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

QWEN_VL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")


class LocalChatBackend(ChatBackend):
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
            from agents.backends.constrained import TokenTable

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
        from agents.backends.constrained import SchemaLogitsProcessor

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
        if extra:
            # M-RoPE positions are computed only when the model is told which tokens are image tokens
            # (Qwen3-VL refuses to run without it; Qwen2.5-VL silently falls back to 1-D positions).
            image_id = self._tokenizer.convert_tokens_to_ids("<|image_pad|>")
            extra["mm_token_type_ids"] = (batch["input_ids"] == image_id).int()
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
