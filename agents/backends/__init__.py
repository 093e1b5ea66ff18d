"""Model access for the stages: chat (LLM / VLM) and vision backends, and model resolution."""
