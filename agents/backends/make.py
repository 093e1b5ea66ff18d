"""The chat backend a config names. Kept apart from agents.backends.chat, which every backend
imports, so the chat boundary and its implementations never import each other."""

from __future__ import annotations

from pathlib import Path

from agents.backends.chat import ChatBackend, ChatModelConfig


def make_chat_backend(cfg: ChatModelConfig, state_dir: str | Path | None = None) -> ChatBackend:
    """The backend a config names; implementations import their heavy modules lazily.
    `state_dir` is where the Batch API mode keeps its batch ids (a chat stage binds it to
    `<dataset>/_batches/<stage>/` at its first batch when not given here)."""
    if cfg.backend == "openai-batch":
        import os

        from agents.backends.openai_batch import OpenAIBatchBackend

        return OpenAIBatchBackend(cfg.model, state_dir, revision=cfg.revision, base_url=cfg.base_url,
                                  api_key=os.environ.get(cfg.api_key_env), poll_interval_s=cfg.batch_poll_s,
                                  max_wait_s=cfg.batch_max_wait_s)
    if cfg.backend == "openai":
        from agents.backends.openai_chat import OpenAIChatBackend

        return OpenAIChatBackend(cfg)
    if cfg.backend == "vllm":
        from agents.backends.vllm_chat import VllmChatBackend

        return VllmChatBackend(cfg)
    if cfg.backend == "fake":
        from agents.backends.fake import InstantChatBackend

        return InstantChatBackend(cfg)
    from agents.backends.local_chat import LocalChatBackend

    return LocalChatBackend(cfg)
