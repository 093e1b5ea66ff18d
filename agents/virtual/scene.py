"""Virtual scenes: a complete, seeded description of a short rendered clip.

A `SceneSpec` says everything the renderer draws (background texture, camera path, objects and
their timed actions), so masks, captions and questions all derive from the same facts. Object
positions are in world pixels: the camera maps them to the screen, which is how pans and zooms
move the textured background while the objects keep their own motion.

Screen and world axes point right (x) and down (y); a positive angle turns clockwise on screen.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

RENDERER_VERSION = "virtual-2"  # 2: every scene holds an ordered two-action sequence

SHAPES = ("circle", "square", "triangle", "star", "rectangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 90, 225),
    "yellow": (240, 210, 30),
    "purple": (140, 60, 200),
    "orange": (250, 135, 20),
    "pink": (245, 105, 190),
    "cyan": (30, 200, 220),
}
# Object radius in pixels for a 240-pixel-high frame; scaled with the frame's short side.
SIZES = {"small": 14.0, "medium": 20.0, "large": 27.0}
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up-left": (-0.7071, -0.7071),
    "up-right": (0.7071, -0.7071),
    "down-left": (-0.7071, 0.7071),
    "down-right": (0.7071, 0.7071),
}
ROTATIONS = ("clockwise", "counterclockwise")
PAN_DIRECTIONS = ("left", "right", "up", "down")
ZOOM_DIRECTIONS = ("in", "out")
ACTION_KINDS = ("move", "spin", "bounce")
# Index cycles (lengths 4 and 3 are coprime, so any 12 consecutive indices hold every pairing).
SCENARIOS = ("translate", "rotate", "bounce", "sequence")
CAMERA_KINDS = ("static", "pan", "zoom")
# Outer extent of any shape, in radii (the star's tips reach furthest).
EXTENT = 1.2
MIN_FRAMES_PER_BOUNCE = 6


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Action(_Model):
    """One timed action of an object; it runs from start_frame to end_frame (progress 0 -> 1)."""

    kind: Literal["move", "spin", "bounce"]
    start_frame: int = Field(ge=0)
    end_frame: int = Field(ge=1)
    direction: str | None = Field(None, description="move: a DIRECTIONS key; spin: clockwise|counterclockwise")
    distance: float = Field(0.0, ge=0, description="move: world pixels travelled")
    turns: int = Field(0, ge=0, description="spin: full turns")
    count: int = Field(0, ge=0, description="bounce: number of bounces")
    height: float = Field(0.0, ge=0, description="bounce: world pixels of each hop")

    @model_validator(mode="after")
    def _consistent(self):
        if self.end_frame <= self.start_frame:
            raise ValueError("an action must end after it starts")
        if self.kind == "move" and self.direction not in DIRECTIONS:
            raise ValueError(f"move direction must be one of {list(DIRECTIONS)}")
        if self.kind == "spin" and (self.direction not in ROTATIONS or self.turns < 1):
            raise ValueError("spin needs a rotation direction and at least one turn")
        if self.kind == "bounce" and self.count < 1:
            raise ValueError("bounce needs a count of at least one")
        return self

    @property
    def key(self) -> str:
        """What the action looks like, ignoring amounts: two objects never share a key in a scene."""
        return self.kind if self.kind == "bounce" else f"{self.kind}:{self.direction}"

    def progress(self, t: np.ndarray) -> np.ndarray:
        return np.clip((t - self.start_frame) / (self.end_frame - self.start_frame), 0.0, 1.0)


class SceneObject(_Model):
    index: int = Field(ge=0, description="draw order: later objects cover earlier ones")
    shape: Literal["circle", "square", "triangle", "star", "rectangle"]
    colour: str
    size: Literal["small", "medium", "large"]
    radius: float = Field(gt=0, description="world pixels")
    x: float
    y: float
    angle: float = Field(0.0, description="initial angle in degrees, clockwise")
    actions: list[Action] = Field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.colour} {self.shape}"

    def pose(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World x, y and clockwise angle (degrees) at frame times t; actions add up."""
        t = np.asarray(t, dtype=float)
        x = np.full(t.shape, self.x)
        y = np.full(t.shape, self.y)
        angle = np.full(t.shape, self.angle)
        for action in self.actions:
            u = action.progress(t)
            if action.kind == "move":
                dx, dy = DIRECTIONS[action.direction]
                x = x + dx * action.distance * u
                y = y + dy * action.distance * u
            elif action.kind == "spin":
                sign = 1.0 if action.direction == "clockwise" else -1.0
                angle = angle + sign * 360.0 * action.turns * u
            else:
                y = y - action.height * np.abs(np.sin(np.pi * action.count * u))
        return x, y, angle


class Camera(_Model):
    motion: Literal["static", "pan", "zoom"] = "static"
    direction: str | None = Field(None, description="pan: left|right|up|down; zoom: in|out")
    amount: float = Field(0.0, description="pan: world pixels travelled; zoom: final zoom factor")

    @model_validator(mode="after")
    def _consistent(self):
        if self.motion == "pan" and (self.direction not in PAN_DIRECTIONS or self.amount <= 0):
            raise ValueError("a pan needs a direction and a positive distance")
        if self.motion == "zoom" and (self.direction not in ZOOM_DIRECTIONS or self.amount <= 0):
            raise ValueError("a zoom needs in|out and a positive final factor")
        return self


class Background(_Model):
    """A procedural texture in world coordinates: checkerboard tiles plus soft waves."""

    base: tuple[int, int, int]
    accent: tuple[int, int, int]
    tile: float = Field(gt=0)
    wave_freq: tuple[float, float]
    wave_phase: float
    wave_amp: float = Field(ge=0)


class SceneSpec(_Model):
    renderer_version: str = RENDERER_VERSION
    seed: int
    index: int
    width: int = Field(ge=64)
    height: int = Field(ge=64)
    fps: float = Field(gt=0)
    num_frames: int = Field(ge=2)
    background: Background
    camera: Camera = Field(default_factory=Camera)
    objects: list[SceneObject] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self):
        if self.width % 2 or self.height % 2:
            raise ValueError("H.264 needs an even width and height")
        if len({o.label for o in self.objects}) != len(self.objects):
            raise ValueError("object labels must be distinct")
        if [o.index for o in self.objects] != list(range(len(self.objects))):
            raise ValueError("object indices must be 0..N-1 in draw order")
        for obj in self.objects:
            if any(a.end_frame > self.num_frames for a in obj.actions):
                raise ValueError(f"an action of the {obj.label} ends after the clip")
        return self

    def camera_pose(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World point at the screen centre, and zoom factor, at frame times t."""
        t = np.asarray(t, dtype=float)
        u = t / max(self.num_frames - 1, 1)
        cx = np.full(t.shape, self.width / 2)
        cy = np.full(t.shape, self.height / 2)
        zoom = np.ones(t.shape)
        cam = self.camera
        if cam.motion == "pan":
            dx, dy = DIRECTIONS[cam.direction]
            cx, cy = cx + dx * cam.amount * u, cy + dy * cam.amount * u
        elif cam.motion == "zoom":
            zoom = 1.0 + (cam.amount - 1.0) * u
        return cx, cy, zoom

    def screen_pose(self, obj: SceneObject, t: np.ndarray):
        """Screen x, y, angle and scale of an object at frame times t."""
        x, y, angle = obj.pose(t)
        cx, cy, zoom = self.camera_pose(t)
        return (x - cx) * zoom + self.width / 2, (y - cy) * zoom + self.height / 2, angle, zoom


# ----- sampling -----


def sample_scene(
    seed: int, index: int, width: int = 320, height: int = 240, fps: int = 12, seconds: float = 3.0
) -> SceneSpec:
    """A scene determined by (seed, index) alone.

    The index picks the scenario of the main object (translate, rotate, bounce, or an ordered
    sequence of two actions) and the camera kind (static, pan, zoom) from two coprime cycles, so
    any 12 consecutive indices hold every pairing; the seeded generator picks everything else. No
    two objects share a colour, or an action key (e.g. two objects never both move left), so a
    question naming an action has one answer. Every scene holds an ordered sequence: when the main
    object's scenario is not one, the second object performs two actions in turn, so action-order
    questions are as common as the other categories (MotionBench weighs its six categories alike).
    """
    rng = np.random.default_rng([seed, index])
    num_frames = max(8, round(fps * seconds))
    scale = min(width, height) / 240.0
    spec = SceneSpec(
        seed=seed, index=index, width=width, height=height, fps=fps, num_frames=num_frames,
        background=_sample_background(rng, scale),
        camera=_sample_camera(rng, index, width, height),
        objects=[SceneObject(index=0, shape="circle", colour="red", size="small", radius=1, x=0, y=0)],
    )
    n_objects = int(rng.integers(2, 5))
    colours = [str(c) for c in rng.choice(list(COLOURS), n_objects, replace=False)]
    used_keys: set[str] = set()
    plans = [_primary_actions(rng, SCENARIOS[index % len(SCENARIOS)], num_frames, scale, used_keys)]
    ordered = len(plans[0]) >= 2
    for i in range(1, n_objects):
        plans.append(_secondary_actions(rng, i, num_frames, scale, used_keys, sequence=i == 1 and not ordered))
    objects: list[SceneObject] = []
    for i, actions in enumerate(plans):
        spins = any(a.kind == "spin" for a in actions)
        shapes = [s for s in SHAPES if s != "circle"] if spins else list(SHAPES)  # a turning disc looks still
        size = str(rng.choice(list(SIZES)))
        obj = SceneObject(
            index=i, shape=str(rng.choice(shapes)), colour=colours[i], size=size,
            radius=SIZES[size] * scale, x=0.0, y=0.0, angle=float(rng.choice([0.0, 15.0, 30.0])),
            actions=actions,
        )
        objects.append(_place(rng, spec, obj, objects))
    return spec.model_copy(update={"objects": objects})


def _sample_background(rng: np.random.Generator, scale: float) -> Background:
    # Muted, low-saturation tones so the saturated object colours always stand out.
    grey = rng.integers(95, 150)
    tint = rng.integers(-12, 13, size=3)
    base = tuple(int(v) for v in np.clip(grey + tint, 0, 255))
    accent = tuple(int(v) for v in np.clip(np.array(base) + rng.choice([-35, 35]), 0, 255))
    return Background(
        base=base, accent=accent, tile=float(rng.uniform(18, 34) * scale),
        wave_freq=(float(rng.uniform(0.02, 0.06) / scale), float(rng.uniform(0.02, 0.06) / scale)),
        wave_phase=float(rng.uniform(0, 2 * np.pi)), wave_amp=float(rng.uniform(8, 18)),
    )


def _sample_camera(rng: np.random.Generator, index: int, width: int, height: int) -> Camera:
    kind = CAMERA_KINDS[index % len(CAMERA_KINDS)]
    if kind == "pan":
        direction = str(rng.choice(PAN_DIRECTIONS))
        span = width if direction in ("left", "right") else height
        return Camera(motion="pan", direction=direction, amount=float(rng.uniform(0.18, 0.28) * span))
    if kind == "zoom":
        direction = str(rng.choice(ZOOM_DIRECTIONS))
        factor = rng.uniform(1.3, 1.45) if direction == "in" else rng.uniform(0.65, 0.75)
        return Camera(motion="zoom", direction=direction, amount=float(factor))
    return Camera()


def _primary_actions(rng, scenario: str, num_frames: int, scale: float, used: set[str]) -> list[Action]:
    if scenario == "sequence":
        kinds = [str(k) for k in rng.choice(ACTION_KINDS, 2, replace=False)]
        mid = num_frames // 2
        spans = [(1, mid - 1), (mid + 1, num_frames - 1)]
        return [_action(rng, kind, s, e, scale, used) for kind, (s, e) in zip(kinds, spans, strict=True)]
    kind = {"translate": "move", "rotate": "spin", "bounce": "bounce"}[scenario]
    start = int(rng.integers(0, max(1, num_frames // 6)))
    end = min(num_frames - 1, start + int(rng.integers(int(0.6 * num_frames), int(0.8 * num_frames) + 1)))
    return [_action(rng, kind, start, end, scale, used)]


def _secondary_actions(rng, position: int, num_frames: int, scale: float, used: set[str],
                       sequence: bool = False) -> list[Action]:
    """A secondary object's actions; `sequence`: two in turn (one action leaves two kinds free)."""
    if sequence:
        kinds = _free_kinds(rng, 2, used)
        mid = num_frames // 2
        spans = [(1, mid - 1), (mid + 1, num_frames - 1)]
        return [_action(rng, k, s, e, scale, used) for k, (s, e) in zip(kinds, spans, strict=True)]
    if rng.random() >= (0.7 if position == 1 else 0.35):
        return []
    kinds = _free_kinds(rng, 1, used)
    length = int(rng.integers(int(0.4 * num_frames), int(0.8 * num_frames) + 1))
    start = int(rng.integers(0, max(1, num_frames - 1 - length)))
    return [_action(rng, kinds[0], start, min(num_frames - 1, start + length), scale, used)]


def _free_kinds(rng, n: int, used: set[str]) -> list[str]:
    """Action kinds that still have a key no other object uses."""
    free = {
        "move": any(f"move:{d}" not in used for d in DIRECTIONS),
        "spin": any(f"spin:{r}" not in used for r in ROTATIONS),
        "bounce": "bounce" not in used,
    }
    kinds = [k for k in ACTION_KINDS if free[k]]
    return [str(k) for k in rng.choice(kinds, min(n, len(kinds)), replace=False)]


def _action(rng, kind: str, start: int, end: int, scale: float, used: set[str]) -> Action:
    span = end - start
    if kind == "move":
        direction = str(rng.choice([d for d in DIRECTIONS if f"move:{d}" not in used]))
        action = Action(kind="move", start_frame=start, end_frame=end, direction=direction,
                        distance=float(rng.uniform(60, 95) * scale))
    elif kind == "spin":
        free = [r for r in ROTATIONS if f"spin:{r}" not in used]
        # At most ~24 degrees a frame, so square and star symmetries never make a spin look backwards.
        turns = 2 if span >= 30 and rng.random() < 0.5 else 1
        action = Action(kind="spin", start_frame=start, end_frame=end, direction=str(rng.choice(free)), turns=turns)
    else:
        most = max(1, min(4, span // MIN_FRAMES_PER_BOUNCE))
        action = Action(kind="bounce", start_frame=start, end_frame=end,
                        count=int(rng.integers(min(2, most), most + 1)), height=float(rng.uniform(28, 42) * scale))
    used.add(action.key)
    return action


def _place(rng, spec: SceneSpec, obj: SceneObject, placed: list[SceneObject], tries: int = 60) -> SceneObject:
    """Pick a start so the object stays in frame all clip long and starts clear of the others.

    Moves and hops shrink when no start fits; if none fits even then, the last candidate is kept
    (the object may leave the frame: ground truth records only the frames where it is visible).
    """
    t = np.arange(spec.num_frames)
    candidate = obj
    for shrink in (1.0, 0.75, 0.55, 0.4):
        actions = [a.model_copy(update={"distance": a.distance * shrink, "height": a.height * shrink})
                   for a in obj.actions]
        for _ in range(tries):
            x = float(rng.uniform(0, spec.width))
            y = float(rng.uniform(0, spec.height))
            candidate = obj.model_copy(update={"x": x, "y": y, "actions": actions})
            if _stays_in_frame(spec, candidate, t) and _clear_of(spec, candidate, placed):
                return candidate
    return candidate


def _stays_in_frame(spec: SceneSpec, obj: SceneObject, t: np.ndarray, margin: float = 2.0) -> bool:
    sx, sy, _, zoom = spec.screen_pose(obj, t)
    reach = EXTENT * obj.radius * zoom + margin
    return bool(np.all((sx >= reach) & (sx <= spec.width - reach) & (sy >= reach) & (sy <= spec.height - reach)))


def _clear_of(spec: SceneSpec, obj: SceneObject, placed: list[SceneObject]) -> bool:
    zero = np.zeros(1)
    x, y, _, _ = spec.screen_pose(obj, zero)
    for other in placed:
        ox, oy, _, _ = spec.screen_pose(other, zero)
        if np.hypot(x - ox, y - oy)[0] < EXTENT * (obj.radius + other.radius) + 4:
            return False
    return True


def scene_from_metadata(metadata: str | None) -> SceneSpec:
    """The scene a virtual clip row carries in `metadata` ({"virtual": spec}); ValueError if none.

    pydantic's ValidationError is a ValueError, so one except clause covers every bad input.
    """
    import json

    if not metadata:
        raise ValueError("the clip has no metadata")
    try:
        payload = json.loads(metadata)
    except json.JSONDecodeError as err:
        raise ValueError(f"metadata is not JSON: {err}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("virtual"), dict):
        raise ValueError('metadata has no "virtual" scene object')
    return SceneSpec.model_validate(payload["virtual"])
