"""Fakes at the model boundary, shared by tests: an OpenAI-protocol server on 127.0.0.1."""

from tests.fakes.openai_server import (
    Fail,
    FakeOpenAIServer,
    RecordedCall,
    Reply,
    openai_server,
    schema_example,
)

__all__ = ["FakeOpenAIServer", "Fail", "RecordedCall", "Reply", "openai_server", "schema_example"]
