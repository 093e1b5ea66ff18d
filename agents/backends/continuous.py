"""Continuous batching for a transformers causal LM: one decode loop per model, fed by a queue.

Every `submit` from any thread (a Ray actor runs several shards at once in threads) lands in one
queue; the loop admits waiting sequences into the running batch as soon as there is room (up to
`max_batch`), prefills them together, and then decodes one token for every running sequence per
forward pass. A finished sequence leaves at once and its slot is taken by the next waiting one, so
nobody waits for the longest answer of a static batch. The key/value cache is an ordinary
`DynamicCache` kept left-padded: joining pads the shorter side on the left, leaving drops the row
and trims padding columns no row needs.

Positions are given explicitly: the prompt's (1D for text models, the model's own 3D M-RoPE ids for
Qwen-VL, see `QwenVisionInputs.position_ids`) at prefill, then each sequence's next position.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)  # identity: rows leave the batch by identity, never by comparing tensors
class Sequence:
    prompt_ids: list[int]
    budget: int
    extra: dict[str, Any] = field(default_factory=dict)  # pixel tensors and grids (Qwen-VL)
    positions: Any = None  # [P, L] prompt position ids (P = 1 for text, 3 for M-RoPE)
    matcher: Any = None  # AnswerMatcher or None
    temperature: float = 0.0
    seed: int = 0
    tokens: list[int] = field(default_factory=list)
    next_position: int = 0
    future: Future = field(default_factory=Future)
    generator: Any = None


class DecodeLoop:
    """The running batch of one model; `submit` returns a future of the generated token ids."""

    def __init__(self, model, grammars, stop_ids: set[int], max_batch: int, device: str):
        self.model = model
        self.grammars = grammars
        self.stop_ids = stop_ids
        self.max_batch = max_batch
        self.device = device
        self.waiting: queue.Queue[Sequence] = queue.Queue()
        self.running: list[Sequence] = []
        self.cache = None
        self.mask = None  # [B, T] attention mask of the cache
        self.steps = 0  # forward passes run (prefills and decodes)
        self.largest_batch = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closing = False

    def submit(self, seq: Sequence) -> Future:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._closing = False
                self._thread = threading.Thread(target=self._run, name="decode-loop", daemon=True)
                self._thread.start()
        self.waiting.put(seq)
        return seq.future

    def close(self) -> None:
        """Stop the loop thread once its running sequences are done, and wait for it: a daemon
        thread still inside torch when the interpreter exits can abort the process."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            self.waiting.put(_CLOSE)
            thread.join()

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while not (self._closing and not self.running):
                newcomers = self._admit()
                if newcomers:
                    self._guard(newcomers, self._prefill)
                if self.running:
                    self._guard(list(self.running), lambda _: self._decode())

    def _admit(self) -> list[Sequence]:
        newcomers = []
        block = not self.running
        while len(self.running) + len(newcomers) < self.max_batch:
            try:
                seq = self.waiting.get(block=block and not newcomers, timeout=None)
            except queue.Empty:
                break
            if seq is _CLOSE:
                self._closing = True
                break
            newcomers.append(seq)
        return newcomers

    def _guard(self, seqs: list[Sequence], step) -> None:
        try:
            step(seqs)
        except Exception as err:  # a broken input (bad image, OOM) fails its sequences, not the loop
            for seq in seqs:
                if not seq.future.done():
                    seq.future.set_exception(err)
            keep = [i for i, s in enumerate(self.running) if s not in seqs]
            self._keep(keep)

    def _prefill(self, seqs: list[Sequence]) -> None:
        import torch
        from transformers import DynamicCache

        length = max(len(s.prompt_ids) for s in seqs)
        ids = torch.full((len(seqs), length), 0, dtype=torch.long)
        mask = torch.zeros((len(seqs), length), dtype=torch.long)
        dims = seqs[0].positions.shape[0]
        positions = torch.zeros((dims, len(seqs), length), dtype=torch.long)
        for row, seq in enumerate(seqs):
            n = len(seq.prompt_ids)
            ids[row, length - n :] = torch.tensor(seq.prompt_ids)
            mask[row, length - n :] = 1
            positions[:, row, length - n :] = seq.positions
            seq.next_position = int(seq.positions.max()) + 1
        extra = _join_extra([s.extra for s in seqs])
        cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
            position_ids=(positions[0] if dims == 1 else positions).to(self.device),
            past_key_values=cache, use_cache=True, logits_to_keep=1,
            **{k: v.to(self.device) if hasattr(v, "to") else v for k, v in extra.items()},
        )
        self.steps += 1
        self._join(out.past_key_values, mask.to(self.device), seqs)
        self._choose(seqs, out.logits[:, -1, :])

    def _decode(self) -> None:
        import torch

        seqs = self.running
        last = torch.tensor([[s.tokens[-1]] for s in seqs], device=self.device)
        self.mask = torch.cat([self.mask, torch.ones((len(seqs), 1), dtype=self.mask.dtype, device=self.device)], 1)
        position = torch.tensor([[s.next_position] for s in seqs], device=self.device)
        if _is_mrope(self.model):
            position = position.unsqueeze(0).expand(3, -1, -1)
        out = self.model(input_ids=last, attention_mask=self.mask, position_ids=position,
                         past_key_values=self.cache, use_cache=True)
        self.steps += 1
        self.largest_batch = max(self.largest_batch, len(seqs))
        for seq in seqs:
            seq.next_position += 1
        self._choose(list(seqs), out.logits[:, -1, :])

    def _choose(self, seqs: list[Sequence], logits) -> None:
        """Sample each row's next token under its grammar; finish whoever is done."""
        logits = logits.float().cpu()
        matchers = [s.matcher for s in seqs]
        if any(m is not None for m in matchers):
            allowed = self.grammars.masks(matchers)
            logits = logits[:, : allowed.shape[1]].masked_fill(~allowed, float("-inf"))
        finished = []
        for row, seq in enumerate(seqs):
            token = _sample(logits[row], seq)
            seq.tokens.append(token)
            if seq.matcher is not None and token not in self.stop_ids:
                seq.matcher.advance(token)
            stop = token in self.stop_ids or (seq.matcher is not None and seq.matcher.done)
            if stop or len(seq.tokens) >= seq.budget:
                finished.append(seq)
        for seq in finished:
            seq.future.set_result(seq.tokens)
        if finished:
            self._keep([i for i, s in enumerate(self.running) if s not in finished])

    def _join(self, cache, mask, seqs: list[Sequence]) -> None:
        import torch

        if self.cache is None or not self.running:
            self.cache, self.mask, self.running = cache, mask, list(seqs)
            return
        width = max(self.mask.shape[1], mask.shape[1])
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, width, 2), _left_pad(theirs.keys, width, 2)], 0)
            mine.values = torch.cat([_left_pad(mine.values, width, 2), _left_pad(theirs.values, width, 2)], 0)
        self.mask = torch.cat([_left_pad(self.mask, width, 1), _left_pad(mask, width, 1)], 0)
        self.running = self.running + list(seqs)

    def _keep(self, rows: list[int]) -> None:
        import torch

        self.running = [self.running[i] for i in rows]
        if not rows or self.cache is None:
            self.cache, self.mask, self.running = None, None, []
            return
        index = torch.tensor(rows, device=self.device)
        mask = self.mask.index_select(0, index)
        start = int((mask.sum(0) > 0).nonzero()[0]) if mask.any() else 0
        self.mask = mask[:, start:]
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]


def _sample(row_logits, seq: Sequence) -> int:
    import torch

    if seq.temperature <= 0:
        return int(row_logits.argmax())
    if seq.generator is None:
        seq.generator = torch.Generator().manual_seed(seq.seed)
    probs = torch.softmax(row_logits / seq.temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=seq.generator))


def _left_pad(tensor, width: int, dim: int):
    import torch

    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([torch.zeros(shape, dtype=tensor.dtype, device=tensor.device), tensor], dim)


def _join_extra(extras: list[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate the vision tensors of several prompts (Qwen-VL flattens patches over images)."""
    import torch

    keys = {k for e in extras for k in e}
    return {k: torch.cat([e[k] for e in extras if k in e], 0) for k in keys}


def _is_mrope(model) -> bool:
    return hasattr(getattr(model, "model", None), "get_rope_index")


_CLOSE = object()  # put in the waiting queue by `DecodeLoop.close`
