"""A synthetic diving dataset whose videos determine their labels (the quickstart's data and
the tests'; `python -m tfrecords_tools.synthesize` writes it from the command line).

Each video shows a rendered diver on a platform (standing, or in a handstand for armstand
dives), taking off, flying a parabola while somersaulting (number of half somersaults ->
`ss_no`) and twisting (the body's front/back colour alternates and its width oscillates once
per half twist -> `tw_no`) in a straight, tuck or pike shape (`position`), facing the water or
the platform and rotating one way or the other (`rotation_type`: inward, reverse, backward,
forward), then entering the water with a splash. Execution (0..10) is lowered by the splash
size, the entry angle and the body's wobble in flight; `final_score = difficulty x execution x 3`
(three judges' awards times the degree of difficulty, as in real judging). A templated
commentary describes the dive with a small fixed vocabulary.

Two opt-in options (`SyntheticDataConfig`; off, the records are those of the generator before
them) serve procedure-aware and exemplar-based methods (TSA: Xu et al., CVPR 2022, FineDiving;
CoRe): `steps` draws each dive's timing (how long it stands on the platform, flies and
splashes) and writes its three steps, 0 take-off, 1 flight, 2 entry, in FineDiving's record
keys (`dive_steps`); `dive_types=N` restricts the dives to N dive numbers (`dive_type_pool`),
each then shared by many samples, and writes the dive number. What the score rests on is
visible in the steps: the splash (most of the execution) in the entry, the entry angle and the
wobble in the flight, as are the somersaults, twists and position of the difficulty; the take-off
shows the start pose (armstand) and the facing (with the flight's spin, the rotation type).

`tfrecords_tools.synthesize --format=mtl_aqa_raw` writes the same dives as event videos (.mp4),
extracted frames and annotation pickles in the real MTL-AQA layout instead, to exercise the
real-data converter end to end.

`write_aqa7_tree` renders the same athlete as six AQA-7 actions (paper 003), each with its own
colours, direction, number of athletes, video length and score range, in the AQA-7 release
layout (frames + Split_4 .mat files) for `tfrecords_tools.aqa7`.

`write_jigsaws_tree` writes a tiny JIGSAWS release (AVI videos of a trembling tool tip whose
steadiness follows the trial's GRS labels, meta files, the authors' label.pkl and 4-fold
splits.pkl) for `tfrecords_tools.jigsaws`.

The record format (`aqa_tf.data.features`, which needs TensorFlow) is imported by the functions
that encode, so `SyntheticDataConfig` (a flag group of every command) imports without it.
"""

import dataclasses
import functools
import hashlib
import itertools
import json
import os
from typing import Iterator, List, Optional, Tuple

import numpy as np

from aqa_tf.config import Config, ConfigError, option
from aqa_tf.data import aqa7 as _aqa7
from aqa_tf.data import jigsaws as _jigsaws
from aqa_tf.data import captions
from aqa_tf.data import shards

NUM_POSITIONS, NUM_ARMSTAND, NUM_ROTATION_TYPES, NUM_SS, NUM_TW = 3, 2, 4, 10, 8
POSITION_NAMES = ("straight", "tuck", "pike")  # class ids 0, 1, 2 (MTL-AQA: free, tuck, pike)
ROTATION_NAMES = ("inward", "reverse", "backward", "forward")
# (faces the water at take-off, rotates towards the face) per rotation type.
_ROTATION_GEOMETRY = {0: (False, True), 1: (True, False), 2: (False, False), 3: (True, True)}
# Realistic-ish class frequencies (MTL-AQA is dominated by 2.5 and 3.5 somersaults).
_SS_PROBS = np.array([0.03, 0.03, 0.06, 0.10, 0.16, 0.22, 0.10, 0.20, 0.05, 0.05])
_TW_PROBS = np.array([0.55, 0.06, 0.10, 0.12, 0.06, 0.06, 0.03, 0.02])
_HALF_WORDS = ("no", "a half", "one", "one and a half", "two", "two and a half", "three",
               "three and a half", "four", "four and a half")

SYNTHETIC_WORDS = sorted(set(
    " ".join(_HALF_WORDS).split() + list(POSITION_NAMES) + list(ROTATION_NAMES) +
    ("a an the from handstand somersaults twists twist in position with and on entry dive "
     "splash big small almost no rip clean vertical slightly over under rotated short "
     "steady loose air little very tight excellent good poor average judges will like "
     "that this is it was he she takes off armstand start").split()))


def synthetic_vocabulary() -> captions.Vocabulary:
    return captions.Vocabulary.from_words(SYNTHETIC_WORDS)


@dataclasses.dataclass
class DiveSpec:
    """Labels of one synthetic dive and the parameters that render them."""

    position: int
    armstand: int
    rotation_type: int
    ss_no: int
    tw_no: int
    difficulty: float
    execution: float
    final_score: float
    splash_size: float   # 0 (rip entry) .. 1 (huge splash)
    entry_angle: float   # radians off vertical at entry
    wobble: float        # radians of body wobble in flight
    sky_tint: float
    water_tint: float
    entry_x: float       # fraction of the width where the diver enters


def difficulty_of(ss_no: int, tw_no: int, position: int, armstand: int) -> float:
    """Degree of difficulty: more somersaults and twists, straight body and armstand score more."""
    dd = 1.6 + 0.15 * ss_no + 0.1 * tw_no + (0.2, 0.0, 0.1)[position] + 0.2 * armstand
    return float(np.round(min(dd, 4.1), 1))


def sample_dive_spec(rng: np.random.Generator) -> DiveSpec:
    ss_no = int(rng.choice(NUM_SS, p=_SS_PROBS))
    tw_no = int(rng.choice(NUM_TW, p=_TW_PROBS))
    position = int(rng.integers(NUM_POSITIONS))
    armstand = int(rng.random() < 0.25)
    rotation_type = int(rng.integers(NUM_ROTATION_TYPES))
    splash = float(rng.random())
    angle = float(rng.uniform(-0.6, 0.6))
    wobble = float(rng.uniform(0.0, 0.35))
    # Execution: the splash dominates, then the entry angle and the wobble.
    execution = 9.8 - 6.0 * splash - 1.0 * abs(angle) / 0.6 - 0.5 * wobble / 0.35
    execution = float(np.clip(np.round(execution * 2) / 2, 0.0, 10.0))  # judges award halves
    difficulty = difficulty_of(ss_no, tw_no, position, armstand)
    return DiveSpec(position, armstand, rotation_type, ss_no, tw_no, difficulty, execution,
                    float(np.round(difficulty * execution * 3, 2)), splash, angle, wobble,
                    float(rng.uniform(-0.08, 0.08)), float(rng.uniform(-0.08, 0.08)),
                    float(rng.uniform(0.5, 0.64)))


# FINA dive codes: group digit per rotation type (inward, reverse, backward, forward) and
# position letter per position (straight, tuck, pike).
_FINA_GROUPS = (4, 3, 2, 1)
_FINA_POSITIONS = ("A", "C", "B")


def dive_number_of(spec: DiveSpec) -> str:
    """The FINA-style dive code of a synthetic dive, as the CoRe annotations give it: group,
    flying digit 0, half somersaults, position ('407C'); twisting dives '5' + group, half
    somersaults, half twists ('5253B'); armstand dives '6' + group, half somersaults (+ half
    twists) ('626C'). The codes read like real ones; they are not checked against FINA's table.
    """
    group = _FINA_GROUPS[spec.rotation_type]
    twists = str(spec.tw_no) if spec.tw_no else ""
    if spec.armstand:
        digits = f"6{group}{spec.ss_no}{twists}"
    elif spec.tw_no:
        digits = f"5{group}{spec.ss_no}{twists}"
    else:
        digits = f"{group}0{spec.ss_no}"
    return digits + _FINA_POSITIONS[spec.position]


def judge_scores_of(spec: DiveSpec, rng: np.random.Generator) -> List[float]:
    """Seven judges' awards consistent with the dive's final score: each on the 0.5 grid in
    0..10, and the 3 middle ones (2 highest and 2 lowest dropped) sum to 3 x execution, so the
    judging rule gives `final_score` (to its 0.01 rounding). In panel order (shuffled)."""
    e = spec.execution
    spread = 0.5 if 0.5 <= e <= 9.5 and rng.random() < 0.5 else 0.0
    middle = [e - spread, e, e + spread]
    low = [max(0.0, middle[0] - 0.5 * int(k)) for k in rng.integers(0, 3, 2)]
    high = [min(10.0, middle[2] + 0.5 * int(k)) for k in rng.integers(0, 3, 2)]
    return [float(v) for v in rng.permutation(low + middle + high)]


# (position, armstand, rotation_type, ss_no, tw_no): every class combination is a dive number
# of its own (`dive_number_of` is one-to-one on them).
DiveType = Tuple[int, int, int, int, int]
_DIVE_TYPES = list(itertools.product(range(NUM_POSITIONS), range(NUM_ARMSTAND),
                                     range(NUM_ROTATION_TYPES), range(NUM_SS), range(NUM_TW)))
NUM_DIVE_TYPES = len(_DIVE_TYPES)  # 1920


@functools.lru_cache(maxsize=16)
def dive_type_pool(seed: int, count: int) -> Tuple[DiveType, ...]:
    """The `count` dive types a dataset with `dive_types=count` draws its dives from: distinct
    class combinations drawn without replacement with `sample_dive_spec`'s class frequencies
    (common dives first, as in competition), one pool per seed, shared by the splits so that a
    test dive has training dives of its number."""
    if not 1 <= count <= NUM_DIVE_TYPES:
        raise ValueError(f"count={count}: expected 1..{NUM_DIVE_TYPES} dive types")
    types = np.array(_DIVE_TYPES)
    p = (_SS_PROBS[types[:, 3]] * _TW_PROBS[types[:, 4]]
         * np.where(types[:, 1] == 1, 0.25, 0.75))  # armstand: `rng.random() < 0.25`
    rng = np.random.default_rng(_sample_seed(seed, "dive_types", count))
    chosen = rng.choice(len(types), size=count, replace=False, p=p / p.sum())
    return tuple(tuple(int(v) for v in types[i]) for i in chosen)


def with_dive_type(spec: DiveSpec, dive_type: DiveType) -> DiveSpec:
    """`spec` with the classes of `dive_type` and the difficulty and score that follow; its
    execution (splash, entry angle, wobble) is kept."""
    position, armstand, rotation_type, ss_no, tw_no = dive_type
    difficulty = difficulty_of(ss_no, tw_no, position, armstand)
    return dataclasses.replace(
        spec, position=position, armstand=armstand, rotation_type=rotation_type, ss_no=ss_no,
        tw_no=tw_no, difficulty=difficulty,
        final_score=float(np.round(difficulty * spec.execution * 3, 2)))


def _body_segments(position: int, length: float):
    """Capsules `(x0, y0, x1, y1, thickness)` of the body in its own frame: head at +y, the
    front of the body towards +x. Returns (segments, head centre)."""
    l = length
    if position == 0:    # straight
        segs = [(0, 0.5 * l, 0, -0.5 * l, 0.16 * l)]
        head = (0.0, 0.62 * l)
    elif position == 1:  # tuck: short torso, thighs to the chest, shins folded back
        segs = [(0, 0.25 * l, 0, -0.15 * l, 0.2 * l), (0, -0.15 * l, 0.3 * l, 0.05 * l, 0.15 * l),
                (0.3 * l, 0.05 * l, 0.05 * l, -0.2 * l, 0.13 * l)]
        head = (0.03 * l, 0.37 * l)
    else:                # pike: torso and straight legs folded at the hips
        segs = [(0, 0.4 * l, 0, -0.05 * l, 0.16 * l), (0, -0.05 * l, 0.45 * l, 0.15 * l, 0.14 * l)]
        head = (0.0, 0.52 * l)
    return np.array(segs, np.float32), np.array(head, np.float32)


def _capsule_alpha(px, py, seg):
    """Anti-aliased coverage of capsules. px, py: `[H, W]`; seg: `[N, S, 5]` -> `[N, H, W]`."""
    x0, y0, x1, y1, th = [seg[..., i][..., None, None] for i in range(5)]
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((px - x0) * dx + (py - y0) * dy) / np.maximum(dx * dx + dy * dy, 1e-6), 0, 1)
    dist = np.hypot(px - (x0 + t * dx), py - (y0 + t * dy))
    return np.clip(th / 2 - dist + 0.5, 0, 1).max(axis=1)


def _background(spec: DiveSpec, px, py, scene: "_Scene") -> np.ndarray:
    """Sky gradient, platform and water: float `[H, W, 3]`."""
    H = px.shape[0]
    sky = np.array([0.55, 0.75, 0.95]) + spec.sky_tint
    water = np.array([0.1, 0.35, 0.65]) + spec.water_tint
    grad = (py / H)[..., None]
    bg = np.where((py < scene.water_y)[..., None], sky * (1 - 0.3 * grad),
                  water * (1.1 - 0.2 * grad))
    platform = (px < scene.platform_x) & (py > scene.platform_y) & (
        py < scene.platform_y + 0.06 * H)
    return np.where(platform[..., None], np.array([0.6, 0.6, 0.6]), bg)


@dataclasses.dataclass
class _Scene:
    """Where things are in the image (pixels) and when they happen (frame indices)."""
    water_y: float
    platform_y: float
    platform_x: float
    length: float      # the diver's height
    takeoff: int
    entry: int
    splash_len: int


@dataclasses.dataclass
class _Motion:
    """Per-frame state of the diver, each `[T]`."""
    s: np.ndarray          # flight progress, 0 before take-off, 1 from entry on
    theta: np.ndarray      # body angle
    cx: np.ndarray         # body centre
    cy: np.ndarray
    facing: float          # +1: the diver faces the water side (+x)
    x_entry: float


@dataclasses.dataclass(frozen=True)
class StepTiming:
    """How long a dive flies and splashes, as fractions of its action (`end_index + 1`
    frames); it stands on the platform for the rest."""

    flight: float
    splash: float


# About a quarter of the action on the platform (the start pose tells armstand dives), half
# in flight, a fifth in the splash: every dive's timing without `steps`.
FIXED_TIMING = StepTiming(flight=0.52, splash=0.2)
# With `steps`, per dive: 12..48% on the platform (FIXED_TIMING: 28%).
_FLIGHT_RANGE, _SPLASH_RANGE = (0.4, 0.6), (0.12, 0.28)


def sample_step_timing(rng: np.random.Generator) -> StepTiming:
    return StepTiming(flight=float(rng.uniform(*_FLIGHT_RANGE)),
                      splash=float(rng.uniform(*_SPLASH_RANGE)))


def _scene(num_frames: int, height: int, width: int, end_index: int,
           timing: StepTiming = FIXED_TIMING) -> _Scene:
    action = min(num_frames, end_index + 1)
    splash_len = max(4, int(round(timing.splash * action)))
    entry = end_index - splash_len
    takeoff = max(1, entry - max(6, int(round(timing.flight * action))))
    return _Scene(water_y=0.86 * height, platform_y=0.5 * height, platform_x=0.36 * width,
                  length=0.45 * height, takeoff=takeoff, entry=entry, splash_len=splash_len)


def _motion(spec: DiveSpec, scene: _Scene, num_frames: int, height: int, width: int,
            rng: np.random.Generator) -> _Motion:
    t = np.arange(num_frames, dtype=np.float32)
    s = np.clip((t - scene.takeoff) / max(scene.entry - scene.takeoff, 1), 0, 1)
    faces_water, towards_face = _ROTATION_GEOMETRY[spec.rotation_type]
    facing = 1.0 if faces_water else -1.0       # +x is the water side
    spin = facing * (1.0 if towards_face else -1.0)
    start_angle = np.pi if spec.armstand else 0.0
    # Rotation (image y grows downwards, so a positive angle turns the head towards +x). Odd
    # half somersaults enter head first, even ones feet first; both vertical but for the
    # entry-angle fault.
    theta = start_angle + spin * spec.ss_no * np.pi * s + spec.entry_angle * s
    wobble = spec.wobble * np.sin(2 * np.pi * 3 * s + rng.uniform(0, 6.28)) * np.sin(np.pi * s)
    theta = theta + wobble
    # On the platform the diver leans towards the side it faces (the water for forward and
    # reverse dives, the platform for backward and inward ones): the start pose shows the facing.
    theta = theta + np.where(t < scene.takeoff, 0.35 * facing, 0.0)
    # Trajectory: standing at the platform edge, parabola, entry.
    length = scene.length
    x_start, x_entry = scene.platform_x - 0.3 * length, spec.entry_x * width
    y_start = scene.platform_y - 0.55 * length
    cx = x_start + (x_entry - x_start) * s
    peak = 0.5 * (y_start - 0.1 * height)
    cy = y_start + (scene.water_y + 0.3 * length - y_start) * s - 4 * peak * s * (1 - s)
    return _Motion(s=s, theta=theta, cx=cx, cy=cy, facing=facing, x_entry=x_entry)


def _body_shape(spec: DiveSpec, length: float, on_platform: bool, s: float):
    """Capsules `[S, 5]` and head `[2]` in the body frame: straight on the platform and at
    entry, the dive's shape in between; an armstand starts upside down on the hands with the
    legs in a V (head at +y in the body frame, so the legs are at -y)."""
    if on_platform and spec.armstand:
        l = length
        segs = np.array([(0, 0.5 * l, 0, 0.0, 0.16 * l),
                         (0, 0.0, 0.3 * l, -0.45 * l, 0.13 * l),
                         (0, 0.0, -0.3 * l, -0.45 * l, 0.13 * l)], np.float32)
        return segs, _body_segments(0, length)[1]
    return _body_segments(spec.position if 0.1 < s < 0.85 else 0, length)


def _draw_diver(img, px, py, spec: DiveSpec, scene: _Scene, motion: _Motion, i: int):
    length = scene.length
    segs, head = _body_shape(spec, length, i < scene.takeoff, motion.s[i])
    segs = segs.copy()
    half_twist = spec.tw_no * motion.s[i]  # number of half twists done
    width_scale = 0.55 + 0.45 * abs(np.cos(np.pi * half_twist)) if spec.tw_no else 1.0
    segs[:, 4] *= width_scale * 1.6
    # The body turns its back to the camera from a quarter twist on, so that every twisting
    # dive (one half twist included) shows its back colour in the air.
    back_shown = int(half_twist + 0.5) % 2 == 1
    mirror = motion.facing * (-1 if back_shown else 1)
    c, sn = np.cos(motion.theta[i]), np.sin(motion.theta[i])

    def to_image(x, y):
        x = x * mirror
        return motion.cx[i] + c * x + sn * y, motion.cy[i] - (-sn * x + c * y)

    pts0 = to_image(segs[:, 0], segs[:, 1])
    pts1 = to_image(segs[:, 2], segs[:, 3])
    seg_img = np.stack([pts0[0], pts0[1], pts1[0], pts1[1], segs[:, 4]], -1)[None]
    alpha = _capsule_alpha(px, py, seg_img)[0]
    hx, hy = to_image(head[0], head[1])
    alpha = np.maximum(alpha, np.clip(0.1 * length - np.hypot(px - hx, py - hy) + 0.5, 0, 1))
    # A dark face and chest stripe on the front of the body show which way the diver faces
    # (with the rotation direction this tells the rotation type).
    fx0, fy0 = to_image(head[0] + 0.08 * length, head[1])
    fx1, fy1 = to_image(0.08 * length, 0.05 * length)
    stripe = np.array([[[fx0, fy0, fx1, fy1, 0.1 * length]]], np.float32)
    above = py < scene.water_y + 1  # below the surface is hidden
    face = _capsule_alpha(px, py, stripe)[0] * above
    alpha = alpha * above
    colour = np.array([0.55, 0.15, 0.45]) if back_shown else np.array([0.95, 0.55, 0.2])
    img = img * (1 - alpha[..., None]) + colour * alpha[..., None]
    return img * (1 - face[..., None]) + 0.1 * face[..., None]


def _draw_splash(img, px, py, spec: DiveSpec, scene: _Scene, x_entry: float, i: int):
    """Grows then settles; its size is the execution fault seen by judges."""
    H = px.shape[0]
    k = (i - scene.entry) / max(scene.splash_len, 1)
    radius = (0.04 + 0.3 * spec.splash_size) * H * np.sin(np.pi * min(k, 1.0) * 0.8 + 0.2)
    d = np.hypot((px - x_entry) / 1.4, (py - scene.water_y) * 1.0)
    blob = np.clip(radius - d + 0.5, 0, 1) * (py < scene.water_y + 0.05 * H)
    return img * (1 - blob[..., None]) + np.array([0.97, 0.97, 1.0]) * blob[..., None]


def render_video(spec: DiveSpec, num_frames: int, height: int, width: int, end_index: int,
                 rng: np.random.Generator, timing: StepTiming = FIXED_TIMING) -> np.ndarray:
    """Renders the dive: uint8 `[num_frames, height, width, 3]`; the dive (through the entry
    splash) ends at frame `end_index`; `timing` places its steps (`dive_steps`)."""
    py, px = np.mgrid[0:height, 0:width].astype(np.float32)
    scene = _scene(num_frames, height, width, end_index, timing)
    bg = _background(spec, px, py, scene)
    motion = _motion(spec, scene, num_frames, height, width, rng)
    frames = np.empty((num_frames, height, width, 3), np.float32)
    for i in range(num_frames):
        img = bg.copy()
        if i <= scene.entry:  # on the platform or in flight
            img = _draw_diver(img, px, py, spec, scene, motion, i)
        if i > scene.entry:
            img = _draw_splash(img, px, py, spec, scene, motion.x_entry, i)
        frames[i] = img
    frames += rng.normal(0, 0.015, frames.shape)
    return (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)


STEP_NAMES = ("take-off", "flight", "entry")  # step labels 0, 1, 2


def dive_steps(num_frames: int, end_index: int,
               timing: StepTiming = FIXED_TIMING) -> Tuple[np.ndarray, List[int]]:
    """The steps of the dive `render_video` draws with these arguments, from the frame numbers
    it draws with (`_scene`): 0 take-off, the frames before `takeoff`, where the diver stands
    still in its start pose on the platform; 1 flight, from `takeoff` (the pose straightens and
    the diver moves from then on) through `entry` (the last frame that shows the diver, at the
    water); 2 entry, the splash, from `entry + 1` to the last frame.

    Returns:
      (int64 `[num_frames]` step label per frame, transitions `[2]`): the last frame of the
      take-off and of the flight. FineDiving's convention: in 2993 of its 3000 annotated dives
      `steps_transit_frames` is the frame before the next step's first, and the authors'
      loader (`datasets/FineDiving_Pair.py`, `load_video`) gives TSA `first frame - 1` too.
    """
    scene = _scene(num_frames, 1, 1, end_index, timing)
    t = np.arange(num_frames)
    labels = np.where(t < scene.takeoff, 0, np.where(t <= scene.entry, 1, 2)).astype(np.int64)
    return labels, [scene.takeoff - 1, scene.entry]


def caption_words(spec: DiveSpec, rng: np.random.Generator) -> List[str]:
    words = []
    if spec.armstand:
        words += "from a handstand".split()
    words += ["a", ROTATION_NAMES[spec.rotation_type]] + _HALF_WORDS[spec.ss_no].split()
    words += ["somersaults"]
    if spec.tw_no:
        words += ["with"] + _HALF_WORDS[spec.tw_no].split() + ["twists"]
    words += ["in", "the", POSITION_NAMES[spec.position], "position"]
    if spec.position == 1 and spec.wobble < 0.15:
        words += ["very", "tight"]
    words += ["steady", "in", "the", "air"] if spec.wobble < 0.15 else ["a", "little", "loose",
                                                                       "in", "the", "air"]
    if spec.splash_size < 0.2:
        words += rng.choice(["rip entry almost no splash", "clean entry"]).split()
    elif spec.splash_size < 0.6:
        words += "small splash on entry".split()
    else:
        words += "big splash on entry".split()
    if abs(spec.entry_angle) > 0.3:
        words += ("slightly over rotated" if spec.entry_angle > 0 else "short on entry").split()
    else:
        words += ["vertical", "entry"]
    words += {True: "excellent dive", False: "good dive"}[spec.execution >= 8].split() \
        if spec.execution >= 6 else "poor dive".split()
    return words


def caption_facts(text: str) -> dict:
    """What a commentary in `caption_words`' grammar says of the dive, one value per fact:
    armstand, rotation, somersaults, twists, position, air (steady or loose), splash, entry
    angle and verdict (None where the text does not say it). For comparing a generated
    commentary with its reference fact by fact."""
    words = text.split()

    def between(first: str, last: str) -> Optional[str]:
        if first not in words or last not in words[words.index(first) + 1:]:
            return None
        start = words.index(first) + 1
        return " ".join(words[start:words.index(last, start)])

    rotation = next((w for w in words if w in ROTATION_NAMES), None)
    position = next((w for w in words if w in POSITION_NAMES), None)
    return {
        "armstand": text.startswith("from a handstand"),
        "rotation": rotation,
        "somersaults": between(rotation, "somersaults") if rotation else None,
        "twists": between("with", "twists") or "none",
        "position": position,
        "air": "steady" if "steady" in words else "loose" if "loose" in words else None,
        "splash": ("big" if "big splash" in text else "small" if "small splash" in text else
                   "clean" if "clean entry" in text or "rip entry" in text else None),
        "entry": ("over" if "over rotated" in text else "short" if "short on entry" in text
                  else "vertical" if "vertical entry" in text else None),
        "verdict": " ".join(words[-2:]) if text.endswith(" dive") else None,
    }


@dataclasses.dataclass
class SyntheticSample:
    sample_key: str
    frames: np.ndarray
    end_index: int
    labels: DiveSpec
    caption_words: List[str]
    judge_scores: List[float] = dataclasses.field(default_factory=list)  # `judge_scores_of`
    dive_number: str = ""                                                 # `dive_number_of`
    # With `steps` (`dive_steps`); empty without.
    frame_step_labels: List[int] = dataclasses.field(default_factory=list)
    step_transitions: List[int] = dataclasses.field(default_factory=list)


def _sample_seed(seed: int, split: str, index: int) -> int:
    digest = hashlib.sha256(f"{seed}:{split}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


SPLIT_EVENTS = {"train": 1, "test": 2}


def make_sample(split: str, index: int, seed: int, num_frames: int, height: int, width: int,
                jitter_margin: int = 3, steps: bool = False,
                dive_types: int = 0) -> SyntheticSample:
    """One sample; `steps` and `dive_types` as `SyntheticDataConfig`'s. Both draw from streams
    of their own, so that without them the sample is the generator's before them, and with
    them its execution, judges and tints are unchanged."""
    from aqa_tf.data import features
    rng = np.random.default_rng(_sample_seed(seed, split, index))
    spec = sample_dive_spec(rng)
    if dive_types:
        type_rng = np.random.default_rng(_sample_seed(seed, f"dive_type:{split}", index))
        pool = dive_type_pool(seed, dive_types)
        spec = with_dive_type(spec, pool[int(type_rng.integers(len(pool)))])
    end_index = num_frames - 1 - jitter_margin
    timing = FIXED_TIMING
    if steps:
        timing = sample_step_timing(np.random.default_rng(
            _sample_seed(seed, f"steps:{split}", index)))
    frames = render_video(spec, num_frames, height, width, end_index, rng, timing)
    labels, transitions = dive_steps(num_frames, end_index, timing) if steps else ([], [])
    # The judges draw from their own stream, so the rest of the sample is unchanged.
    judges_rng = np.random.default_rng(_sample_seed(seed, f"judges:{split}", index))
    return SyntheticSample(features.sample_key_for(SPLIT_EVENTS[split], index + 1), frames,
                           end_index, spec, caption_words(spec, rng),
                           judge_scores_of(spec, judges_rng), dive_number_of(spec),
                           [int(v) for v in labels], transitions)


def generate_split(split: str, num_samples: int, seed: int, num_frames: int, height: int,
                   width: int, jitter_margin: int = 3, steps: bool = False,
                   dive_types: int = 0) -> Iterator[SyntheticSample]:
    for i in range(num_samples):
        yield make_sample(split, i, seed, num_frames, height, width, jitter_margin, steps,
                          dive_types)


def _render_split(args):
    from aqa_tf.data import features
    (split, index, seed, num_frames, height, width, jitter_margin, jpeg_quality, steps,
     dive_types) = args
    sample = make_sample(split, index, seed, num_frames, height, width, jitter_margin, steps,
                         dive_types)
    return sample, [features.encode_jpeg(f, jpeg_quality) for f in sample.frames]


def to_record(sample: SyntheticSample, jpegs: List[bytes], vocab: captions.Vocabulary,
              judges: bool = False, dive_number: Optional[bool] = None) -> bytes:
    """The record of a sample; with `judges`, its judge scores and dive number too;
    `dive_number` (default: `judges`) writes the dive number alone. A sample made with `steps`
    stores them in FineDiving's keys: `frame_step_labels` one per stored frame (so
    `frame_positions` is 0..num_frames-1), `step_transitions`, and the ids 0, 1, 2 named
    `STEP_NAMES`."""
    from aqa_tf.data import features
    spec = sample.labels
    dive_number = judges if dive_number is None else dive_number
    steps = {}
    if sample.frame_step_labels:
        steps = dict(frame_step_labels=sample.frame_step_labels,
                     step_transitions=sample.step_transitions,
                     step_label_ids=list(range(len(STEP_NAMES))), step_label_names=STEP_NAMES,
                     frame_positions=list(range(len(jpegs))))
    # Plausible source-video frame numbers (1-based), as if cut from an event video.
    end_frame = 1000 + sample.end_index
    return features.serialize_sample(features.Sample(
        sample_key=sample.sample_key, frames=jpegs, height=sample.frames.shape[1],
        width=sample.frames.shape[2], final_score=spec.final_score, difficulty=spec.difficulty,
        position=spec.position, armstand=spec.armstand, rotation_type=spec.rotation_type,
        ss_no=spec.ss_no, tw_no=spec.tw_no,
        caption=vocab.encode(sample.caption_words, where=sample.sample_key),
        start_frame=end_frame - sample.end_index, end_frame=end_frame,
        end_index=sample.end_index, judge_scores=sample.judge_scores if judges else (),
        dive_number=sample.dive_number if dive_number else "", **steps))


GENERATOR_VERSION = 1
# Options added since, with their value off (the generator's output before them).
_OPT_IN = {"steps": False, "dive_types": 0}


@dataclasses.dataclass(frozen=True)
class SyntheticDataConfig(Config):
    """The synthetic dataset: it is a deterministic function of these values."""

    num_train: int = option(240, "Synthetic training samples.")
    num_test: int = option(100, "Synthetic test samples.")
    num_frames: int = option(54, "Frames per synthetic video (the dive ends jitter_margin "
                             "frames before the last).")
    height: int = option(64, "Height of synthetic frames, pixels.")
    width: int = option(86, "Width of synthetic frames, pixels.")
    seed: int = option(0, "Seed of the synthetic dataset.")
    num_shards: int = option(2, "Shards per split.")
    jitter_margin: int = option(3, "Frames stored after the annotated end frame.")
    jpeg_quality: int = option(90, "JPEG quality of the stored frames.")
    steps: bool = option(False, "Vary each dive's take-off and entry frames and store its "
                         "steps (0 take-off, 1 flight, 2 entry) per frame, with the step "
                         "transitions, as FineDiving records do (TSA).")
    dive_types: int = option(0, "Draw the dives from this many dive numbers only (so that "
                             "each has many samples, for exemplars of the same dive number) "
                             "and store the dive number; 0: any dive.")

    def check(self):
        if self.num_frames < 20:
            raise ConfigError(f"num_frames={self.num_frames}: synthetic dives need at least 20 "
                              "frames")
        if not 0 <= self.dive_types <= NUM_DIVE_TYPES:
            raise ConfigError(f"dive_types={self.dive_types}: expected 0 (any dive) to "
                              f"{NUM_DIVE_TYPES} (every class combination)")

    def info(self) -> dict:
        """What `dataset_info.json` records of the dataset's making (the opt-in options only
        when on, so that a dataset made without them keeps its info and is not remade)."""
        from aqa_tf.data import features
        made = {k: v for k, v in dataclasses.asdict(self).items()
                if k not in _OPT_IN or v != _OPT_IN[k]}
        return {**made, "schema_version": features.SCHEMA_VERSION,
                "generator_version": GENERATOR_VERSION}


def _label_histograms() -> dict:
    return {name: [0] * n for name, n in (("position", NUM_POSITIONS), ("armstand", NUM_ARMSTAND),
                                          ("rotation_type", NUM_ROTATION_TYPES),
                                          ("ss_no", NUM_SS), ("tw_no", NUM_TW))}


def write_tfrecords(out_dir: str, config: SyntheticDataConfig, num_workers: int = 0,
                    overwrite: bool = False, flag: str = "--out_dir",
                    judges: bool = False) -> dict:
    """Writes `train-*`/`test-*` shards, `vocab.json` and `dataset_info.json` to `out_dir`
    (`shards.fresh_folder`: a non-empty `out_dir` is replaced only with `overwrite`); returns
    the dataset info (with label histograms). With `judges`, the records also store 7 judges'
    scores consistent with the final score (`judge_scores_of`) and a dive number; with
    `config.dive_types`, the dive number; with `config.steps`, the steps (`to_record`)."""
    import concurrent.futures
    from tqdm import tqdm

    c = config.validate()
    # A fresh folder: shards of an earlier dataset (another shard count) never mix in.
    with shards.fresh_folder(out_dir, overwrite, flag) as out_dir:
        vocab = synthetic_vocabulary()
        vocab.save(os.path.join(out_dir, "vocab.json"))
        info, histograms = c.info(), {}
        if judges:
            info["judge_scores"] = True
        workers = num_workers or min(4, os.cpu_count() or 1)
        pool = concurrent.futures.ProcessPoolExecutor(workers) if workers > 1 else None
        mapper = pool.map if pool else (lambda fn, jobs, chunksize: map(fn, jobs))
        try:
            for split, count in (("train", c.num_train), ("test", c.num_test)):
                hist = histograms[split] = _label_histograms()
                jobs = [(split, i, c.seed, c.num_frames, c.height, c.width, c.jitter_margin,
                         c.jpeg_quality, c.steps, c.dive_types) for i in range(count)]
                with shards.ShardedWriter(out_dir, split, c.num_shards) as writer:
                    # map() keeps the order, so the output does not depend on the worker count.
                    for sample, jpegs in tqdm(mapper(_render_split, jobs, chunksize=8),
                                              total=count, desc=f"synthesizing {split}",
                                              unit="video"):
                        writer.write(to_record(sample, jpegs, vocab, judges,
                                               judges or c.dive_types > 0))
                        for name in hist:
                            hist[name][getattr(sample.labels, name)] += 1
        finally:
            if pool:
                pool.shutdown()
        info["histograms"] = histograms
        with open(os.path.join(out_dir, "dataset_info.json"), "w") as f:
            json.dump(info, f, indent=2)
    return info


def ensure_dataset(out_dir: str, config: SyntheticDataConfig) -> bool:
    """Generates the dataset unless `out_dir` already holds one made with the same config.
    Returns True if it generated."""
    wanted = {**_OPT_IN, **config.info()}
    path = os.path.join(out_dir, "dataset_info.json")
    if os.path.exists(path):
        with open(path) as f:
            existing = json.load(f)
        if {k: existing.get(k, _OPT_IN.get(k)) for k in wanted} == wanted:
            return False
    # An earlier synthetic dataset (it has dataset_info.json) is replaced; other files are not.
    write_tfrecords(out_dir, config, overwrite=os.path.exists(path), flag="--data_dir")
    return True


# --- AQA-7 (paper 003): the same rendered athlete, styled and scored differently per action ---

AQA7_ACTIONS = _aqa7.ACTIONS


@dataclasses.dataclass(frozen=True)
class AQA7Style:
    """How one synthetic AQA-7 action looks and is scored.

    Attributes:
      score_range: (low, high) of its scores: the ranges of paper 003, Table 1.
      decimals: scores are rounded to this many decimals.
      scoring: "product" (diving: difficulty x execution), "sum" (vault: D + E score),
        "holistic" (big air: mostly execution) -- how the rendered dive's difficulty and
        execution make the score, all visible in the frames.
      channels: RGB channel order: a different permutation per action, so the sky, the water
        and the athlete have other colours.
      mirror: flip left-right (the athlete travels the other way).
      two_athletes: split screen of two synchronised athletes (sync diving).
      length: mean video length relative to `num_frames` (Table 1's average sequence lengths
        over diving's 97).
    """

    score_range: tuple
    decimals: int
    scoring: str
    channels: tuple
    mirror: bool
    two_athletes: bool
    length: float


AQA7_STYLES = {
    "diving": AQA7Style((21.6, 102.6), 2, "product", (0, 1, 2), False, False, 1.0),
    "gym_vault": AQA7Style((12.3, 16.87), 3, "sum", (2, 1, 0), True, False, 0.9),
    "ski_big_air": AQA7Style((8.0, 50.0), 2, "holistic", (1, 2, 0), False, False, 1.35),
    "snowboard_big_air": AQA7Style((8.0, 50.0), 2, "holistic", (2, 0, 1), True, False, 1.25),
    "sync_diving_3m": AQA7Style((46.2, 104.88), 2, "product", (0, 2, 1), False, True, 1.6),
    "sync_diving_10m": AQA7Style((49.8, 99.36), 2, "product", (1, 0, 2), True, True, 1.1),
}
_MAX_DIFFICULTY, _MIN_DIFFICULTY = 4.1, 1.6


def aqa7_score(style: AQA7Style, spec: DiveSpec) -> float:
    """The action's score of a rendered dive: its quality in [0, 1] mapped onto the action's
    score range (a monotonic function of what the frames show)."""
    d = (spec.difficulty - _MIN_DIFFICULTY) / (_MAX_DIFFICULTY - _MIN_DIFFICULTY)
    e = spec.execution / 10.0
    quality = {"product": spec.difficulty * spec.execution / (_MAX_DIFFICULTY * 10.0),
               "sum": 0.5 * d + 0.5 * e,
               "holistic": 0.3 * d + 0.7 * e}[style.scoring]
    low, high = style.score_range
    return float(np.round(low + (high - low) * np.clip(quality, 0.0, 1.0), style.decimals))


def render_aqa7_video(action: str, spec: DiveSpec, num_frames: int, height: int, width: int,
                      rng: np.random.Generator) -> np.ndarray:
    """uint8 `[num_frames, height, width, 3]`: the dive of `spec` in the style of `action`; the
    action ends on the last frame (AQA-7 videos are trimmed to the action). A row of
    `action index` white squares at the top left marks the action as well."""
    style = AQA7_STYLES[action]
    if style.two_athletes:
        left = width // 2
        state = rng.bit_generator.state
        first = render_video(spec, num_frames, height, left, num_frames - 1, rng)
        rng.bit_generator.state = state  # the same dive, in sync
        second = render_video(spec, num_frames, height, width - left, num_frames - 1, rng)
        frames = np.concatenate([first, second], axis=2)
    else:
        frames = render_video(spec, num_frames, height, width, num_frames - 1, rng)
    frames = frames[..., list(style.channels)]
    if style.mirror:
        frames = frames[:, :, ::-1]
    frames = np.ascontiguousarray(frames)
    size = max(2, height // 16)
    for k in range(_aqa7.action_index(action)):
        frames[:, 1:1 + size, 1 + k * (size + 1):1 + k * (size + 1) + size] = 255
    return frames


@dataclasses.dataclass
class AQA7RawSample:
    """One sample written by `write_aqa7_tree`."""

    split: str
    action_index: int
    action_name: str
    sample_number: int
    sample_key: str
    final_score: float
    num_frames: int


def write_aqa7_tree(root: str, num_train_per_action: int, num_test_per_action: int,
                    num_frames: int = 24, height: int = 48, width: int = 64, seed: int = 0,
                    actions=AQA7_ACTIONS, jpeg_quality: int = 95) -> List[AQA7RawSample]:
    """Writes a synthetic AQA-7 release under `root` (the layout of `aqa_tf.data.aqa7`): frames
    `<action>-out/<sample:03d>/img_<frame:05d>.jpg` and both `Split_4` .mat files (float64
    rows [action index, sample number, score], as MATLAB writes them).

    Each action numbers its samples 1..train+test and draws its test samples at random. Video
    lengths vary per action (`AQA7Style.length` x `num_frames`) and per sample (+-15%, at least
    16 frames), so some are shorter than `num_frames` (the pipeline pads those in front).

    Returns:
      The samples written, train and test, in the order of the split files.
    """
    from scipy.io import savemat
    from aqa_tf.data import features
    written = []
    for action in actions:
        index = _aqa7.action_index(action)
        style = AQA7_STYLES[action]
        count = num_train_per_action + num_test_per_action
        order = np.random.default_rng(_sample_seed(seed, f"aqa7-split:{action}", 0)).permutation(
            count) + 1
        test_numbers = set(int(n) for n in order[num_train_per_action:])
        for number in range(1, count + 1):
            rng = np.random.default_rng(_sample_seed(seed, f"aqa7:{action}", number))
            length = max(16, int(round(num_frames * style.length * rng.uniform(0.85, 1.15))))
            spec = sample_dive_spec(rng)
            frames = render_aqa7_video(action, spec, length, height, width, rng)
            folder = _aqa7.sample_dir(root, action, number)
            os.makedirs(folder, exist_ok=True)
            for i, frame in enumerate(frames):
                with open(os.path.join(folder, _aqa7.FRAME_PATTERN.format(frame=i + 1)),
                          "wb") as f:
                    f.write(features.encode_jpeg(frame, jpeg_quality))
            written.append(AQA7RawSample(
                "test" if number in test_numbers else "train", index, action, number,
                _aqa7.sample_key(action, number), aqa7_score(style, spec), length))
    os.makedirs(os.path.join(root, _aqa7.SPLIT_DIR), exist_ok=True)
    for split, (name, variable) in _aqa7.SPLIT_FILES.items():
        rows = np.array([[s.action_index, s.sample_number, s.final_score] for s in written
                         if s.split == split], np.float64).reshape(-1, 3)
        savemat(os.path.join(root, _aqa7.SPLIT_DIR, name), {variable: rows})
    return [s for split in ("train", "test") for s in written if s.split == split]


# --- JIGSAWS: surgical trials whose instrument motion depends on their GRS labels ---

# Self-reported skill -> the range its GRS elements are drawn from.
_JIGSAWS_SKILL_ELEMENTS = {"N": (1, 3), "I": (2, 4), "E": (3, 5)}
_JIGSAWS_SUBJECTS = "BCDEFGHI"
# Background colour per task (action_id 1..3).
_JIGSAWS_COLOURS = {1: (150, 60, 60), 2: (60, 150, 60), 3: (60, 60, 150)}
# Frame-number code: FRAME_CODE_BITS blocks of FRAME_CODE_BLOCK pixels along the bottom edge,
# white for a 1 bit (the frame's 0-based position in its video, lowest bit first).
JIGSAWS_FRAME_CODE_BITS, JIGSAWS_FRAME_CODE_BLOCK = 8, 8


@dataclasses.dataclass
class JigsawsRawTrial:
    """One trial written by `write_jigsaws_tree`."""

    task: str
    trial: str
    skill: str
    elements: List[int]
    fold: int
    num_frames: int

    @property
    def total(self) -> int:
        return int(sum(self.elements))


def jigsaws_frame_code(frame: np.ndarray) -> int:
    """The frame position a `render_jigsaws_video` frame carries in its bottom blocks (read
    from the frame at any size that keeps the blocks: the size they were drawn at)."""
    size = JIGSAWS_FRAME_CODE_BLOCK
    row = frame[-size // 2]
    return sum(int(row[b * size + size // 2].mean() > 128) << b
               for b in range(JIGSAWS_FRAME_CODE_BITS))


def render_jigsaws_video(task: str, elements, num_frames: int, height: int, width: int,
                         rng: np.random.Generator) -> np.ndarray:
    """uint8 `[num_frames, height, width, 3]`: a tool tip (white square) on a task-coloured
    field, moving along a loop; the lower the total GRS, the more it trembles and the slower it
    goes. A bar at the top, as long as the total GRS is of 30, and the frame's position coded in
    blocks along the bottom (`jigsaws_frame_code`)."""
    size = JIGSAWS_FRAME_CODE_BLOCK
    if width < JIGSAWS_FRAME_CODE_BITS * size or height < 3 * size:
        raise ValueError(f"{height}x{width} frames are too small for the frame code")
    if num_frames >= 2 ** JIGSAWS_FRAME_CODE_BITS:
        raise ValueError(f"num_frames={num_frames}: the frame code holds at most "
                         f"{2 ** JIGSAWS_FRAME_CODE_BITS - 1}")
    quality = (sum(elements) - 6) / 24.0
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    frames[:] = _JIGSAWS_COLOURS[_jigsaws.task_id(task)]
    frames[:, :3, :max(1, int(round(width * sum(elements) / 30.0)))] = 230
    field = height - 2 * size
    t = np.arange(num_frames) * (0.5 + quality) * 2 * np.pi / max(num_frames, 1)
    tremble = (1.0 - quality) * 3.0 * rng.standard_normal((num_frames, 2))
    ys = 4 + (field - 8) * (0.5 + 0.4 * np.sin(2 * t)) + tremble[:, 0]
    xs = width * (0.5 + 0.4 * np.cos(t)) + tremble[:, 1]
    for i in range(num_frames):
        y, x = int(np.clip(ys[i], 4, field - 3)), int(np.clip(xs[i], 2, width - 3))
        frames[i, y - 2:y + 2, x - 2:x + 2] = 255
        for b in range(JIGSAWS_FRAME_CODE_BITS):
            frames[i, -size:, b * size:(b + 1) * size] = 255 if (i >> b) & 1 else 0
    return frames


def _write_avi(path: str, frames: np.ndarray, frame_rate: int = 30):
    """MPEG-4 part 2 in AVI (as the JIGSAWS release), at a bit rate that keeps tiny frames
    nearly lossless."""
    import av
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(path, mode="w") as container:
        stream = container.add_stream("mpeg4", rate=frame_rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt, stream.bit_rate = "yuv420p", 4_000_000
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _jigsaws_trials(task: str, count: int, seed: int, num_frames: int) -> List[JigsawsRawTrial]:
    """The labels, folds and video lengths of a task's synthetic trials."""
    rng = np.random.default_rng(_sample_seed(seed, f"jigsaws:{task}", 0))
    folds = rng.permutation(count) % _jigsaws.NUM_FOLDS
    trials = []
    for i in range(count):
        skill = _jigsaws.SKILL_LEVELS[int(rng.integers(len(_jigsaws.SKILL_LEVELS)))]
        low, high = _JIGSAWS_SKILL_ELEMENTS[skill]
        elements = [int(v) for v in rng.integers(low, high + 1, len(_jigsaws.GRS_ELEMENTS))]
        length = max(8, int(round(num_frames * rng.uniform(0.8, 1.25))))
        name = f"{task}_{_JIGSAWS_SUBJECTS[i % 8]}{i // 8 + 1:03d}"
        trials.append(JigsawsRawTrial(task, name, skill, elements, int(folds[i]), length))
    return trials


def write_jigsaws_tree(root: str, trials_per_task: int, num_frames: int = 40,
                       height: int = 48, width: int = 64, seed: int = 0,
                       tasks=_jigsaws.TASKS) -> List[JigsawsRawTrial]:
    """Writes a synthetic JIGSAWS release under `root` (the layout of `aqa_tf.data.jigsaws`):
    `<Task>/video/<trial>_capture1.avi` and `_capture2.avi` (MPEG-4 in AVI; capture2 shows the
    same trial in inverted colours), `<Task>/meta_file_<Task>.txt` in the release format (tab
    separated, a double tab after the name, a blank line at the end), and the authors' files
    `<root>/label.pkl` (trial -> 6 GRS elements) and `<root>/splits.pkl` (task -> 4 folds).

    Each task's trials are spread over the 4 folds at random (round-robin over a permutation);
    videos are `num_frames` long +-25% (at least 8 frames), so the converter's uniform sampling
    both skips and repeats frames.

    Returns:
      The trials written, task by task.
    """
    import pickle
    written = []
    for task in tasks:
        trials = _jigsaws_trials(task, trials_per_task, seed, num_frames)
        for trial in trials:
            rng = np.random.default_rng(_sample_seed(seed, f"jigsaws:{trial.trial}", 1))
            frames = render_jigsaws_video(task, trial.elements, trial.num_frames, height, width,
                                          rng)
            _write_avi(_jigsaws.video_path(root, task, trial.trial), frames)
            _write_avi(_jigsaws.video_path(root, task, trial.trial, capture=2), 255 - frames)
        with open(_jigsaws.meta_path(root, task), "w") as f:
            for trial in trials:
                name, *rest = _jigsaws.meta_line(trial.trial, trial.skill,
                                                 trial.elements).split("\t")
                f.write(name + "\t\t" + "\t".join(rest) + "\n")
            f.write("\n")
        written += trials
    with open(os.path.join(root, "label.pkl"), "wb") as f:
        pickle.dump({t.trial: list(t.elements) for t in written}, f)
    with open(os.path.join(root, "splits.pkl"), "wb") as f:
        pickle.dump({task: [[t.trial for t in written if t.task == task and t.fold == k]
                            for k in range(_jigsaws.NUM_FOLDS)] for task in tasks}, f)
    return written
