"""Before any clip is processed: can every stage start here?

Two checks, each ending the run within seconds with one short paragraph that names what is
missing, for which stage, and the command or flag that fixes it:
- `check_stages`: model files are on this machine (or `--allow-download` lets the run fetch them)
  and API keys are set. Cheap: no model is loaded, nothing is imported beyond huggingface_hub.
- `check_cluster`: the actors the placement asks for fit the Ray cluster's resources (actors hold
  their resources for life, so a pool that does not fit would wait forever).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.errors import NotReady

MODEL_FIELDS = ("detector", "segmenter", "propagator")  # vision checkpoints, each with `<field>_revision`
# (backend sam3: one checkpoint, `video_model`)
FIX_PLACEMENT = ("use a placement that fits (--placement local, or a YAML file with smaller num_gpus / actors), "
                 "connect to a bigger cluster (--ray-address), or run in this process with --executor local")


@dataclass
class Missing:
    stage: str
    what: str
    fix: str
    note: str = ""  # advice shared by several lines, said once

    def line(self) -> str:
        return f"{self.stage}: {self.what}: {self.fix}"


DOWNLOAD_NOTE = ("Models: on a machine without network run `hf download` on a connected one and copy the Hugging "
                 "Face cache here, or pass --allow-download, or point the profile at a local folder.")


def check_stages(stages: Iterable, look_for_models: bool = True) -> None:
    """Every API key a stage needs is set, and (`look_for_models`: the stages run on this machine
    and may not download) every model it will load is here."""
    missing: list[Missing] = []
    for stage in stages:
        missing += stage_needs(stage.name, stage.config, look_for_models)
    fail(missing)


def stage_needs(name: str, config: Any, look_for_models: bool) -> list[Missing]:
    from agents.backends.models import is_local

    missing = []
    chat = getattr(config, "chat", None)
    if chat is not None and _uses_model(config):
        if chat.backend in ("openai", "openai-batch") and chat.base_url is None and not os.environ.get(chat.api_key_env):
            missing.append(Missing(name, f"${chat.api_key_env} is not set (model {chat.model} on the OpenAI API)",
                                   f"`export {chat.api_key_env}=...`, or --set {name}.chat.base_url=URL of an "
                                   "OpenAI-compatible server"))
        elif chat.backend == "local" and look_for_models and not is_local(chat.model, chat.revision):
            missing.append(_not_here(name, "model", chat.model, chat.revision))
    backend = getattr(config, "backend", None)
    if backend in ("transformers", "sam3") and look_for_models:
        for field in MODEL_FIELDS if backend == "transformers" else ("video_model",):
            ref = getattr(config, field, None)
            revision = getattr(config, f"{field}_revision", "main")
            if isinstance(ref, str) and not is_local(ref, revision):
                missing.append(_not_here(name, field, ref, revision))
    return missing


def _not_here(stage: str, role: str, ref: str, revision: str) -> Missing:
    rev = "" if revision == "main" else f" --revision {revision}"
    return Missing(stage, f"{role} {ref} is not on this machine", f"`hf download {ref}{rev}`", DOWNLOAD_NOTE)


def _uses_model(config: Any) -> bool:
    """The quality filters load their model only for the model-backed checks."""
    if hasattr(config, "blind") and hasattr(config, "consistency"):
        return bool(config.blind or config.consistency)
    return True


def placement_needs(stages: list, groups: list[list[int]]) -> dict[str, Any]:
    """What the actor pools hold for life: CPUs, GPUs and memory in total, and per stage."""
    total = {"CPU": 0.0, "GPU": 0.0, "memory": 0.0}
    gpus_by_stage: dict[str, float] = {}
    largest_gpu_actor = 0.0
    for members in groups:
        res = [stages[i].resources for i in members]
        actors = max(r.actors for r in res)
        gpus = max(r.num_gpus for r in res)
        total["CPU"] += max(r.num_cpus for r in res) * actors
        total["GPU"] += gpus * actors
        total["memory"] += sum(r.memory_gb or 0 for r in res) * 2**30 * actors
        largest_gpu_actor = max(largest_gpu_actor, gpus)
        if gpus:
            gpus_by_stage["+".join(stages[i].name for i in members)] = gpus * actors
    return {**total, "gpus_by_stage": gpus_by_stage}


def check_cluster(stages: list, groups: list[list[int]], available: dict[str, float]) -> None:
    """The placement's needs against `ray.cluster_resources()`."""
    needs = placement_needs(stages, groups)
    missing = []
    if needs["GPU"] > available.get("GPU", 0) + 1e-9:
        by_stage = ", ".join(f"{name} {_num(n)}" for name, n in needs["gpus_by_stage"].items())
        missing.append(Missing("placement", f"needs {_count(needs['GPU'], 'GPU')} ({by_stage}), the cluster has "
                               f"{_num(available.get('GPU', 0))}", FIX_PLACEMENT))
    if needs["CPU"] > available.get("CPU", 0) + 1e-9:
        missing.append(Missing("placement", f"needs {_count(needs['CPU'], 'CPU')}, the cluster has "
                               f"{_num(available.get('CPU', 0))}", FIX_PLACEMENT))
    if needs["memory"] > available.get("memory", 0) + 1:
        missing.append(Missing("placement", f"needs {needs['memory'] / 2**30:.0f} GiB of memory for its actors, "
                               f"the cluster has {available.get('memory', 0) / 2**30:.0f} GiB", FIX_PLACEMENT))
    fail(missing)


def fail(missing: list[Missing]) -> None:
    if not missing:
        return
    lines = [f"  {m.line()}" for m in missing]
    notes = dict.fromkeys(m.note for m in missing if m.note)
    raise NotReady("\n".join(["this run cannot start here (nothing was processed):", *lines, *notes]))


def _num(value: float) -> str:
    return f"{value:g}"


def _count(value: float, unit: str) -> str:
    return f"{value:g} {unit}" + ("" if value == 1 else "s")
