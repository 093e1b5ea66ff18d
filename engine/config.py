"""Job configuration: one pydantic model, loaded from YAML and flags, written back resolved.

Stage configs are layered: the model profile (`data/profiles/<profile>/<stage>.yaml`), then the
placement (`data/placement/<name>.yaml`: resources per stage), then `stage_config` overrides from
the job file or `--set stage.key=value` flags.
"""

from __future__ import annotations

import difflib
import importlib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import UserError

DATA = Path(__file__).resolve().parent.parent / "data"

# stage name -> "module:Class"; imported only when a run needs the stage.
STAGE_CLASSES = {
    "ingest": "agents.ingest:Ingest",
    "ground_truth": "agents.ground_truth:GroundTruth",
    "template_writer": "agents.template_writer:TemplateQuestionWriter",
    "motion_captioner": "agents.motion_captioner:MotionCaptioner",
    "analyzer": "agents.analyzer:CaptionAnalyzer",
    "segmentor": "agents.segmentor:Segmentor",
    "annotator": "agents.annotator:ObjectAnnotator",
    "reviewer": "agents.reviewer:MaskReviewer",
    "refiner": "agents.refiner:CaptionRefiner",
    "question_writer": "agents.question_writer:QuestionWriter",
    "mcq_filters": "agents.mcq_filters:McqFilters",
}


class JobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job: str = "build-motionvid-qa"
    source: str = Field("virtual:6", description="virtual:N[:SEED], a folder of videos, or a manifest")
    profile: str = Field("tiny", description="model profile: a folder under data/profiles, or a path")
    placement: str = Field("local", description="resources per stage: data/placement/<name>.yaml or a path")
    stages: list[str] = Field(default_factory=lambda: list(STAGE_CLASSES))
    shard_size: int = Field(4, ge=1, description="clips per shard (the unit of commit)")
    max_shards_in_flight: int | None = Field(
        None, ge=1, description="cap on shards moving through the stages at once; default: the placement's "
        "slots (actors x max_in_flight, summed over the actor pools)")
    executor: Literal["ray", "local"] = "ray"
    ray_address: str | None = Field(None, description="connect here; default: RAY_ADDRESS or a new local cluster")
    allow_download: bool = False
    stage_config: dict[str, dict[str, Any]] = Field(default_factory=dict)


def load_job_config(path: str | None, overrides: dict[str, Any]) -> JobConfig:
    data: dict[str, Any] = {}
    if path:
        file = Path(path)
        if not file.is_file():
            raise UserError(f"config file {path} does not exist")
        data = yaml.safe_load(file.read_text()) or {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return JobConfig.model_validate(data)
    except ValidationError as err:
        raise UserError(f"job config: {explain_validation(err, JobConfig)}") from None


def parse_set_flags(flags: list[str]) -> dict[str, dict[str, Any]]:
    """`--set segmentor.box_threshold=0.2` -> {"segmentor": {"box_threshold": 0.2}}."""
    out: dict[str, dict[str, Any]] = {}
    for flag in flags:
        key, sep, value = flag.partition("=")
        stage, dot, field = key.partition(".")
        if not sep or not dot or not field:
            raise UserError(f"--set {flag!r}: write STAGE.FIELD=VALUE, e.g. segmentor.box_threshold=0.2")
        _set_nested(out.setdefault(stage, {}), field.split("."), yaml.safe_load(value))
    return out


@dataclass(frozen=True)
class RunConfig:
    """A run's configuration, resolved once (profile, then placement, then job-file and `--set`
    overrides) and read by every part of the run: stage construction, actor groups, run.json."""

    job: JobConfig
    stage_configs: dict[str, dict[str, Any]]
    groups: list[list[int]]  # stage indices per actor (placement `colocate:`)


def resolve_run(cfg: JobConfig | RunConfig) -> RunConfig:
    if isinstance(cfg, RunConfig):
        return cfg
    unknown = [s for s in cfg.stages if s not in STAGE_CLASSES]
    if unknown:
        raise UserError(f"unknown stage {unknown[0]!r}; stages are {', '.join(STAGE_CLASSES)}")
    placement = _read_yaml_dir_or_file(_resolve(cfg.placement, "placement"), ".yaml")
    colocate = placement.pop("colocate", None) or []
    configs = {}
    for name in cfg.stages:
        merged = _read_profile(cfg.profile, name)
        if name in placement:
            merged["resources"] = {**merged.get("resources", {}), **placement[name]}
        configs[name] = _without_gpu_if_remote(_deep_merge(merged, cfg.stage_config.get(name, {})))
    return RunConfig(cfg, configs, _groups(cfg.stages, colocate))


def _groups(stages: list[str], colocate: list[list[str]]) -> list[list[int]]:
    """Stage indices per actor: the placement's `colocate:` lists (stages that share one actor),
    every other stage alone. Only stages of this run count; order follows the pipeline."""
    index = {name: i for i, name in enumerate(stages)}
    groups: list[list[int]] = []
    seen: set[str] = set()
    for names in colocate:
        unknown = [n for n in names if n not in STAGE_CLASSES]
        if unknown:
            raise UserError(f"placement colocate names unknown stage {unknown[0]!r}")
        twice = [n for n in names if n in seen]
        if twice:
            raise UserError(f"placement colocates stage {twice[0]!r} twice")
        seen.update(names)
        members = sorted(index[n] for n in names if n in index)
        if members:
            groups.append(members)
    groups += [[i] for name, i in index.items() if name not in seen]
    return sorted(groups)


def colocated_groups(cfg: JobConfig | RunConfig) -> list[list[int]]:
    return resolve_run(cfg).groups


def stage_configs(cfg: JobConfig | RunConfig) -> dict[str, dict[str, Any]]:
    return resolve_run(cfg).stage_configs


REMOTE_BACKENDS = ("openai", "openai-batch", "fake")


def _without_gpu_if_remote(conf: dict[str, Any]) -> dict[str, Any]:
    """A stage whose model is reached over HTTP (or faked) only waits on the network: whatever the
    placement says, its actors ask for no GPU and no reserved memory."""
    if (conf.get("chat") or {}).get("backend") in REMOTE_BACKENDS and "resources" in conf:
        conf["resources"] = {**conf["resources"], "num_gpus": 0, "memory_gb": None}
    return conf


def build_stages(cfg: JobConfig | RunConfig) -> list:
    run = resolve_run(cfg)
    configs = run.stage_configs
    stages = []
    for name in run.job.stages:
        stage_class = load_stage_class(name)
        try:
            stages.append(stage_class(configs[name]))
        except ValidationError as err:
            raise UserError(f"config of stage {name}: {explain_validation(err, stage_class.config_model)}") from None
    return stages


def explain_validation(err: ValidationError, model: type[BaseModel]) -> str:
    """The first error as `where: what`; an unknown field lists the valid ones, closest first."""
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"]]
    where = ".".join(loc)
    if first["type"] != "extra_forbidden":
        return f"{where}: {first['msg']}"
    owner = _model_at(model, loc[:-1])
    if owner is None:
        return f"{where}: {first['msg']}"
    fields = sorted(owner.model_fields)
    close = difflib.get_close_matches(loc[-1], fields, n=1, cutoff=0.6)
    hint = f" (did you mean {'.'.join([*loc[:-1], close[0]])}?)" if close else ""
    of = f" of {'.'.join(loc[:-1])}" if loc[:-1] else ""
    return f"{where} is not a field{hint}; valid fields{of}: {', '.join(fields)}"


def _model_at(model: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    """The pydantic model that holds the fields at `path` (through Optional and unions)."""
    for key in path:
        field = model.model_fields.get(key)
        if field is None:
            return None
        found = [t for t in (field.annotation, *typing.get_args(field.annotation))
                 if isinstance(t, type) and issubclass(t, BaseModel)]
        if not found:
            return None
        model = found[0]
    return model


def load_stage_class(name: str):
    module_name, _, class_name = STAGE_CLASSES[name].partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except ModuleNotFoundError as err:
        raise UserError(f"stage {name} needs the Python module {err.name}, which is not installed") from None


def _read_profile(profile: str, stage: str) -> dict[str, Any]:
    folder = _resolve(profile, "profiles")
    file = folder / f"{stage}.yaml"
    return (yaml.safe_load(file.read_text()) or {}) if file.is_file() else {}


def _resolve(name: str, kind: str) -> Path:
    candidate = Path(name).expanduser()
    if candidate.exists():
        return candidate
    builtin = DATA / kind / name
    if builtin.exists() or (builtin.with_suffix(".yaml")).exists():
        return builtin if builtin.exists() else builtin.with_suffix(".yaml")
    known = sorted(p.stem for p in (DATA / kind).iterdir()) if (DATA / kind).is_dir() else []
    raise UserError(f"no {kind[:-1] if kind.endswith('s') else kind} named {name!r}; built-in: {', '.join(known)}")


def _read_yaml_dir_or_file(path: Path, suffix: str) -> dict[str, Any]:
    if path.is_file():
        return yaml.safe_load(path.read_text()) or {}
    return {p.stem: yaml.safe_load(p.read_text()) or {} for p in sorted(path.glob(f"*{suffix}"))}


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _set_nested(target: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
