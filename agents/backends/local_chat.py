"""The local transformers chat backend: Qwen2 / Qwen2.5 / Qwen3 text models, Qwen2-VL / Qwen2.5-VL / Qwen3-VL
for images and video, and transformers-native InternVL (`*-hf` checkpoints) through its processor.

Requests are continuously batched (`continuous.DecodeLoop`): every request of every shard in flight
on this actor joins one running batch of up to `concurrency` sequences, with the checkpoint's chat
template and greedy decoding (sampling only when a request asks for temperature > 0). With
`constrained` on (the default), a request with a response model is decoded under its JSON schema's
grammar (llguidance, `grammar.py`), so the answer is schema-valid JSON whatever the weights; it still
goes through `parse_answer`, and anything that fails it is a `parse_failed` result that the stage
turns into a rejection.

Qwen-VL: images and videos go through the model's vision path with the prompt's 3D M-RoPE position
ids built exactly as the model builds them (`qwen_vision.py`). InternVL's processor needs
torchvision, so that path runs where torchvision does (GPU machines). InternVL2 in its original
remote-code format is not loaded here: serve it with vLLM (`backend: vllm`) or use the
OpenAI-compatible backend.
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
        self._loop = None

    def setup(self) -> None:
        import torch

        from agents.backends.continuous import DecodeLoop
        from agents.backends.models import ModelNotFound, loaded_revision, resolve_model

        if self._model is not None:
            return
        path = resolve_model(self.cfg.model, self.cfg.revision, self.cfg.seed)
        self.revision = loaded_revision(path, self.cfg.revision)
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
        # Qwen-VL takes a clip as one video (qwen_vision: the video patch layout, M-RoPE time axis).
        # InternVL-hf gets separate images: its video path is its processor's, which needs torchvision.
        self.takes_video = self._kind == "qwen_vl"
        self._load(path, dtype)
        self._model.to(self.device).eval()
        self._grammars = None
        if self.cfg.constrained:
            from agents.backends.grammar import GrammarSet

            vocab = self._model.get_output_embeddings().weight.shape[0]
            self._grammars = GrammarSet(self._tokenizer, vocab)
        stops = {self._tokenizer.eos_token_id, self._tokenizer.pad_token_id} - {None}
        self._loop = DecodeLoop(self._model, self._grammars, stops, self.cfg.concurrency, self.device)

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
                from agents.backends.qwen_vision import QwenVisionInputs

                self._vision = QwenVisionInputs(self._model, self._tokenizer, path)
        if self._tokenizer.pad_token is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token

    def teardown(self) -> None:
        if self._loop is not None:
            self._loop.close()
        self._model = None
        self._loop = None

    @property
    def loop(self):
        """The running batch (its `steps` and `largest_batch` tell how requests were served)."""
        return self._loop

    def chat_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        if self._model is None:
            self.setup()
        pending = []
        for request in requests:
            try:
                seq = self._sequence(request)
                pending.append((request, seq, self._loop.submit(seq)))
            except Exception as err:  # one broken request (bad image) must not end the run
                pending.append((request, None, _failed(err)))
        results = []
        for request, seq, future in pending:
            try:
                tokens = future.result()
            except Exception as err:
                results.append(ChatResult(error="generation_failed", detail=f"{type(err).__name__}: {err}"[:300]))
                continue
            results.append(self._result(request, tokens, len(seq.prompt_ids)))
        return results

    def _sequence(self, request: ChatRequest):
        import torch

        from agents.backends.continuous import Sequence as Seq

        budget = min(request.max_tokens, self.cfg.max_new_tokens)
        ids, extra, positions = self._prompt(request)
        matcher = None
        if self._grammars is not None and request.response_model is not None:
            matcher = self._grammars.matcher(json_schema(request.response_model), budget)
        if positions is None:
            positions = torch.arange(len(ids)).unsqueeze(0)
        return Seq(prompt_ids=ids, budget=budget, extra=extra, positions=positions, matcher=matcher,
                   temperature=request.temperature, seed=request.seed or self.cfg.seed)

    def _result(self, request: ChatRequest, tokens: list[int], prompt_tokens: int) -> ChatResult:
        text = self._tokenizer.decode(tokens, skip_special_tokens=True).strip()
        result = parse_answer(text, request.response_model)
        result.prompt_tokens, result.completion_tokens = prompt_tokens, len(tokens)
        return result

    def _prompt(self, request: ChatRequest) -> tuple[list[int], dict[str, Any], Any]:
        """Prompt token ids, vision tensors and (Qwen-VL) the prompt's M-RoPE position ids."""
        if self._kind == "processor":
            inputs = self._processor.apply_chat_template(
                [request.messages], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
            )
            ids = inputs.pop("input_ids")[0].tolist()
            inputs.pop("attention_mask", None)
            return ids, dict(inputs), None
        if self._kind == "qwen_vl":
            return self._vision.prompt(request.messages)
        if any(p.get("type") in ("image", "video") for p in _parts(request.messages)):
            raise ValueError(f"{self.cfg.model} is a text model and cannot read images")
        text = self._tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
        return self._tokenizer(text, add_special_tokens=False)["input_ids"], {}, None


def _failed(err: Exception):
    from concurrent.futures import Future

    future: Future = Future()
    future.set_exception(err)
    return future


def _parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for m in messages if isinstance(m.get("content"), list) for p in m["content"]]
