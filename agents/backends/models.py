"""Model references: resolving them to local folders, checking them before a run, fetching them.

References:
  tiny:<name>          a tiny random-weight build of a real architecture, made on first use
                       (deterministic from its seed) under the cache folder, then loaded through
                       the same `from_pretrained` path as a real checkpoint;
  /path/to/folder      a local checkpoint folder;
  org/name             a Hugging Face model id, looked up in the local Hugging Face cache only;
                       with downloads allowed (`--allow-download`, which sets VDE_ALLOW_DOWNLOAD=1
                       for every process of the run) it is fetched with `snapshot_download` at the
                       configured revision.

A model map (a YAML file named by VDE_MODEL_MAP: `{reference: replacement}`) redirects references
before they resolve, e.g. `facebook/sam3: /models/sam3` or, in tests, `facebook/sam3: tiny:sam3-video`.
Rows keep the profile's reference as their model name.

`stage_models` lists what a stage will load or call; `describe_model` says where a local one
would come from (for `build-motionvid-qa --check`); `check_api_model` makes one cheap call
(`models.retrieve`) so an unknown or retired API model stops a run before any work.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TinyBuilder = Callable[[Path, int], None]  # (output folder, seed) -> writes a save_pretrained folder
_TINY: dict[str, TinyBuilder] = {}
MODEL_MAP_ENV = "VDE_MODEL_MAP"
TINY_MODULES = ("tiny_vision", "tiny_chat")  # the modules that register tiny builders
ALLOW_DOWNLOAD_ENV = "VDE_ALLOW_DOWNLOAD"


class ModelNotFound(Exception):
    """A model that is not on this machine (or not served); the message says how to get it."""


def register_tiny(name: str) -> Callable[[TinyBuilder], TinyBuilder]:
    def wrap(builder: TinyBuilder) -> TinyBuilder:
        _TINY[name] = builder
        return builder

    return wrap


def cache_root() -> Path:
    return Path(os.environ.get("VDE_CACHE", Path.home() / ".cache" / "videodata-engine"))


def downloads_allowed() -> bool:
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "") not in ("", "0", "false")


def download_command(ref: str, revision: str = "main") -> str:
    return f"hf download {ref} --revision {revision}"


def mapped(ref: str) -> str:
    """The reference after the model map (VDE_MODEL_MAP), if one is set and names it."""
    path = os.environ.get(MODEL_MAP_ENV)
    return _read_map(path).get(ref, ref) if path else ref


@cache
def _read_map(path: str) -> dict[str, str]:
    import yaml

    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelNotFound(f"the model map {path} (${MODEL_MAP_ENV}) does not exist")
    return {str(k): str(v) for k, v in (yaml.safe_load(file.read_text()) or {}).items()}


def resolve_model(ref: str, revision: str = "main", seed: int = 0, allow_download: bool = False) -> Path:
    ref = mapped(ref)
    if ref.startswith("tiny:"):
        return _build_tiny(ref.removeprefix("tiny:"), seed)
    local = Path(ref).expanduser()
    if local.is_dir():
        return local
    fetch = allow_download or downloads_allowed()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(ref, revision=revision, local_files_only=not fetch))
    except Exception as err:  # the hub raises several types for "not cached" and "not reachable"
        failed = "the download failed; " if fetch else ""
        raise ModelNotFound(
            f"model {ref!r} (revision {revision}) is not on this machine; {failed}{download_hint(ref, revision)} "
            f"({type(err).__name__})"
        ) from None


def loaded_revision(path: Path, configured: str) -> str:
    """The revision a row records for the files at `path`: the commit of a Hugging Face cache
    snapshot (`.../snapshots/<commit>`), since a branch such as `main` moves on; else the
    configured one (a local folder or a tiny build has no commit)."""
    if path.parent.name == "snapshots" and len(path.name) == 40 and all(c in "0123456789abcdef" for c in path.name):
        return path.name
    return configured


def download_hint(ref: str, revision: str = "main") -> str:
    """The exact way to get a missing checkpoint here."""
    rev = "" if revision == "main" else f" --revision {revision}"
    return (f"run `hf download {ref}{rev}` (on a machine without network: run it on a connected one and "
            f"copy the Hugging Face cache here), pass --allow-download, or point the profile at a local folder")


def is_local(ref: str, revision: str = "main") -> bool:
    """Whether `resolve_model` finds the model without the network (a tiny build counts: it is
    made on first use). Cheap: no model is loaded."""
    ref = mapped(ref)
    if ref.startswith("tiny:") or Path(ref).expanduser().is_dir():
        return True
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(ref, revision=revision, local_files_only=True)
        return True
    except Exception:  # noqa: BLE001 - every "not cached" flavour
        return False


def _build_tiny(name: str, seed: int) -> Path:
    _load_tiny_builders()
    if name not in _TINY:
        raise ModelNotFound(f"no tiny model named {name!r}; known: {', '.join(sorted(_TINY)) or 'none'}")
    folder = tiny_folder(name, seed)
    if (folder / ".complete").exists():
        return folder
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    _TINY[name](tmp, seed)
    (tmp / ".complete").touch()
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def tiny_folder(name: str, seed: int) -> Path:
    """Where a tiny build lives. The name carries a fingerprint of the builders' code and the
    transformers version, so a build cached by older code (whose config or chat template may lack
    what today's backends need) is never reused."""
    return cache_root() / "tiny" / f"{name}-seed{seed}-{_builders_fingerprint()}"


@cache
def _builders_fingerprint() -> str:
    import hashlib
    from importlib.metadata import version

    here = Path(__file__).parent
    code = b"".join((here / f"{module}.py").read_bytes() for module in TINY_MODULES)
    return hashlib.sha256(code + version("transformers").encode()).hexdigest()[:10]


def _load_tiny_builders() -> None:
    """Import the modules that register tiny builders (they import torch, so only on demand)."""
    import importlib

    for module in (f"agents.backends.{name}" for name in TINY_MODULES):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


def tiny_names() -> list[str]:
    _load_tiny_builders()
    return sorted(_TINY)


# --- what a run uses ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelUse:
    """One model a stage loads (`local`) or calls (`api`)."""

    stage: str
    role: str
    ref: str
    revision: str = "main"
    seed: int = 0
    kind: str = "local"  # local | api
    chat: object | None = None  # the ChatModelConfig of an API model


def stage_models(stage) -> list[ModelUse]:
    """The models a configured stage needs: its chat model, or the Segmentor's checkpoints for its backend."""
    cfg = stage.config
    uses = []
    chat = getattr(cfg, "chat", None)
    if chat is not None and chat.backend == "local":
        uses.append(ModelUse(stage.name, "chat", chat.model, chat.revision, chat.seed))
    elif chat is not None and chat.backend in ("openai", "openai-batch"):
        uses.append(ModelUse(stage.name, "chat", chat.model, chat.revision, kind="api", chat=chat))
    backend = getattr(cfg, "backend", None)
    if backend == "sam3":
        uses.append(ModelUse(stage.name, "video_model", cfg.video_model, cfg.video_model_revision, cfg.seed))
    elif backend == "transformers":
        for role in ("detector", "segmenter", "propagator"):
            uses.append(ModelUse(stage.name, role, getattr(cfg, role), getattr(cfg, f"{role}_revision"), cfg.seed))
    return uses


@dataclass(frozen=True)
class Where:
    source: str  # what a run would load
    present: bool
    fetch: str = ""  # the command that fetches a missing one


def describe_model(use: ModelUse) -> Where:
    """Where a local model would load from, without building or downloading anything."""
    ref = mapped(use.ref)
    via = f"{use.ref} -> " if ref != use.ref else ""
    if ref.startswith("tiny:"):
        folder = tiny_folder(ref.removeprefix("tiny:"), use.seed)
        built = (folder / ".complete").exists()
        return Where(f"{via}tiny build {folder}{'' if built else ' (built on first use)'}", True)
    if Path(ref).expanduser().is_dir():
        return Where(f"{via}folder {Path(ref).expanduser()}", True)
    try:
        from huggingface_hub import snapshot_download

        return Where(f"{via}HF cache {snapshot_download(ref, revision=use.revision, local_files_only=True)}", True)
    except Exception:
        return Where(f"{via}not in the HF cache", False, download_command(ref, use.revision))


def describe_api(use: ModelUse) -> Where:
    chat = use.chat
    endpoint = chat.base_url or "api.openai.com"
    key = chat.api_key_env
    if chat.base_url is None and not os.environ.get(key):
        return Where(f"API {endpoint}, ${key} not set", False, f"export {key}=...")
    return Where(f"API {endpoint}" + (f" (key ${key})" if os.environ.get(key) else ""), True)


def check_api_model(chat) -> None:
    """One cheap call before any work: the endpoint must still serve `chat.model`. Raises
    ModelNotFound with one sentence when the model is unknown or retired, the key is refused,
    or nothing answers."""
    import openai

    key = os.environ.get(chat.api_key_env)
    endpoint = chat.base_url or "the OpenAI API"
    if not key and chat.base_url is None:
        raise ModelNotFound(
            f"model {chat.model!r} is served by the OpenAI API, which needs a key: set ${chat.api_key_env}, "
            "or point base_url at an OpenAI-compatible server (vLLM, SGLang)"
        )
    client = openai.OpenAI(api_key=key or "unused", base_url=chat.base_url, timeout=min(chat.timeout_s, 15.0),
                           max_retries=2)
    try:
        client.models.retrieve(chat.model)
        return
    except openai.NotFoundError:
        pass  # unknown to this endpoint, or a server without the retrieve route: ask for its list
    except openai.AuthenticationError:
        raise ModelNotFound(f"{endpoint} refused the key in ${chat.api_key_env} (model {chat.model!r})") from None
    except openai.APIStatusError as err:
        raise ModelNotFound(f"{endpoint} answered {err.status_code} when asked about model {chat.model!r}") from None
    except openai.APIError as err:
        raise ModelNotFound(f"no OpenAI-compatible server answers at {endpoint} for model {chat.model!r} "
                            f"({type(err).__name__})") from None
    finally:
        client.close()
    served = _served_models(chat, key)
    if served is None or (served and chat.model not in served):
        known = f"; it serves {', '.join(sorted(served)[:6])}" if served else ""
        raise ModelNotFound(
            f"{endpoint} does not know model {chat.model!r} (unknown or retired){known}: choose another in the "
            f"profile or with --set STAGE.chat.model=NAME"
        )


def _served_models(chat, key: str | None) -> list[str] | None:
    """The endpoint's model list; [] when it lists none (it does not say), None when it refuses."""
    import openai

    client = openai.OpenAI(api_key=key or "unused", base_url=chat.base_url, timeout=min(chat.timeout_s, 15.0),
                           max_retries=2)
    try:
        return [m.id for m in client.models.list()]
    except openai.NotFoundError:
        return [] if chat.base_url else None
    except openai.APIError:
        return None
    finally:
        client.close()


def preflight(stages, fetch: bool = False) -> None:
    """Before any work: every API model answers once (each endpoint and model checked once), and
    with `fetch` (--allow-download) every missing Hugging Face model is downloaded here, at its
    configured revision. Whether local models are present is `engine.preflight.check_stages`'s job."""
    seen = set()
    for stage in stages:
        for use in stage_models(stage):
            key = (use.kind, use.ref, use.revision, getattr(use.chat, "base_url", None))
            if key in seen:
                continue
            seen.add(key)
            if use.kind == "api":
                check_api_model(use.chat)
            elif fetch and not mapped(use.ref).startswith("tiny:"):
                resolve_model(use.ref, use.revision, use.seed, allow_download=True)
