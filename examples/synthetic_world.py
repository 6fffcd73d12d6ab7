"""A synthetic video world with exact ground truth, for testing vmr without real weights.

Videos are sequences of scenes (hard cuts) in which coloured shapes move,
appear, disappear, grow or shrink.  Each annotated event's object (colour +
shape) is on screen only inside its window, and its (colour, shape, scene) is
unique in the whole world, so a frame-level CLIP can localise the moment and
every query has exactly one right answer.  Distractors use colour+shape combos
that are reserved for them and never queried.

    python examples/synthetic_world.py OUT_DIR --videos 10 --duration 60 --seed 0

writes world_000.mp4 ..., annotations.txt (Charades-STA) and annotations.jsonl
(QVHighlights).  Everything is deterministic per seed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np

SCENES = ["beach", "forest", "city", "snow", "desert", "night", "cave"]
SCENE_PHRASES = {"beach": "on the beach", "forest": "in the forest", "city": "in the city",
                 "snow": "in the snow", "desert": "in the desert", "night": "at night",
                 "cave": "in the cave"}
COLOURS = {"red": (220, 30, 30), "green": (40, 200, 60), "blue": (40, 70, 235),
           "yellow": (245, 225, 40), "purple": (150, 50, 210), "orange": (255, 140, 0),
           "pink": (255, 120, 200)}
SHAPES = ["circle", "square", "triangle", "star", "cross"]
ACTIONS = {"moves_left": "moves to the left", "moves_right": "moves to the right",
           "moves_up": "moves up", "moves_down": "moves down", "appears": "appears",
           "disappears": "disappears", "grows": "grows", "shrinks": "shrinks"}
ALL_COMBOS = [(c, s) for c in COLOURS for s in SHAPES]
# One combo per colour, different shapes: only distractors use these, never events.
DISTRACTOR_COMBOS = [(c, SHAPES[i % len(SHAPES)]) for i, c in enumerate(COLOURS)]
EVENT_COMBOS = [cs for cs in ALL_COMBOS if cs not in DISTRACTOR_COMBOS]
BASE_SIZE = 0.33          # object height as a fraction of the centre square
MOVE_FROM, MOVE_TO = 0.76, 0.24   # travel inside the centre square (what the model sees)


# ---------------------------------------------------------------- backgrounds
@lru_cache(maxsize=64)
def scene_background(scene: str, width: int, height: int, variant: int = 0) -> np.ndarray:
    """A procedural, recognisable backdrop (HxWx3 uint8); object colours never dominate it."""
    rng = np.random.default_rng(SCENES.index(scene) * 1000 + variant)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    yn, xn = y / height, x / width
    img = np.zeros((height, width, 3), np.float32)

    def paint(mask, rgb):
        img[mask] = rgb

    phase = rng.uniform(0, 6.28)
    if scene == "beach":
        paint(yn >= 0, (135, 200, 235))
        sea = yn > 0.38 + 0.02 * np.sin(xn * 9 + phase)
        paint(sea, (20, 110, 160))
        paint(yn > 0.56 + 0.04 * np.sin(xn * 5 + phase), (225, 200, 150))
        foam = np.abs(yn - (0.56 + 0.04 * np.sin(xn * 5 + phase))) < 0.015
        paint(foam, (240, 245, 245))
    elif scene == "forest":
        paint(yn >= 0, (25, 60, 30))
        step = rng.uniform(0.11, 0.15)
        trunks = ((xn + phase) % step) < step * 0.3
        paint(trunks & (yn > 0.3), (90, 60, 30))
        canopy = yn < 0.3 + 0.05 * np.sin(xn * 23 + phase)
        paint(canopy, (15, 90, 40))
    elif scene == "city":
        paint(yn >= 0, (150, 160, 175))
        edges = np.sort(rng.uniform(0, 1, 7))
        for i in range(len(edges) - 1):
            top = rng.uniform(0.1, 0.45)
            paint((xn >= edges[i] + 0.01) & (xn < edges[i + 1]) & (yn > top), (60, 62, 72))
        windows = ((x % 8) < 3) & ((y % 10) < 4) & (img[..., 0] == 60)
        paint(windows, (200, 200, 130))
        paint(yn > 0.88, (45, 45, 50))
    elif scene == "snow":
        paint(yn >= 0, (195, 210, 228))
        paint(yn > 0.35 + 0.05 * np.sin(xn * 4 + phase), (236, 240, 246))
        drift = np.sin(xn * 17 + yn * 7 + phase) > 0.85
        paint(drift & (yn > 0.45), (205, 215, 230))
        flakes = rng.random((height, width)) < 0.01
        paint(flakes, (255, 255, 255))
    elif scene == "desert":
        paint(yn >= 0, (245, 215, 170))
        for k, rgb in enumerate([(210, 170, 110), (190, 145, 90), (170, 125, 75)]):
            paint(yn > 0.35 + 0.2 * k + 0.06 * np.sin(xn * (3 + k) + phase * (k + 1)), rgb)
    elif scene == "night":
        img[:] = np.stack([10 + 0 * yn, 15 + 10 * yn, 45 - 25 * yn], -1)
        stars = rng.random((height, width)) < 0.015
        paint(stars, (230, 230, 210))
    elif scene == "cave":
        paint(yn >= 0, (62, 42, 30))
        pts = rng.uniform(0, 1, (14, 2))
        d = np.min([np.hypot(xn - px, (yn - py) * height / width) for px, py in pts], axis=0)
        paint(d < 0.05, (95, 72, 55))
        paint(yn > 0.85, (40, 28, 20))
    else:
        raise ValueError(f"unknown scene {scene!r}")
    noise = rng.normal(0, 4, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- objects
def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of a unit shape; (u, v) are coordinates divided by half the height."""
    if shape == "circle":
        return u * u + v * v <= 1
    if shape == "square":
        return (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)
    if shape == "triangle":
        return (v <= 0.8) & (v >= -1 + 1.8 * np.abs(u))
    if shape == "star":
        theta = np.arctan2(u, -v) * 5 / (2 * np.pi)
        k = np.abs(theta - np.round(theta))          # 0 at a point, 0.5 between points
        return np.hypot(u, v) <= 1.0 - 1.2 * k
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1))
    raise ValueError(f"unknown shape {shape!r}")


def object_state(obj: dict, t: float):
    """(cx, cy, size, alpha) in centre-square units (0..1), or None when not on screen.

    Every object is visible only inside [start, end]: that is what makes its
    window recoverable from single frames.
    """
    start, end = obj["start"], obj["end"]
    if not start <= t <= end:
        return None
    p = (t - start) / max(end - start, 1e-6)
    cx, cy, size, alpha = obj["x"], obj["y"], BASE_SIZE, 1.0
    lerp = MOVE_FROM + (MOVE_TO - MOVE_FROM) * p
    action = obj["action"]
    if action == "moves_left":
        cx = lerp
    elif action == "moves_right":
        cx = 1 - lerp
    elif action == "moves_up":
        cy = lerp
    elif action == "moves_down":
        cy = 1 - lerp
    elif action == "appears":
        alpha = min(1.0, p / 0.2)
        size = BASE_SIZE * (0.7 + 0.3 * alpha)
    elif action == "disappears":
        alpha = float(np.clip((0.9 - p) / 0.4, 0, 1))
    elif action == "grows":
        size = BASE_SIZE * (0.6 + 0.65 * p)
    elif action == "shrinks":
        size = BASE_SIZE * (1.25 - 0.65 * p)
    return (cx, cy, size, alpha) if alpha > 0 else None


def draw_object(img: np.ndarray, colour: str, shape: str, state) -> None:
    """Alpha-blend one object into img (in place); state is object_state's tuple."""
    h, w = img.shape[:2]
    side = min(h, w)
    ox, oy = (w - side) / 2, (h - side) / 2
    cx, cy, size, alpha = state
    px, py, half = ox + cx * side, oy + cy * side, size * side / 2
    x0, x1 = max(0, int(px - half - 1)), min(w, int(px + half + 2))
    y0, y1 = max(0, int(py - half - 1)), min(h, int(py + half + 2))
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
    mask = shape_mask(shape, (xx - px) / half, (yy - py) / half)
    region = img[y0:y1, x0:x1]
    rgb = np.array(COLOURS[colour], np.float32)
    blended = region[mask] * (1 - alpha) + rgb * alpha
    region[mask] = np.round(blended).astype(np.uint8)


# ---------------------------------------------------------------- plans
def plan_video(rng: np.random.Generator, duration: float, video_id: str = "world_000",
               used: dict | None = None, distractors: bool = True) -> dict:
    """Scene segments, queried events and distractors of one video.

    ``used`` maps (colour, shape) -> scenes it was given to; share it across
    videos so that every event's (colour, shape, scene) is unique in the world.
    Events get a fresh colour+shape while any is left, otherwise one not yet
    used in their scene (those must name the scene in their query).
    """
    used = {} if used is None else used
    segments, t = [], 0.0
    while t < duration - 1e-6:
        length = round(float(rng.uniform(20, 75)), 1)
        if duration - (t + length) < 10:
            length = round(duration - t, 1)
        prev = segments[-1]["scene"] if segments else None
        scene = str(rng.choice([s for s in SCENES if s != prev]))
        segments.append({"scene": scene, "start": t, "end": round(t + length, 1),
                         "variant": int(rng.integers(0, 4))})
        t = round(t + length, 1)
    events, extras = [], []
    for seg in segments:
        t = seg["start"] + float(rng.uniform(0.5, 6))
        while True:
            length = float(rng.uniform(2, 15))
            if t + length > seg["end"] - 0.3:
                break
            obj = random_object(rng, round(t, 1), round(t + length, 1))
            fresh = [cs for cs in EVENT_COMBOS if cs not in used]
            reuse = [cs for cs in EVENT_COMBOS if seg["scene"] not in used.get(cs, [])]
            pool = fresh or reuse
            if pool:
                obj["colour"], obj["shape"] = pool[int(rng.integers(len(pool)))]
                used.setdefault((obj["colour"], obj["shape"]), []).append(seg["scene"])
                obj.update(scene=seg["scene"], coin=bool(rng.random() < 0.5),
                           article=str(rng.choice(["the", "a"])))
                events.append(obj)
            t = obj["end"] + float(rng.uniform(8, 30))
        if distractors:      # up to two at a time, each in its own lane of time
            for lane in range(2):
                t = seg["start"] + float(rng.uniform(0, 10))
                while True:
                    length = float(rng.uniform(3, 15))
                    if t + length > seg["end"] - 0.1:
                        break
                    obj = random_object(rng, round(t, 1), round(t + length, 1))
                    obj["colour"], obj["shape"] = DISTRACTOR_COMBOS[int(rng.integers(len(DISTRACTOR_COMBOS)))]
                    extras.append(obj)
                    t = obj["end"] + float(rng.uniform(2, 20))
    return {"video_id": video_id, "duration": round(duration, 1), "segments": segments,
            "events": events, "distractors": extras}


def random_object(rng: np.random.Generator, start: float, end: float) -> dict:
    """An object with an action and a resting position inside the centre square."""
    return {"action": str(rng.choice(list(ACTIONS))), "start": start, "end": end,
            "x": float(rng.uniform(0.28, 0.72)), "y": float(rng.uniform(0.28, 0.72))}


def finish_queries(plans: list[dict], used: dict) -> None:
    """Write each event's query; a colour+shape used in several scenes names its scene."""
    for plan in plans:
        for ev in plan["events"]:
            article = "an" if ev["article"] == "a" and ev["colour"][0] in "aeiou" else ev["article"]
            name = f"{article} {ev['colour']} {ev['shape']} {ACTIONS[ev['action']]}"
            if ev["coin"] or len(used[(ev["colour"], ev["shape"])]) > 1:
                name += " " + SCENE_PHRASES[ev["scene"]]
            ev["query"] = name[0].upper() + name[1:]


def plan_world(videos: int, duration: float, seed: int) -> list[dict]:
    """Plans of all videos of a world, with world-unique queries."""
    rng, used = np.random.default_rng(seed), {}
    plans = [plan_video(rng, duration, f"world_{i:03d}", used) for i in range(videos)]
    finish_queries(plans, used)
    return plans


def scene_at(plan: dict, t: float) -> dict:
    for seg in plan["segments"]:
        if seg["start"] <= t < seg["end"]:
            return seg
    return plan["segments"][-1]


def visible_objects(plan: dict, t: float) -> list[tuple[dict, tuple]]:
    """(object, state) drawn at t, back to front: distractors first, the event on top."""
    out = []
    for obj in plan["distractors"] + plan["events"]:
        state = object_state(obj, t)
        if state is not None:
            out.append((obj, state))
    return out


def render_frame(plan: dict, t: float, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    """The frame at time t: HxWx3 uint8 RGB."""
    seg = scene_at(plan, t)
    img = scene_background(seg["scene"], size[0], size[1], seg["variant"]).copy()
    for obj, state in visible_objects(plan, t):
        draw_object(img, obj["colour"], obj["shape"], state)
    return img


# ---------------------------------------------------------------- files
def write_video(plan: dict, path: Path, fps: int = 10, size: tuple[int, int] = (160, 120)) -> None:
    """Stream frames into ffmpeg (H.264, yuv420p) one at a time: long videos never sit in memory."""
    cmd = ["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{size[0]}x{size[1]}", "-r", str(fps), "-i", "-", "-c:v", "libx264",
           "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-threads", "1",
           "-fflags", "+bitexact", "-flags:v", "+bitexact", str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    try:
        for i in range(int(round(plan["duration"] * fps))):
            proc.stdin.write(render_frame(plan, (i + 0.5) / fps, size).tobytes())
    finally:
        proc.stdin.close()
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed writing {path}")


def annotations(plans: list[dict]) -> list[dict]:
    """QVHighlights-style records, one per event."""
    recs = []
    for plan in plans:
        for ev in plan["events"]:
            recs.append({"qid": len(recs), "query": ev["query"], "vid": plan["video_id"],
                         "duration": float(plan["duration"]),
                         "relevant_windows": [[ev["start"], ev["end"]]]})
    return recs


def generate_world(out_dir, videos: int, duration: float, seed: int, fps: int = 10,
                   size: tuple[int, int] = (160, 120), write_videos: bool = True) -> list[dict]:
    """Write the videos and both annotation files; return the annotation records."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_world(videos, duration, seed)
    recs = annotations(plans)
    with open(out / "annotations.txt", "w") as f:
        for r in recs:
            s, e = r["relevant_windows"][0]
            f.write(f"{r['vid']} {s:.2f} {e:.2f}##{r['query']}\n")
    with open(out / "annotations.jsonl", "w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
    if write_videos:
        for plan in plans:
            write_video(plan, out / f"{plan['video_id']}.mp4", fps, size)
    return recs


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--videos", type=int, default=10)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per video")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--size", default="160x120", help="WIDTHxHEIGHT")
    args = ap.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    recs = generate_world(args.out_dir, args.videos, args.duration, args.seed, args.fps, size)
    print(f"{args.videos} videos, {len(recs)} queries -> {args.out_dir}")


if __name__ == "__main__":
    main()
