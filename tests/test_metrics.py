"""Hand-computed checks of the Moment-DETR-compatible metrics."""

import pytest

from vmr_cli.metrics import (average_precision, mean_iou, query_average_precision,
                             recall_at, summarise, temporal_iou)


def test_temporal_iou_cases():
    assert temporal_iou((0, 10), (5, 15)) == pytest.approx(1 / 3)
    assert temporal_iou((0, 10), (0, 10)) == 1.0
    assert temporal_iou((0, 10), (10, 20)) == 0.0
    assert temporal_iou((0, 10), (20, 30)) == 0.0
    assert temporal_iou((2, 4), (0, 10)) == pytest.approx(0.2)
    assert temporal_iou((3, 3), (3, 3)) == 0.0  # empty: no division by zero


def test_perfect_predictions_score_one_everywhere():
    gt = [[(0, 10)], [(5, 8), (20, 30)]]
    preds = [[(0, 10, 0.9)], [(5, 8, 0.8), (20, 30, 0.7)]]
    assert all(v == pytest.approx(1.0) for v in summarise(preds, gt).values())


def test_query_without_predictions_is_a_miss():
    gt = [[(0, 10)], [(0, 10)]]
    preds = [[(0, 10, 1.0)], []]
    s = summarise(preds, gt)
    assert s["R1@0.5"] == 0.5 and s["R5@0.5"] == 0.5
    assert s["mIoU"] == 0.5 and s["mAP"] == pytest.approx(0.5)


def test_recall_uses_top1_and_topk_and_best_gt():
    gt = [[(0, 10), (50, 60)]]
    preds = [[(100, 110, 0.9), (52, 60, 0.8)]]  # top-1 misses, 2nd has IoU 0.8
    assert recall_at(preds, gt, 1, 0.5) == 0.0
    assert recall_at(preds, gt, 5, 0.5) == 1.0
    assert recall_at(preds, gt, 5, 0.85) == 0.0
    assert mean_iou(preds, gt) == 0.0
    # threshold is inclusive: IoU exactly 0.5 counts at 0.5
    assert recall_at([[(0, 10, 1.0)]], [[(0, 5)]], 1, 0.5) == 1.0


def test_map_hand_example():
    # gt windows (0,10) and (20,30); ranked predictions:
    #   (0,10) IoU 1.0 with gt0; (40,50) IoU 0 -> FP; (20,28) IoU 8/10 = 0.8 with gt1.
    # Thresholds 0.50..0.80 (7 of them): TP, FP, TP
    #   precision 1, 1/2, 2/3; recall 1/2, 1/2, 1
    #   envelope at recall 1/2 is 1, at recall 1 is 2/3 -> AP = .5*1 + .5*2/3 = 5/6
    # Thresholds 0.85, 0.90, 0.95 (3): TP, FP, FP -> recall tops at 1/2 -> AP = 1/2
    # mAP = (7 * 5/6 + 3 * 1/2) / 10 = 0.73333...
    gt = [(0, 10), (20, 30)]
    preds = [(20, 28, 0.7), (0, 10, 0.9), (40, 50, 0.8)]  # unsorted on purpose
    ap = query_average_precision(preds, gt)
    assert ap[:7] == pytest.approx([5 / 6] * 7)
    assert ap[7:] == pytest.approx([0.5] * 3)
    assert average_precision([preds], [gt]) == pytest.approx(0.73333333)
    # a second query without predictions contributes AP 0
    assert average_precision([preds, []], [gt, [(0, 1)]]) == pytest.approx(0.36666667)


def test_map_each_gt_matched_once():
    # two predictions on the same gt: the second is a false positive
    # ranked TP, FP: precision 1, 1/2; recall 1, 1 -> AP 1.0 (envelope at recall 1 is 1)
    assert average_precision([[(0, 10, 0.9), (0, 10, 0.8)]], [[(0, 10)]]) == pytest.approx(1.0)
    # FP ranked first: precision 0, 1/2; recall 0, 1 -> AP 0.5
    assert average_precision([[(50, 60, 0.9), (0, 10, 0.8)]], [[(0, 10)]]) == pytest.approx(0.5)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        summarise([[]], [])


def test_an_iou_exactly_at_the_threshold_counts_despite_floating_point():
    """IoU 0.3 and 0.5 exactly (a 0.1 s annotation grid, 0.5 s predictions) came out a hair
    below in floating point and were misses, against the inclusive threshold."""
    assert temporal_iou((16.5, 29.0), (0.0, 25.2)) < 0.3  # 8.7 / 29 = 0.3 exactly
    assert recall_at([[(16.5, 29.0, 1.0)]], [[(0.0, 25.2)]], 1, 0.3) == 1.0
    assert temporal_iou((12.0, 23.5), (10.1, 18.7)) < 0.5  # 6.7 / 13.4 = 0.5 exactly
    assert query_average_precision([(12.0, 23.5, 1.0)], [(10.1, 18.7)])[0] == 1.0  # at 0.5


def test_the_random_baseline_guesses_as_many_windows_as_search_returns():
    """One random window per query made the random R5@0.5 its R1@0.5 (19 where five guesses reach
    69 on 10 s moments in 30 s videos), and its mAP that of one guess against search's ten; ten
    windows where search returned one or two read five guesses against search's two."""
    from types import SimpleNamespace

    from vmr_cli.evaluate import random_baseline

    videos = [{"path": f"/v/{n}.mp4", "duration": 30.0} for n in range(3)]
    library = SimpleNamespace(catalog=SimpleNamespace(videos=lambda status: videos))
    items = [{"vid": str(n % 3)} for n in range(300)]
    files = {str(n): f"/v/{n}.mp4" for n in range(3)}
    truth = [[(10.0, 20.0)] for _ in items]
    scores = random_baseline(library, items, files, truth, [10] * 300, [10] * 300)
    assert scores["single"]["R5@0.5"] > scores["single"]["R1@0.5"] + 0.3
    assert scores["corpus"]["R5@0.5"] > scores["corpus"]["R1@0.5"]
    assert random_baseline(library, items, files, truth, [10] * 300, [10] * 300) == scores  # the same for a seed
    one = random_baseline(library, items, files, truth, [1] * 300, [2] * 300)  # search returned one, two
    assert one["single"]["R5@0.5"] == one["single"]["R1@0.5"] < scores["single"]["R5@0.5"] - 0.3
    assert one["corpus"]["R5@0.5"] < scores["corpus"]["R5@0.5"]
