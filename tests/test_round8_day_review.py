"""The day's change of round 8 read again (2026-12-02): each test failed on the code before its fix."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vmr_cli.errors import VmrError


def test_a_jsonl_line_cut_short_is_not_taken_for_an_indented_file(tmp_path):
    """A JSONL file whose later line lost its closing brace (cut short by a download, a hand edit):
    the line was said to be an indented file's ('jq -c . FILE writes an indented file so'), which
    it is not: the lines before it are records one a line.  Line 1 of an indented file still is."""
    from vmr_cli.evaluate import read_annotations

    record = {"qid": 1, "query": "a green screen", "vid": "green", "relevant_windows": [[0, 2]]}
    path = tmp_path / "ann.jsonl"
    for cut in ('{"qid": 2, "query": "a red screen", "vid": "green", "relevant_windows": [[0, 2]]',
                '{"qid": 2, "query": "a red screen",'):
        path.write_text(json.dumps(record) + "\n" + cut + "\n")
        with pytest.raises(VmrError) as raised:
            read_annotations(str(path))
        said = str(raised.value)
        assert said.startswith(f"{path}:2: ") and "indented" not in said, said
        assert "does not end on its line" in said, said
    path.write_text(json.dumps(record, indent=2) + "\n")
    with pytest.raises(VmrError, match=r":1: a JSON object that does not end on its line; .*indented file so"):
        read_annotations(str(path))


def test_a_trimmer_window_over_frames_that_are_not_a_number_does_not_end_the_search():
    """The day's change made a frame whose embedding overflowed (NaN, inf) count as not decoded in
    the moment head, but a trained trimmer's window is snapped to the stored timeline apart from
    it: a window whose frames were all such frames raised 'ValueError: not enough values to
    unpack' (search --trimmer, eval --trimmer and train's validation ended in a traceback), and one
    over a single such frame of an old shard was scored NaN.  Such a window gives no moment now;
    a window with some of them is snapped as without them."""
    from vmr_cli.search import _Video, trimmer_moments

    times = np.arange(0.0, 60.0)
    sims = np.full_like(times, 0.2)
    sims[[20, 21, 22]] = 0.6
    row = {"path": "v.mp4", "duration": 60.0, "id": 1}
    expected = trimmer_moments(_Video(row, [], times, sims, 1.0), [(20, 22, 0.9)], 3)
    broken = sims.copy()
    broken[[30, 31, 32]] = np.nan
    broken[23] = np.inf
    v = _Video(row, [], times, broken, 1.0)
    assert trimmer_moments(v, [(30, 32, 0.9)], 3) == []
    assert trimmer_moments(v, [(30, 32, 0.9), (20, 23, 0.5)], 3) == expected
    old = _Video(row, [], np.array([1.0, 3.0, 5.0]), np.array([0.3, np.nan, 0.5]), 2.0)  # one middle frame a clip
    found = trimmer_moments(old, [(2, 4, 0.9), (4, 6, 0.5)], 3)
    assert found and all(np.isfinite(score) for _s, _e, score in found), found


def test_a_frame_that_is_not_a_number_inside_a_moment_does_not_split_it():
    """The day's change drops a frame whose score is NaN or infinite (an embedding float16 overflowed
    on), but the frames either side were then a gap apart, as if an unverified clip lay between
    them: one such frame inside a 6 s moment split it in two (19.5-21.5 and 22.5-25.5, IoU 0.31
    with the moment: a miss at R1@0.5).  The moment is found whole now."""
    import torch

    from vmr_cli.search import _Video
    from vmr_models.moment_head import propose_moments

    times = np.arange(0.0, 60.0)
    sims = np.full_like(times, 0.2)
    sims[20:26] = 0.6
    row = {"path": "v.mp4", "duration": 60.0, "id": 1}
    whole = _Video(row, [], times, sims, 1.0)
    expected = whole.kept(whole.proposals(times, sims, 1.0, 3), 3)
    assert expected[0][:2] == (19.5, 25.5)
    for bad in (np.nan, np.inf):
        broken = sims.copy()
        broken[22] = bad
        v = _Video(row, [], times, broken, 1.0)
        assert v.kept(v.proposals(times, broken, 1.0, 3), 3)[0][:2] == (19.5, 25.5)
    # a real gap (frames never stored or decoded there) still breaks a run
    gap = np.concatenate([times[:22], times[23:]])
    found = propose_moments(torch.as_tensor(gap), torch.as_tensor(np.delete(sims, 22)), 1.0, top_k=3,
                            baseline=0.2, duration=60.0)
    assert all(not (s < 22 < e) for s, e, _score in found), found


def test_a_frame_that_is_not_a_number_does_not_move_a_refined_edge():
    """One stored frame inside a window with a NaN score made the window's level NaN, so no cut
    beat another when its edges were refined and each edge went to the first decoded frame
    outside: the start 0.75 s early.  Such a frame is left out of the level, and an edge whose
    stored frame has no score is left as it was."""
    from vmr_cli.search import _edges, _refined, _Video

    times = np.arange(0.0, 60.0)
    sims = np.full_like(times, 0.2)
    sims[20:26] = 0.6
    row = {"path": "v.mp4", "duration": 60.0, "id": 1}

    def refined(scores):
        window = (_Video(row, [], times, scores, 1.0), 19.5, 25.5, 0.7)
        edges = _edges(window, 2.0)
        decoded = {x: 0.6 if 20.0 <= x < 26.0 else 0.2 for edge in edges for x in edge[-1]}
        return _refined(window, edges, decoded)

    expected = refined(sims)
    assert expected[0] == 19.875
    inside, outside = sims.copy(), sims.copy()
    inside[22] = np.nan
    outside[19] = np.inf
    assert refined(inside) == expected
    assert refined(outside) == (19.5, expected[1])  # the start is not refined against a frame with no score


def test_a_long_stretch_of_frames_that_are_not_a_number_still_parts_two_moments():
    """The frame left out for a NaN or infinite score no longer broke the run around it, however
    many there were: two 5 s moments 30 s apart with the 30 frames between them not a number (a
    scene the old float16 encoder overflowed on) became one moment 9.5-49.5 s (IoU 0.125 with
    either: both missed), where the same frames never stored gave both."""
    from vmr_cli.search import _Video

    times = np.arange(0.0, 60.0)
    sims = np.full_like(times, 0.2)
    sims[10:15] = 0.6
    sims[45:50] = 0.6
    row = {"path": "v.mp4", "duration": 60.0, "id": 1}
    for first, last in ((15, 45), (16, 44)):
        broken = sims.copy()
        broken[first:last] = np.nan
        v = _Video(row, [], times, broken, 1.0)
        found = sorted(w[:2] for w in v.kept(v.proposals(times, broken, 1.0, 3), 3)[:2])
        assert found == [(9.5, 14.5), (44.5, 49.5)], found
