"""Fast checks of models/: BAM features, moment head, checkpoints."""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vmr_models import (bam_features, load_checkpoint, motion_energy, propose_moments,
                        save_checkpoint, shot_ids)
from vmr_models.moment_head import nms, temporal_iou

GEN = torch.Generator().manual_seed(0)


def frame(bg, fg, x, noise=6.0):
    """A 32x32 thumbnail: flat background, an 8x10 coloured box at column x, noise."""
    im = torch.empty(3, 32, 32)
    im[:] = torch.tensor(bg, dtype=torch.float32).view(3, 1, 1)
    im[:, 10:20, x:x + 8] = torch.tensor(fg, dtype=torch.float32).view(3, 1, 1)
    return (im + torch.randn(3, 32, 32, generator=GEN) * noise).clamp(0, 255).to(torch.uint8)


# --- BAM --------------------------------------------------------------------------

def test_motion_energy_range_and_order():
    still = frame((40, 120, 200), (250, 30, 30), 4, noise=0)
    moved = frame((40, 120, 200), (250, 30, 30), 20, noise=0)
    e = motion_energy(torch.stack([still, still]), torch.stack([still, moved]))
    assert e.shape == (2,) and e[0] == 0 and 0 < e[1] <= 1


def test_shot_ids_cut_vs_small_shift():
    blue = [frame((40, 120, 200), (250, 30, 30), x) for x in range(0, 20, 3)]
    yellow = [frame((200, 180, 60), (30, 250, 30), x) for x in range(0, 20, 3)]
    # clips 0-2 in the blue scene (box drifting), hard cut, clips 3-5 in the yellow one
    first = torch.stack([blue[0], blue[1], blue[2], yellow[0], yellow[1], yellow[2]])
    middle = torch.stack([blue[1], blue[2], blue[3], yellow[1], yellow[2], yellow[3]])
    last = torch.stack([blue[2], blue[3], blue[4], yellow[2], yellow[3], yellow[4]])
    assert shot_ids(first, middle, last).tolist() == [0, 0, 0, 1, 1, 1]
    # a cut inside clip 1 (after its middle frame) is caught by the middle pair too
    last2 = last.clone()
    last2[1] = yellow[0]
    first2 = first.clone()
    first2[2] = yellow[0]
    middle2 = middle.clone()
    middle2[2] = yellow[1]
    last2[2] = yellow[2]
    ids = shot_ids(first2, middle2, last2)
    assert ids.tolist() == [0, 0, 1, 1, 1, 1]
    assert shot_ids(first[:1], middle[:1], last[:1]).tolist() == [0]


def test_bam_shapes_normalisation_and_shot_context():
    n, d = 10, 16
    emb = F.normalize(torch.randn(3, n, d, generator=GEN), dim=-1)
    first, middle, last = emb
    shots = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    A, B, M = bam_features(first, middle, last, shots, window=2)
    for t in (A, B, M):
        assert t.shape == (n, d) and t.dtype == torch.float32
    assert torch.allclose(A.norm(dim=1), torch.ones(n), atol=1e-5)
    assert torch.allclose(B.norm(dim=1), torch.ones(n), atol=1e-5)
    assert torch.allclose(M, last - first)
    # clip 3: window [1, 5] but shot 0 ends at 3 -> mean of clips 1, 2, 3 only
    assert torch.allclose(B[3], F.normalize(A[1:4].mean(0), dim=0), atol=1e-5)
    # clip 4: first of shot 1 -> clips 4, 5, 6
    assert torch.allclose(B[4], F.normalize(A[4:7].mean(0), dim=0), atol=1e-5)
    # static clip: M is zero, not normalised
    _, _, M0 = bam_features(first, middle, first, shots)
    assert M0.abs().max() == 0


# --- fusion -----------------------------------------------------------------------

# --- moment head ------------------------------------------------------------------

def plateau():
    times = torch.arange(0, 100.0001, 0.25)
    scores = 0.2 + 0.02 * torch.rand(times.shape, generator=GEN)
    scores[(times >= 30) & (times <= 37.5)] = 0.8
    return times, scores


def test_moment_head_finds_plateau():
    times, scores = plateau()
    moments = propose_moments(times, scores, step=0.25)
    start, end, score = moments[0]
    assert abs(start - 30) <= 0.25 and abs(end - 37.5) <= 0.25
    assert all(moments[i][2] >= moments[i + 1][2] for i in range(len(moments) - 1))
    assert 1 <= len(moments) <= 5


def test_moment_head_survives_noisy_frames():
    # signal 0.15 over noise 0.05: smoothing keeps the moment in one piece
    times = torch.arange(0, 100.0001, 0.25)
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        scores = 0.2 + 0.05 * torch.randn(times.shape, generator=g)
        scores[(times >= 30) & (times <= 37.5)] += 0.15
        moments = propose_moments(times, scores, step=0.25)
        start, end, _ = moments[0]
        assert abs(start - 30) <= 0.75 and abs(end - 37.5) <= 0.75
        assert len(moments) > 1  # NMS leaves no pair overlapping by more than 0.5
        assert all(temporal_iou(a[:2], b[:2]) <= 0.5
                   for k, a in enumerate(moments) for b in moments[k + 1:])


def test_moment_head_respects_gaps_and_nms():
    times, scores = plateau()
    keep = (times < 33) | (times > 35)  # clips 33-35 s were not verified
    moments = propose_moments(times[keep], scores[keep], step=0.25, top_k=2)
    assert all(not (s < 33 and e > 35) for s, e, _ in moments)
    dups = [(0.0, 10.0, 0.9), (0.5, 10.0, 0.8), (20.0, 30.0, 0.7)]
    assert nms(dups, 0.5) == [(0.0, 10.0, 0.9), (20.0, 30.0, 0.7)]
    # a window inside a better one (IoU 0.2 < 0.5) or holding one is the same moment again
    nested = [(10.0, 20.0, 0.9), (12.0, 14.0, 0.8), (0.0, 60.0, 0.7), (30.0, 34.0, 0.6)]
    assert nms(nested, 0.5) == [(10.0, 20.0, 0.9), (30.0, 34.0, 0.6)]
    assert propose_moments(torch.zeros(0), torch.zeros(0), step=0.25) == []


def test_moment_head_min_frames_drops_a_one_frame_spike():
    # 1 frame per second: a lone frame at 0.9 beats a two-frame bump at 0.7 unless a moment
    # must hold two frames
    times = torch.arange(0.0, 60.0)
    scores = torch.full_like(times, 0.2)
    scores[10] = 0.9
    scores[[40, 41]] = 0.7
    assert propose_moments(times, scores, step=1.0, top_k=1)[0][:2] == (9.5, 10.5)
    start, end, _ = propose_moments(times, scores, step=1.0, top_k=1, min_frames=2)[0]
    assert (start, end) == (39.5, 41.5)
    assert all(e - s >= 2 for s, e, _ in propose_moments(times, scores, step=1.0, top_k=5, min_frames=2))


def test_search_proposals_fall_back_to_one_frame_when_no_two_frame_run_exists():
    from vmr_cli.search import _Video

    row = {"path": "v.mp4", "duration": 1.0, "id": 1}
    v = _Video(row, [], np.array([0.5]), np.array([0.8]), 1.0)
    assert len(v.proposals(v.times, v.sims, v.step, 3)) == 1


def test_a_frame_that_is_not_a_number_does_not_hide_its_video():
    """A frame whose embedding is NaN or infinite (float16 overflowing on a GPU) made the video's
    background level and the best score NaN: every threshold failed, and the video gave no moment
    at all (exhaustive: one scored nan, ranked last).  Such a frame counts as never decoded."""
    from vmr_cli.search import _Video

    times = np.arange(0.0, 60.0)
    sims = np.full_like(times, 0.2)
    sims[[20, 21, 22]] = 0.6
    expected = _Video({"path": "v.mp4", "duration": 60.0, "id": 1}, [], times, sims, 1.0)
    for bad in (np.nan, np.inf, -np.inf):
        broken = sims.copy()
        broken[40] = bad
        v = _Video({"path": "v.mp4", "duration": 60.0, "id": 1}, [], times, broken, 1.0)
        found = v.proposals(v.times, v.sims, v.step, 3)
        assert found and found[0] == expected.proposals(times, sims, 1.0, 3)[0]
        assert all(np.isfinite(score) for _s, _e, score in found)
    assert propose_moments(torch.arange(3.0), torch.full((3,), float("nan")), step=1.0) == []


def test_a_trained_trimmers_window_is_scored_by_the_timeline_alone():
    """The network says where; the stored timeline sets the edges and the score, so windows
    of different videos compare (the network's own score does not: README, the trained trimmer)."""
    from vmr_cli.search import _snapped, _Video

    times = np.arange(0.0, 60.0)
    sims = np.full_like(times, 0.2)
    sims[[20, 21, 22]] = 0.6
    v = _Video({"path": "v.mp4", "duration": 60.0, "id": 1}, [], times, sims, 1.0)
    (start, end, level), = v.proposals(times[18:26], sims[18:26], 1.0, 1)
    assert _snapped(v, (18.0, 25.0, 0.9)) == _snapped(v, (18.0, 25.0, 0.01)) == (start, end, level)
    assert 19.0 <= start and end <= 23.5 and level > 0.4
    old = _Video({"path": "v.mp4", "duration": 60.0, "id": 1}, [], times[1::2], sims[1::2], 2.0)
    assert _snapped(old, (20.0, 22.0, 0.01)) == (20.0, 22.0, 0.6)  # one stored frame inside: its own


# --- checkpoint -------------------------------------------------------------------

def test_checkpoint_round_trip(tmp_path):
    w = torch.randn(4, 3, generator=GEN)
    tensors = {"w": w.T, "b": torch.arange(3)}  # a non-contiguous view is fine
    config = {"dim": 3, "weights": [1.0, 0.3, 0.3]}
    save_checkpoint(tmp_path / "ckpt", tensors, config)
    back, cfg = load_checkpoint(tmp_path / "ckpt")
    assert cfg == config and set(back) == {"w", "b"}
    assert torch.equal(back["w"], w.T) and torch.equal(back["b"], torch.arange(3))
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names[0] == "config.json" and len(names) == 2 and names[1].startswith("model-")
    mask = os.umask(0)
    os.umask(mask)
    assert all((p.stat().st_mode & 0o777) == 0o666 & ~mask for p in (tmp_path / "ckpt").iterdir())


def test_checkpoint_weights_and_config_never_disagree(tmp_path):
    """A second save replaces both; a save interrupted before its config was written leaves
    the old pair loadable; weights that do not match their config are refused."""
    from vmr_models.checkpoint import CheckpointError

    folder = tmp_path / "ckpt"
    save_checkpoint(folder, {"w": torch.zeros(2)}, {"v": 1})
    save_checkpoint(folder, {"w": torch.ones(2)}, {"v": 2})
    back, cfg = load_checkpoint(folder)
    assert cfg == {"v": 2} and torch.equal(back["w"], torch.ones(2))
    assert len(list(folder.glob("model-*.safetensors"))) == 1
    (folder / ".weights.staging").write_bytes(b"half a file")  # killed mid-save
    back, cfg = load_checkpoint(folder)
    assert cfg == {"v": 2}
    weights = next(folder.glob("model-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")  # torn or replaced by hand
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(folder)


def test_a_save_deletes_only_vmrs_own_weights_and_stages_under_a_name_of_its_own(tmp_path, monkeypatch):
    """A user's model-backup.safetensors beside the checkpoint survives the next save (every
    model-*.safetensors was deleted); each save stages its weights under a name of its own (a
    fixed one collided between two writers), and a killed save's staged file is still a leftover
    a first save may write over, and goes with the next save."""
    from vmr_models import checkpoint
    from vmr_models.checkpoint import only_leftovers

    folder = tmp_path / "ckpt"
    save_checkpoint(folder, {"w": torch.zeros(2)}, {"v": 1})
    [first] = folder.glob("model-*.safetensors")
    for name in ("model-backup.safetensors", "model-epoch36.safetensors"):
        (folder / name).write_bytes(first.read_bytes())
    staged = []
    real_write = checkpoint.atomic_write
    monkeypatch.setattr(checkpoint, "atomic_write", lambda path, write: (staged.append(path), real_write(path, write)))
    save_checkpoint(folder, {"w": torch.ones(2)}, {"v": 2})
    names = {p.name for p in folder.iterdir()}
    assert {"model-backup.safetensors", "model-epoch36.safetensors"} <= names and first.name not in names
    save_checkpoint(folder, {"w": torch.full((2,), 2.0)}, {"v": 3})
    staged = [os.path.basename(p) for p in staged if not p.endswith("config.json")]
    assert len(set(staged)) == 2 and all(checkpoint.STAGING.fullmatch(name) for name in staged), staged
    leftover = tmp_path / "cut"  # killed between staging and renaming, under the old name and a new one
    leftover.mkdir()
    (leftover / ".weights.staging").write_bytes(b"half")
    (leftover / ".weights-0a1b2c3d.staging").write_bytes(b"half")
    (leftover / "write.lock").write_text("1 vmr train\n")
    assert only_leftovers(leftover, also={"write.lock"}) and not only_leftovers(leftover)
    save_checkpoint(leftover, {"w": torch.zeros(2)}, {"v": 1})
    assert sorted(p.name for p in leftover.iterdir()) == ["config.json", first.name, "write.lock"]


def test_a_save_stopped_after_staging_leaves_no_staged_weights(tmp_path, monkeypatch):
    """A graceful stop of vmr train (SIGTERM, Ctrl-C) between staging the weights and renaming them
    left '.weights-XXXX.staging', the size of the model, in --out."""
    from vmr_models import checkpoint

    def interrupted(path):
        raise KeyboardInterrupt

    folder = tmp_path / "ckpt"
    save_checkpoint(folder, {"w": torch.zeros(2)}, {"v": 1})
    before = sorted(p.name for p in folder.iterdir())
    monkeypatch.setattr(checkpoint, "_sha256", interrupted)  # the signal lands once the file is staged
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, {"w": torch.ones(2)}, {"v": 2})
    assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.parametrize("record", [{"file": 5}, {"file": None}, {"file": ["a"]}, {"file": "../x"}, "x"])
def test_a_config_naming_its_weights_wrongly_is_not_a_checkpoint(record, tmp_path):
    """"_weights": {"file": 5} in a config.json edited by hand was a TypeError traceback."""
    import json

    from vmr_models.checkpoint import CheckpointError

    save_checkpoint(tmp_path, {"w": torch.zeros(2)}, {"v": 1})
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(dict(config, _weights=record)))
    with pytest.raises(CheckpointError, match="names no weights"):
        load_checkpoint(tmp_path)


def test_moment_head_with_baseline_does_not_depend_on_which_frames_were_verified():
    """Trimmed search verifies only frames near the peak: with the video's background level
    given, the window found must be the one found on the whole timeline."""
    from vmr_models.moment_head import propose_moments

    step = 0.25
    times = torch.arange(0, 120, step) + step / 2
    gen = torch.Generator().manual_seed(3)
    scores = 0.2 + 0.02 * torch.randn(times.shape, generator=gen)
    scores[(times > 40) & (times < 44)] += 0.25   # a weaker lead-in ...
    scores[(times > 44) & (times < 58)] += 0.30   # ... then the moment
    full = propose_moments(times, scores, step, top_k=1, baseline=0.2, duration=120)[0]
    near = (times > 36) & (times < 62)            # what a trimmed search decoded
    part = propose_moments(times[near], scores[near], step, top_k=1, baseline=0.2, duration=120)[0]
    assert abs(full[0] - part[0]) <= step and abs(full[1] - part[1]) <= step
    assert 39.5 <= part[0] <= 44.5 and 57.5 <= part[1] <= 58.5


def test_a_still_video_is_one_moment_from_start_to_end():
    """A still video (a title card, a tripod shot of an empty room): its compressed frames differ
    from each other by the encoding's noise, 3e-8 in the query's cosine, and that noise chose the
    moment's edges (a 10 s still video matched 0-7.5 s).  Frames that close count as equal; a real
    difference, far above float16's precision, still sets the edges."""
    from vmr_cli.search import _Video

    times = np.array([0.0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9.9])
    sims = np.full_like(times, 0.270527184009552)
    sims[[8, 9]] = 0.2705271542072296  # as a 10 s green video's stored frames 8 and 9 were
    v = _Video({"path": "v.mp4", "duration": 10.0, "id": 1}, [], times, sims, 1.0)
    (start, end, _score), = v.proposals(v.times, v.sims, v.step, 3)
    assert start == 0.0 and end >= 9.9, (start, end)  # (the last frame's half step: cut at the end later)
    sims[[3, 4, 5]] += 0.05
    moved = _Video({"path": "v.mp4", "duration": 10.0, "id": 1}, [], times, sims, 1.0)
    assert moved.proposals(moved.times, moved.sims, moved.step, 1)[0][:2] == (2.5, 5.5)
