"""MotionBench-style multiple-choice questions written from scene metadata, correct by construction.

One question per category per clip, where the scene supports it:
- MR (motion recognition): which kind of motion an object makes (moves in a straight line, spins
  clockwise / counterclockwise, bounces, stays still). For an object with two actions only two
  kinds are left that it does not make ("stays still" is never a distractor for a mover, since a
  mover is still before and after its action), so a motion the renderer never makes fills the
  fourth option.
- LM (location-related motion): the direction an object moves across the background; in a scene
  where nothing translates, where one object ends up relative to another (asked only for a pair
  clearly separated along one axis; otherwise skipped).
- CM (camera motion): always asked; a static camera answers "stays still".
- MO (motion-related objects): which object makes a given action (the scene sampler guarantees no
  two objects share an action). Distractors are the other visible objects, then absent objects that
  share a colour or a shape with the answer. Skipped when nothing moves.
- AO (action order): the order of an object's two actions. Skipped when no object has two.
- RC (repetition count): how many times an object bounces. Skipped when nothing bounces (a spin's
  turn count is not asked: a symmetric shape's full turn is not countable by eye).

Every choice (target object, distractors, option order) comes from a generator seeded by
(seed, clip, category), so a question is the same run after run; where the correct option of a
four-option question finally stands is decided by the template writer's letter rotation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import permutations

from agents.virtual.captions import MOVE_PHRASES, TIMES
from agents.virtual.scene import COLOURS, DIRECTIONS, ROTATIONS, SHAPES, Action, SceneObject, SceneSpec
from schemas import stable_id

TEMPLATE_VERSION = "motion-templates-1"
LETTERS = "ABCD"

MOVES_STRAIGHT = "moves in a straight line"
BOUNCES = "bounces up and down"
STAYS_STILL = "stays still"
MOTION_KINDS = (MOVES_STRAIGHT, "spins clockwise", "spins counterclockwise", BOUNCES, STAYS_STILL)
# Motions the renderer never makes: distractors only when a two-action mover leaves too few others.
NEVER_KINDS = ("moves in a circle", "shakes from side to side")
DIRECTION_PHRASES = {
    "left": "to the left",
    "right": "to the right",
    "up": "upward",
    "down": "downward",
    "up-left": "up and to the left",
    "up-right": "up and to the right",
    "down-left": "down and to the left",
    "down-right": "down and to the right",
}
CAMERA_OPTIONS = ("stays still", "pans left", "pans right", "pans up", "pans down", "zooms in", "zooms out")


@dataclass(frozen=True)
class TemplateQuestion:
    category: str
    question: str
    options: list[str]
    answer: str
    object_indices: list[int] = field(default_factory=list)
    evidence: str = ""


@dataclass(frozen=True)
class _Draft:
    question: str
    correct: str
    distractors: list[str]
    object_indices: list[int]
    evidence: str


def motion_kind(action: Action) -> str:
    if action.kind == "move":
        return MOVES_STRAIGHT
    if action.kind == "spin":
        return f"spins {action.direction}"
    return BOUNCES


def action_name(action: Action) -> str:
    """An action without its amount: 'moves left', 'spins clockwise', 'bounces up and down'."""
    return MOVE_PHRASES[action.direction] if action.kind == "move" else motion_kind(action)


def template_questions(
    spec: SceneSpec, seed: int, clip_key: str, visible: set[int] | None = None, categories=None
) -> list[TemplateQuestion]:
    """The clip's questions; `visible` limits them to objects seen in the sampled frames."""
    objects = [o for o in spec.objects if visible is None or o.index in visible]
    out = []
    for category in categories or WRITERS:
        rng = random.Random(int(stable_id("template", TEMPLATE_VERSION, seed, clip_key, str(category)), 16))
        draft = WRITERS[str(category)](spec, objects, rng)
        if draft is not None:
            out.append(_finish(str(category), draft, rng))
    return out


def _finish(category: str, draft: _Draft, rng: random.Random) -> TemplateQuestion:
    options = [draft.correct, *draft.distractors]
    if len(set(options)) != len(options) or len(options) != 4:
        raise ValueError(f"{category}: options must be 4 distinct strings, got {options}")
    rng.shuffle(options)
    return TemplateQuestion(
        category=category, question=draft.question, options=options,
        answer=LETTERS[options.index(draft.correct)], object_indices=draft.object_indices,
        evidence=draft.evidence,
    )


def _pick(rng: random.Random, pool, k: int) -> list:
    pool = sorted(set(pool))
    return rng.sample(pool, min(k, len(pool)))


def _mr(spec: SceneSpec, objects: list[SceneObject], rng: random.Random) -> _Draft | None:
    if not objects:
        return None
    obj = rng.choice(objects)
    kinds = {motion_kind(a) for a in obj.actions}
    correct = motion_kind(rng.choice(obj.actions)) if obj.actions else STAYS_STILL
    excluded = kinds | {STAYS_STILL} if obj.actions else {STAYS_STILL}
    pool = [k for k in MOTION_KINDS if k not in excluded]
    distractors = _pick(rng, pool, 3)
    distractors += _pick(rng, NEVER_KINDS, 3 - len(distractors))
    return _Draft(f"Which motion does the {obj.label} make in the scene?", correct, distractors,
                  [obj.index], f"{obj.label}: {', '.join(sorted(kinds)) or STAYS_STILL}")


def _lm(spec: SceneSpec, objects: list[SceneObject], rng: random.Random) -> _Draft | None:
    movers = [(o, a) for o in objects for a in o.actions if a.kind == "move"]
    if movers:
        obj, action = rng.choice(movers)
        correct = DIRECTION_PHRASES[action.direction]
        distractors = _pick(rng, [p for d, p in DIRECTION_PHRASES.items() if d != action.direction], 3)
        return _Draft(f"In which direction does the {obj.label} move across the background?", correct,
                      distractors, [obj.index], f"{obj.label}: {action_name(action)}")
    return _relative_position(spec, objects, rng)


def _relative_position(spec: SceneSpec, objects: list[SceneObject], rng: random.Random) -> _Draft | None:
    last = spec.num_frames - 1
    pairs = []
    for a, b in permutations(objects, 2):
        relation = _relation(a, b, last)
        if relation:
            pairs.append((a, b, relation))
    if not pairs:
        return None
    a, b, relation = rng.choice(pairs)
    options = [f"{r} the {b.label}" for r in ("to the left of", "to the right of", "above", "below")]
    correct = f"{relation} the {b.label}"
    return _Draft(f"At the end of the video, where is the {a.label} relative to the {b.label}?", correct,
                  [o for o in options if o != correct], [a.index, b.index], f"final positions: {a.label} {correct}")


def _relation(a: SceneObject, b: SceneObject, frame: int) -> str | None:
    """Where a is relative to b, only when clearly separated along one axis."""
    ax, ay, _ = (float(v[0]) for v in a.pose([frame]))
    bx, by, _ = (float(v[0]) for v in b.pose([frame]))
    dx, dy = ax - bx, ay - by
    gap = a.radius + b.radius
    if abs(dx) >= 2 * abs(dy) and abs(dx) >= gap:
        return "to the left of" if dx < 0 else "to the right of"
    if abs(dy) >= 2 * abs(dx) and abs(dy) >= gap:
        return "above" if dy < 0 else "below"
    return None


def _cm(spec: SceneSpec, objects: list[SceneObject], rng: random.Random) -> _Draft | None:
    cam = spec.camera
    correct = "stays still" if cam.motion == "static" else f"{'pans' if cam.motion == 'pan' else 'zooms'} {cam.direction}"
    distractors = _pick(rng, [o for o in CAMERA_OPTIONS if o != correct], 3)
    return _Draft("How does the camera move during the video?", correct, distractors, [], f"camera {correct}")


def _mo(spec: SceneSpec, objects: list[SceneObject], rng: random.Random) -> _Draft | None:
    candidates = [(o, a) for o in objects for a in o.actions if _unique_key(spec, o, a)]
    if not candidates:
        return None
    obj, action = rng.choice(candidates)
    correct = f"the {obj.label}"
    others = [f"the {o.label}" for o in objects if o.index != obj.index]
    distractors = _pick(rng, others, 3)
    present = {o.label for o in spec.objects}
    absent = [f"the {c} {s}" for c in COLOURS for s in SHAPES
              if f"{c} {s}" not in present and (c == obj.colour or s == obj.shape)]
    distractors += _pick(rng, absent, 3 - len(distractors))
    return _Draft(f"Which object {action_name(action)}?", correct, distractors, [obj.index],
                  f"{obj.label}: {action_name(action)}")


def _unique_key(spec: SceneSpec, obj: SceneObject, action: Action) -> bool:
    return all(a.key != action.key for o in spec.objects if o.index != obj.index for a in o.actions)


def _ao(spec: SceneSpec, objects: list[SceneObject], rng: random.Random) -> _Draft | None:
    sequences = [o for o in objects if len(o.actions) >= 2]
    if not sequences:
        return None
    obj = rng.choice(sequences)
    first, second = (action_name(a) for a in sorted(obj.actions, key=lambda a: a.start_frame)[:2])
    correct = f"{first}, then {second}"
    pool = [f"{x}, then {second}" for x in _alternatives(first, second)]
    pool += [f"{first}, then {y}" for y in _alternatives(second, first)]
    pool += [f"{second}, then {x}" for x in _alternatives(first, second)]
    distractors = [f"{second}, then {first}"] + _pick(rng, [p for p in pool if p != correct], 2)
    return _Draft(f"In what order does the {obj.label} perform its actions?", correct, distractors,
                  [obj.index], f"{obj.label}: {correct}")


def _alternatives(name: str, other: str) -> list[str]:
    """Action names a viewer could confuse with `name`, never `name` or `other` themselves."""
    names = [MOVE_PHRASES[d] for d in DIRECTIONS] + [f"spins {r}" for r in ROTATIONS] + [BOUNCES]
    return [n for n in names if n not in (name, other)]


def _rc(spec: SceneSpec, objects: list[SceneObject], rng: random.Random) -> _Draft | None:
    bouncers = [(o, a) for o in objects for a in o.actions if a.kind == "bounce"]
    if not bouncers:
        return None
    obj, action = rng.choice(bouncers)
    low = rng.randint(max(1, action.count - 3), min(action.count, max(TIMES) - 3))
    counts = range(low, low + 4)
    return _Draft(f"How many times does the {obj.label} bounce?", TIMES[action.count],
                  [TIMES[n] for n in counts if n != action.count], [obj.index], f"{obj.label}: bounces {action.count}")


WRITERS = {"MR": _mr, "LM": _lm, "CM": _cm, "MO": _mo, "AO": _ao, "RC": _rc}
