"""The synthetic world's ground truth matches what it draws, and the tiny CLIP sees its scenes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import synthetic_world as world  # noqa: E402

MODEL_DIR = ROOT / "examples" / "models" / "tiny-clip"


def colour_pixels(img: np.ndarray, colour: str, tol: int = 12) -> np.ndarray:
    """Boolean mask of pixels within tol of an object colour (on every channel)."""
    rgb = np.array(world.COLOURS[colour], np.int16)
    return (np.abs(img.astype(np.int16) - rgb) <= tol).all(-1)


def one_event_plan(action: str, scene: str = "beach", colour: str = "red", shape: str = "circle") -> dict:
    ev = {"colour": colour, "shape": shape, "action": action, "start": 2.0, "end": 8.0,
          "x": 0.5, "y": 0.5, "scene": scene}
    return {"video_id": "t", "duration": 10.0, "events": [ev], "distractors": [],
            "segments": [{"scene": scene, "start": 0.0, "end": 10.0, "variant": 1}]}


def test_event_colour_is_drawn_only_inside_its_window():
    plan = world.plan_video(np.random.default_rng(7), 240, distractors=False)
    assert len(plan["events"]) >= 4
    for ev in plan["events"]:
        mid = (ev["start"] + ev["end"]) / 2
        assert colour_pixels(world.render_frame(plan, mid), ev["colour"]).sum() > 150, ev
        for t in (ev["start"] - 0.5, ev["end"] + 0.5):
            if 0 <= t < plan["duration"]:
                assert colour_pixels(world.render_frame(plan, t), ev["colour"]).sum() == 0, (ev, t)


def test_event_object_is_on_top_of_distractors():
    plan = world.plan_video(np.random.default_rng(11), 300)
    assert plan["distractors"]
    for ev in plan["events"]:
        t = (ev["start"] + ev["end"]) / 2
        cx, cy, _, _ = world.object_state(ev, t)
        h, w = 120, 160
        px, py = int((w - h) / 2 + cx * h), int(cy * h)
        assert tuple(world.render_frame(plan, t)[py, px]) == world.COLOURS[ev["colour"]]


@pytest.mark.parametrize("action,axis,sign", [("moves_left", 1, -1), ("moves_right", 1, 1),
                                              ("moves_up", 0, -1), ("moves_down", 0, 1)])
def test_moves_measured_on_pixels(action, axis, sign):
    plan = one_event_plan(action)
    early, late = (colour_pixels(world.render_frame(plan, t), "red") for t in (2.3, 7.7))
    shift = np.argwhere(late)[:, axis].mean() - np.argwhere(early)[:, axis].mean()
    assert sign * shift > 30
    # and the motion stays inside the centre square the model crops
    for t in np.arange(2.0, 8.01, 0.5):
        cols = np.argwhere(colour_pixels(world.render_frame(plan, t), "red"))[:, 1]
        assert cols.min() >= 20 and cols.max() < 140


@pytest.mark.parametrize("action", ["grows", "shrinks", "appears", "disappears"])
def test_size_and_visibility_changes(action):
    plan = one_event_plan(action, colour="blue", shape="square", scene="snow")
    area = [colour_pixels(world.render_frame(plan, t), "blue").sum() for t in (2.05, 5.0, 7.95)]
    if action == "grows":
        assert area[0] * 2 < area[2]
    elif action == "shrinks":
        assert area[0] > area[2] * 2
    elif action == "appears":       # fading in: not yet fully coloured, then full until the end
        assert area[0] < area[1] and area[2] == area[1] > 300
    else:                           # full at the start, gone by the end
        assert area[0] > 300 and area[2] == 0


def test_annotations_agree_and_are_deterministic(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    recs = world.generate_world(a, 4, 90, seed=3, write_videos=False)
    world.generate_world(b, 4, 90, seed=3, write_videos=False)
    world.generate_world(c, 4, 90, seed=4, write_videos=False)
    for name in ("annotations.txt", "annotations.jsonl"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
        assert (a / name).read_bytes() != (c / name).read_bytes()
    lines = (a / "annotations.txt").read_text().splitlines()
    jsonl = [json.loads(x) for x in (a / "annotations.jsonl").read_text().splitlines()]
    assert len(lines) == len(jsonl) == len(recs) >= 8
    for line, rec in zip(lines, jsonl):
        head, query = line.split("##")
        vid, start, end = head.split()
        (s, e), = rec["relevant_windows"]
        assert (vid, query) == (rec["vid"], rec["query"])
        assert (float(start), float(end)) == pytest.approx((s, e), abs=0.005)
        assert 0 <= s and 2 <= e - s <= 15 and e <= rec["duration"] == 90
    assert [r["qid"] for r in jsonl] == list(range(len(jsonl)))
    assert len({r["query"].lower() for r in jsonl}) == len(jsonl)


def test_queries_are_unique_in_a_long_world():
    plans = world.plan_world(3, 3600, seed=5)     # three hours: colour+shape combos get reused
    events = [ev for p in plans for ev in p["events"]]
    assert len(events) > len(world.EVENT_COMBOS)
    keys = [(ev["colour"], ev["shape"], ev["scene"]) for ev in events]
    assert len(set(keys)) == len(keys)
    distractor_combos = {(d["colour"], d["shape"]) for p in plans for d in p["distractors"]}
    assert not distractor_combos & {(ev["colour"], ev["shape"]) for ev in events}
    for ev in events:
        reused = sum(k[:2] == (ev["colour"], ev["shape"]) for k in keys) > 1
        if reused:
            assert world.SCENE_PHRASES[ev["scene"]] in ev["query"]
        # the event lies in one scene segment of its video
        plan = next(p for p in plans if ev in p["events"])
        seg = world.scene_at(plan, ev["start"])
        assert seg["scene"] == ev["scene"] and ev["end"] <= seg["end"]


def test_cli_writes_h264_video_of_the_planned_frames(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "examples" / "synthetic_world.py"), str(tmp_path),
                    "--videos", "1", "--duration", "4", "--seed", "2"], check=True)
    path = tmp_path / "world_000.mp4"
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,width,height,pix_fmt,nb_frames:format=duration", "-of", "json", str(path)],
        capture_output=True, text=True, check=True).stdout)
    stream = probe["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"], stream["pix_fmt"]) == \
        ("h264", 160, 120, "yuv420p")
    assert int(stream["nb_frames"]) == 40
    assert float(probe["format"]["duration"]) == pytest.approx(4.0, abs=0.15)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, 120, 160, 3).astype(np.int16)
    plan = world.plan_world(1, 4, seed=2)[0]
    for i in (0, 20, 39):
        expected = world.render_frame(plan, (i + 0.5) / 10).astype(np.int16)
        assert np.abs(frames[i] - expected).mean() < 6
    assert len((tmp_path / "annotations.jsonl").read_text().splitlines()) == len(world.annotations([plan]))


def test_committed_tiny_clip_ranks_scene_captions():
    import torch
    from transformers import AutoTokenizer, CLIPModel

    from vmr_cli.frames import normalize, resize_center_crop

    model = CLIPModel.from_pretrained(MODEL_DIR).eval()
    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    pre = json.loads((MODEL_DIR / "preprocessor_config.json").read_text())
    rng = np.random.default_rng(99)
    frames, labels = [], []
    for i, scene in enumerate(world.SCENES):
        for _ in range(4):
            plan = one_event_plan(str(rng.choice(list(world.ACTIONS))), scene,
                                  *world.ALL_COMBOS[int(rng.integers(len(world.ALL_COMBOS)))])
            plan["segments"][0]["variant"] = int(rng.integers(0, 4))
            frames.append(world.render_frame(plan, float(rng.uniform(0, 10))))
            labels.append(i)
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
    x = normalize(resize_center_crop(x, pre["crop_size"]["height"]), pre["image_mean"], pre["image_std"])
    texts = [world.SCENE_PHRASES[s] for s in world.SCENES]
    enc = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        img = torch.nn.functional.normalize(model.get_image_features(pixel_values=x).pooler_output, dim=-1)
        txt = torch.nn.functional.normalize(model.get_text_features(**enc).pooler_output, dim=-1)
    assert tok.unk_token_id not in enc["input_ids"].flatten().tolist()
    accuracy = float(((img @ txt.T).argmax(1) == torch.tensor(labels)).float().mean())
    assert accuracy >= 0.85, accuracy
