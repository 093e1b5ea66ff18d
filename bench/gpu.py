"""GPU benchmark in one run (fits 10 minutes on one GPU): the model stages at real sizes, random
weights, bf16 + SDPA.

    python bench/gpu.py            # on a GPU machine; prints one JSON object last
    python bench/gpu.py --smoke    # tiny builds on CPU, seconds (the test suite runs this)

Measures SAM 2.1-L video frames/s tracking 1 and 8 objects in one session, Grounding DINO-B
images/s at batch 8 (800x1333), HQ-SAM (ViT-L) images/s with 10 boxes in one call, and generated
tokens/s of a 7B-class chat model (Qwen2-7B's shape) at the same concurrency under the vLLM engine
(`load_format="dummy"`: random weights, no checkpoint) and under the transformers backend's
continuously batched decode loop (`agents/backends/continuous.py`). vLLM is skipped (and said so)
where it is not installed. Published figures to compare with are in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from vision import bench_detector, bench_propagator, bench_segmenter, build, real_models  # noqa: E402

QWEN2_7B = dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768)
TINY_CHAT = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096)


def vision_rows(smoke: bool, device: str, dtype, frames: int, repeats: int) -> list[dict]:
    if smoke:
        from agents.backends.models import resolve_model

        specs = {"sam2": ("sam2-video-tiny", resolve_model("tiny:sam2-video")),
                 "grounding": ("grounding-dino-tiny", resolve_model("tiny:grounding-dino")),
                 "sam-hq": ("sam-hq-tiny", resolve_model("tiny:sam-hq"))}
        detector_size = (128, 160)
    else:
        real = real_models()
        specs = {"sam2": ("sam2.1-hiera-large", real["sam2.1-hiera-large"]),
                 "grounding": ("grounding-dino-B", real["grounding-dino-B"]),
                 "sam-hq": ("sam-hq-vit-l", real["sam-hq-vit-l"])}
        detector_size = (800, 1333)
    rows = []
    for kind, (name, spec) in specs.items():
        model = build(kind, spec, device, dtype)
        if kind == "sam2":
            rows += [{"model": name, **bench_propagator(model, frames, n, device, dtype)} for n in (1, 8)]
        elif kind == "grounding":
            rows.append({"model": name, **bench_detector(model, detector_size, 8, device, dtype, repeats)})
        else:
            rows.append({"model": name, **bench_segmenter(model, device, dtype, repeats)})
        del model
        _free(device)
    return rows


def chat_transformers(settings: dict, device: str, dtype, requests: int, prompt: int, answer: int) -> dict:
    """The local backend's continuously batched loop on a randomly initialised model."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from agents.backends.continuous import DecodeLoop, Sequence

    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(Qwen2Config(**settings)).to(dtype).eval()
    loop = DecodeLoop(model, None, stop_ids=set(), max_batch=requests, device=device)
    prompts = _prompts(requests, prompt, settings["vocab_size"])
    loop.submit(Sequence(prompt_ids=prompts[0], budget=4, positions=torch.arange(prompt).unsqueeze(0))).result()
    start = time.perf_counter()
    futures = [loop.submit(Sequence(prompt_ids=p, budget=answer, positions=torch.arange(prompt).unsqueeze(0)))
               for p in prompts]
    tokens = sum(len(f.result()) for f in futures)
    seconds = time.perf_counter() - start
    del model, loop
    _free(device)
    return {"engine": "transformers-continuous", "requests": requests, "tokens": tokens,
            "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1)}


def chat_vllm(settings: dict, requests: int, prompt: int, answer: int) -> dict:
    """vLLM's engine on the same shape with dummy (random) weights, all requests at once."""
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        return {"engine": "vllm", "skipped": "vllm is not installed"}
    from transformers import Qwen2Config

    from agents.backends.models import resolve_model

    folder = Path(tempfile.mkdtemp(prefix="vde-gpu-bench-"))
    Qwen2Config(**settings, torch_dtype="bfloat16").save_pretrained(folder)
    tiny = resolve_model("tiny:qwen2")  # any tokenizer: prompts go in as token ids
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((tiny / name).read_bytes())
    started = time.perf_counter()
    llm = LLM(model=str(folder), load_format="dummy", max_num_seqs=requests, max_model_len=prompt + answer + 16,
              enforce_eager=False, seed=0)
    startup = time.perf_counter() - started
    prompts = [{"prompt_token_ids": p} for p in _prompts(requests, prompt, settings["vocab_size"])]
    params = SamplingParams(max_tokens=answer, ignore_eos=True, temperature=0.0)
    llm.generate(prompts[:1], SamplingParams(max_tokens=4, ignore_eos=True), use_tqdm=False)
    start = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - start
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {"engine": "vllm", "requests": requests, "tokens": tokens, "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1), "engine_start_s": round(startup, 1)}


def _prompts(requests: int, length: int, vocab: int) -> list[list[int]]:
    import numpy as np

    rng = np.random.default_rng(0)
    return [rng.integers(10, min(vocab, 500), length).tolist() for _ in range(requests)]


def _free(device: str) -> None:
    import gc

    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny builds on CPU: seconds, for the test suite")
    parser.add_argument("--frames", type=int, default=32, help="SAM 2 frames per propagation")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--requests", type=int, default=32, help="concurrent chat requests (both engines)")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--answer-tokens", type=int, default=256)
    args = parser.parse_args()
    os.environ.setdefault("VDE_CACHE", tempfile.mkdtemp(prefix="vde-gpu-bench-cache-"))
    import torch

    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if args.smoke:
        args.frames, args.repeats, args.requests, args.prompt_tokens, args.answer_tokens = 2, 1, 4, 16, 8
    chat = TINY_CHAT if args.smoke else QWEN2_7B
    started = time.perf_counter()
    results = {"vision": vision_rows(args.smoke, device, dtype, args.frames, args.repeats)}
    results["chat"] = [chat_transformers(chat, device, dtype, args.requests, args.prompt_tokens, args.answer_tokens)]
    if not args.smoke:  # vLLM's engine on CPU takes minutes to start: the vllm lane tests it instead
        results["chat"].append(chat_vllm(chat, args.requests, args.prompt_tokens, args.answer_tokens))
    for row in results["vision"]:
        rate = row.get("images_per_s") or row.get("frames_per_s")
        extra = {k: row[k] for k in ("batch", "boxes", "objects") if k in row}
        print(f"{row['model']:22} {rate:9.2f} {'img/s' if 'images_per_s' in row else 'frames/s':8} {extra}")
    for row in results["chat"]:
        print(f"{row['engine']:24} {row.get('tokens_per_s', row.get('skipped'))} tokens/s")
    print(json.dumps({"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "smoke": args.smoke,
                      "seconds": round(time.perf_counter() - started, 1), "results": results}))


if __name__ == "__main__":
    main()
