"""What every language-model stage shares: its chat model config, its versioned prompt, asking the
backend for a batch of requests, turning failed answers into rejection rows, and lineage.

Prompts are files `agents/prompts/<name>.txt`: a system part, a line `---`, then a user part;
both are jinja2 templates. A prompt's version is its name plus a hash of the file, so any edit
to a prompt is visible in every row it produces (`prompt_version`).

Failed answers never become rows: `parse_failed` (the answer did not fit the response model),
`api_error` / `api_rejected` (the endpoint failed or refused), `generation_failed` (a local batch
broke) each become one rejection row for the item asked about; it is retryable (the next run asks
again) when the reason is or when the backend says a new try can succeed.

Tokens: one call may make several rows (a detailed and a short caption); the call's tokens are
recorded on the first row and 0 on its siblings, so sums over a table count each call once.
A row's tokens are those of the answer it came from; tokens billed for attempts that were not
used (a malformed answer re-asked, a failed answer) land in the stage counters of the commit
record (`_commits/<stage>/<shard>.json`): `wasted_prompt_tokens`, `wasted_completion_tokens`.
Answers replayed from the response cache count as `replayed_*_tokens`, never as spent.

The dataset root comes with `setup(ctx)` (or the first batch, `bind_root`): successful answers are cached under
`<root>/_cache/chat/` (config `cache`, on by default; keyed by input, agent, prompt version and
model, so a rerun or resume replays completed calls for free), and the Batch API mode keeps its
batch ids under `<root>/_batches/<stage>/`. A backend injected by the caller is used as given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import Field

from agents.backends.cache import CachedChatBackend, ResponseCache
from agents.backends.chat import ChatBackend, ChatModelConfig, ChatRequest, ChatResult
from agents.backends.make import make_chat_backend
from agents.base import Batch, SetupContext, Stage, StageConfig, StageOutput
from schemas import Lineage
from schemas.enums import RETRYABLE_REASONS
from schemas.tables import rejection

PROMPTS = Path(__file__).parent / "prompts"
PLACEMENT = {"base_url", "api_key_env", "concurrency", "timeout_s", "max_retries", "backoff_initial_s",
             "backoff_max_s", "batch_poll_s", "batch_max_wait_s"}


class ChatStageConfig(StageConfig):
    chat: ChatModelConfig = Field(default_factory=ChatModelConfig)
    prompt: str = Field(description="prompt file name under agents/prompts, without .txt")
    max_tokens: int = Field(256, ge=16, description="answer budget per request")
    cache: bool = Field(True, description="replay successful answers from <dataset>/_cache/chat")

    def fingerprint_fields(self) -> dict[str, Any]:
        """How the model is reached (endpoint, key variable, timeouts, retries, parallelism) and
        whether answers are cached do not change what it answers, so they do not recompute the stage."""
        fields = super().fingerprint_fields()
        fields.pop("cache", None)
        fields["chat"] = {k: v for k, v in fields["chat"].items() if k not in PLACEMENT}
        return fields


@dataclass(frozen=True)
class Prompt:
    name: str
    system: str
    user: str
    version: str

    def messages(self, images: list | None = None, videos: list[FrameSequence] | None = None,
                 **values: Any) -> list[dict[str, Any]]:
        """System and user messages; each of `videos` becomes one video part (its frames and their
        time stamps in seconds), then each of `images` an image part, then the text."""
        system = _template(self.system).render(**values).strip()
        user = _template(self.user).render(**values).strip()
        visual = [{"type": "video", "video": list(v.frames), "timestamps": list(v.times)} for v in videos or []]
        visual += [{"type": "image", "image": image} for image in images or []]
        content: Any = [*visual, {"type": "text", "text": user}] if visual else user
        return [{"role": "system", "content": system}, {"role": "user", "content": content}]


@dataclass(frozen=True)
class FrameSequence:
    """Frames of one clip in order (PIL images, a visual prompt may be drawn on them) and the
    seconds from the clip's first frame to each (`Batch.frame_times`)."""

    frames: list
    times: list[float]


@cache
def _template(text: str):
    """Compiled once per prompt text: compiling a jinja template costs far more than rendering it."""
    from jinja2 import Environment, StrictUndefined

    return Environment(undefined=StrictUndefined, keep_trailing_newline=False).from_string(text)


@cache
def load_prompt(name: str) -> Prompt:
    path = PROMPTS / f"{name}.txt"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in PROMPTS.glob("*.txt")))
        raise FileNotFoundError(f"no prompt {name!r} in {PROMPTS}; known: {known}")
    text = path.read_text()
    system, _, user = text.partition("\n---\n")
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return Prompt(name=name, system=system, user=user, version=f"{name}@{digest}")


@dataclass
class Ask:
    """One request and the item it is about (for rejections)."""

    item_id: str
    clip_id: str | None
    request: ChatRequest
    context: Any = None


class ChatStage(Stage):
    """A stage whose work is chat requests. `backend` may be injected (tests, shared clients)."""

    config: ChatStageConfig

    def __init__(self, config=None, backend: ChatBackend | None = None):
        super().__init__(config)
        self.backend = backend
        self._injected = backend is not None
        self._root: Path | None = None

    def setup(self, ctx: SetupContext | None = None) -> None:
        if self.backend is None:
            self.backend = make_chat_backend(self.config.chat)
        self.backend.setup()
        self.prompt = load_prompt(self.config.prompt)
        if ctx is not None:
            self.bind_root(ctx.root)

    def teardown(self) -> None:
        if self.backend is not None:
            self.backend.teardown()

    def __call__(self, batch: Batch) -> StageOutput:
        self.ensure_setup()
        with self._setup_lock:
            self.bind_root(batch.root)
        return self.process_batch(batch)

    @property
    def concurrent_shards(self) -> bool:
        """Remote models (API, Batch API, the instant fake) wait on the network: several shards
        may share the actor, within the backend's one `concurrency` limit."""
        return self.config.chat.backend != "local"

    def bind_root(self, root: Path) -> None:
        """Where the dataset lives is known only now: the batch mode's state folder and the
        response cache go under it (once per actor; an actor serves one dataset)."""
        if self._root is not None or self.backend is None:
            return
        self._root = Path(root)
        if hasattr(self.backend, "state_dir") and self.backend.state_dir is None:
            self.backend.state_dir = self._root / "_batches" / self.name
        if self.config.cache and not self._injected:
            self.backend = CachedChatBackend(self.backend, ResponseCache(self._root / "_cache" / "chat"), self.name)

    def visual(self, sequences: list[FrameSequence]) -> dict[str, Any]:
        """`Prompt.messages` arguments for frame sequences: one video part each (frames with time
        stamps) when the backend takes video, else every frame as its own image. `video` tells the
        prompt template which."""
        if self.backend.takes_video:
            return {"videos": sequences, "video": True}
        return {"images": [f for s in sequences for f in s.frames], "video": False}

    @property
    def media(self) -> str:
        """How frames reach the model, for the rows' prompt_version: "+video" or "+images"."""
        return "+video" if self.backend.takes_video else "+images"

    @property
    def prompt_version(self) -> str:
        return self.prompt.version

    def request(self, messages: list[dict[str, Any]], response_model, *, prompt: Prompt | None = None,
                max_tokens: int | None = None, temperature: float = 0.0, seed: int | None = None) -> ChatRequest:
        return ChatRequest(
            messages=messages,
            response_model=response_model,
            max_tokens=max_tokens or self.config.max_tokens,
            temperature=temperature,
            seed=self.config.chat.seed if seed is None else seed,
            cache_key=(prompt or self.prompt).version,
        )

    def answer(self, asks: list[Ask], out: StageOutput) -> list[ChatResult]:
        """Every answer, in order, failed or not, with its tokens counted (for stages that record
        a failure as an outcome rather than a rejection)."""
        if not asks:
            return []
        results = self.backend.chat_batch([a.request for a in asks])
        _count(asks, results, out)
        return results

    def ask(self, asks: list[Ask], out: StageOutput) -> list[tuple[Ask, ChatResult]]:
        """Answers that parsed, with their asks; every failure is a rejection row in `out`."""
        return self._keep_parsed(asks, self.answer(asks, out), out)

    def ask_as_built(self, groups: Iterable[list[Ask]], out: StageOutput) -> list[tuple[Ask, ChatResult]]:
        """`ask` over every group's asks, but a remote model gets each group as soon as it is
        built, so building the next one (decoding, drawing) overlaps the wait on the model.
        Answers and rejections come in the same order as from `ask`; a local model takes them
        all at once, and so does the Batch API (one job per shard, not one per group)."""
        if not self.concurrent_shards or self.backend.whole_batches:
            return self.ask([a for group in groups for a in group], out)
        from concurrent.futures import ThreadPoolExecutor

        # As many groups in flight as the backend has request slots: a group holds at least one
        # request, so one shard alone can fill them.
        with ThreadPoolExecutor(max_workers=max(GROUPS_AHEAD, self.config.chat.concurrency)) as pool:
            sent = [(group, pool.submit(self.backend.chat_batch, [a.request for a in group]))
                    for group in groups if group]
            answered = []
            for group, future in sent:
                results = future.result()
                _count(group, results, out)
                answered.extend(self._keep_parsed(group, results, out))
        return answered

    def _keep_parsed(self, asks: list[Ask], results: list[ChatResult], out: StageOutput) -> list[tuple[Ask, ChatResult]]:
        answered = []
        for ask, result in zip(asks, results, strict=True):
            if result.ok and (result.parsed is not None or ask.request.response_model is None):
                answered.append((ask, result))
            else:
                reject_answer(out, self.name, ask.item_id, ask.clip_id, result)
        return answered

    def lineage(self, result: ChatResult | None = None, extra_version: str = "", prompt: Prompt | None = None,
                prompt_tokens: int | None = None, completion_tokens: int | None = None) -> Lineage:
        """Lineage of a row: the call's tokens (or the given share of them), 0 without a result."""
        return Lineage(
            agent=self.name,
            model=self.backend.model,
            model_revision=self.backend.revision,
            prompt_version=(prompt or self.prompt).version + extra_version,
            prompt_tokens=prompt_tokens if prompt_tokens is not None else (result.prompt_tokens if result else 0),
            completion_tokens=(completion_tokens if completion_tokens is not None
                               else (result.completion_tokens if result else 0)),
        )


GROUPS_AHEAD = 4  # at least this many groups of requests wait on a remote model while the next is built


def _count(asks: list[Ask], results: list[ChatResult], out: StageOutput) -> None:
    for ask, result in zip(asks, results, strict=True):
        count_tokens(out.counters, result, result.ok and (result.parsed is not None or ask.request.response_model is None))


def reject_answer(out: StageOutput, stage: str, item_id: str, clip_id: str | None, result: ChatResult) -> None:
    """A failed answer as a rejection row, retryable when its reason is or the backend says a
    new try can succeed (a malformed answer from a sampled endpoint)."""
    reason = result.error or "parse_failed"
    retryable = result.retryable or reason in RETRYABLE_REASONS
    out.rejections.append(rejection(stage, item_id, reason, result.detail, clip_id, retryable=retryable))
    out.counters[f"rejected_{reason}"] += 1


def count_tokens(counters: dict[str, int], result: ChatResult, used: bool) -> None:
    """Stage counters. Spent tokens reached the model in this run: `prompt_tokens` /
    `completion_tokens` of answers that became rows, `wasted_*` of answers billed for nothing.
    `replayed_*` are the tokens of answers taken from the response cache: spent by an earlier run,
    free now."""
    counters["chat_calls"] += 1
    counters["chat_cached"] += int(result.cached)
    if result.cached:
        counters["replayed_prompt_tokens"] += result.prompt_tokens
        counters["replayed_completion_tokens"] += result.completion_tokens
        return
    kind = "" if used else "wasted_"
    counters[f"{kind}prompt_tokens"] += result.prompt_tokens
    counters[f"{kind}completion_tokens"] += result.completion_tokens
    counters["wasted_prompt_tokens"] += result.wasted_prompt_tokens
    counters["wasted_completion_tokens"] += result.wasted_completion_tokens
