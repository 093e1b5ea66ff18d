"""Shared fixtures: an isolated model cache per test session and one local Ray cluster."""

from __future__ import annotations

import os
import tempfile

import pytest

# Tiny models are built once per test session into a private cache, never into the user's.
os.environ.setdefault("VDE_CACHE", tempfile.mkdtemp(prefix="vde-cache-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    has_gpu = _has_gpu()
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray cluster for every test that needs it (starting one costs ~5 s)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level="ERROR",
                 runtime_env={"env_vars": {"VDE_CACHE": os.environ["VDE_CACHE"], "HF_HUB_OFFLINE": "1"}})
    yield ray
    ray.shutdown()
