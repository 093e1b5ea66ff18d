"""Captions written from scene metadata: the motion caption (ground truth) and the raw scene
description an Analyzer reads as the clip's caption."""

from __future__ import annotations

from agents.virtual.scene import Action, SceneObject, SceneSpec

MOVE_PHRASES = {
    "left": "moves left",
    "right": "moves right",
    "up": "moves up",
    "down": "moves down",
    "up-left": "moves up and to the left",
    "up-right": "moves up and to the right",
    "down-left": "moves down and to the left",
    "down-right": "moves down and to the right",
}
TIMES = {1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times", 6: "six times", 7: "seven times"}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}


def times(n: int) -> str:
    return TIMES.get(n, f"{n} times")


def action_phrase(action: Action) -> str:
    """'moves left', 'spins clockwise twice', 'bounces three times'."""
    if action.kind == "move":
        return MOVE_PHRASES[action.direction]
    if action.kind == "spin":
        return f"spins {action.direction} {times(action.turns)}"
    return f"bounces {times(action.count)}"


def camera_phrase(spec: SceneSpec) -> str:
    cam = spec.camera
    if cam.motion == "pan":
        return f"the camera pans {cam.direction}"
    if cam.motion == "zoom":
        return f"the camera zooms {cam.direction}"
    return "the camera stays still"


def _object_clause(obj: SceneObject) -> str:
    actions = sorted(obj.actions, key=lambda a: a.start_frame)
    return f"the {obj.label} " + ", then ".join(action_phrase(a) for a in actions)


def motion_caption(spec: SceneSpec) -> str:
    """One sentence of what moves, in time order, and what the camera does.

    'The red circle moves left, then the blue square spins clockwise twice while the camera
    pans right.' Objects whose actions start after the previous object's end are joined by
    'then', overlapping ones by 'and'; still objects get a closing sentence.
    """
    movers = sorted((o for o in spec.objects if o.actions), key=lambda o: (min(a.start_frame for a in o.actions), o.index))
    still = [o for o in spec.objects if not o.actions]
    if movers:
        text = _object_clause(movers[0])
        for previous, current in zip(movers, movers[1:], strict=False):
            after = min(a.start_frame for a in current.actions) >= max(a.end_frame for a in previous.actions)
            text += (", then " if after else ", and ") + _object_clause(current)
        camera = camera_phrase(spec)
        text += (" while " + camera if spec.camera.motion != "static" else "; " + camera) + "."
    else:
        text = f"Nothing moves in the scene; {camera_phrase(spec)}."
    if still:
        names = _join([f"the {o.label}" for o in still])
        text += f" {names[0].upper()}{names[1:]} {'stays' if len(still) == 1 else 'stay'} still."
    return text[0].upper() + text[1:]


def scene_description(spec: SceneSpec) -> str:
    """The raw caption of a virtual clip: which objects are there, then what happens."""
    seconds = spec.num_frames / spec.fps
    count = NUMBER_WORDS.get(len(spec.objects), str(len(spec.objects)))
    things = _join([f"a {o.size} {o.label}" for o in spec.objects])
    return (
        f"A {seconds:.0f}-second rendered clip of {count} flat coloured shapes on a checkered, "
        f"textured background: {things}. {motion_caption(spec)}"
    )


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
