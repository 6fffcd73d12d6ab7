"""Moment retrieval metrics, in agreement with the Moment-DETR evaluation.

Reference: github.com/jayleicn/moment_detr, ``standalone_eval/eval.py``
(``compute_mr_r1``, ``compute_mr_ap``) and ``standalone_eval/utils.py``
(``compute_average_precision_detection``, ``interpolated_precision_recall``,
itself taken from MMAction2's ``eval_detection.py``). Reimplemented here, not
copied, so numbers reported by ``vmr eval`` can be compared with published
QVHighlights / Charades-STA results.

Conventions (all values are fractions 0..1, not percentages):
- a prediction is ``(start, end, score)``, a ground-truth window ``(start, end)``;
- ``predictions[q]`` lists query q's predictions, best first (as a submission
  file would); ``ground_truth[q]`` lists its relevant windows;
- IoU is the true union (Moment-DETR's paired IoU divides by the hull, which
  equals the union whenever windows overlap and gives 0 otherwise: identical);
- an IoU that equals a threshold counts, up to LEEWAY: computed in floating point, IoU 0.3
  exactly (a 0.1 s annotation grid against 0.5 s predictions) came out a hair below it and
  was a miss (90 of 374 such pairs; Moment-DETR's own float rounding misses 56);
- a query without predictions is a miss (IoU 0, AP 0). Moment-DETR's evaluator
  requires a prediction for every query, so this only makes our numbers
  stricter, never more generous.
"""

from __future__ import annotations

import numpy as np

from vmr_models.moment_head import temporal_iou  # the one definition; re-exported here

# Moment-DETR evaluates at np.linspace(0.5, 0.95, 10), rounded to 2 decimals.
DEFAULT_THRESHOLDS = np.arange(0.5, 0.96, 0.05)
MAX_PRED_WINDOWS = 10  # compute_mr_ap keeps the first 10 windows per query
LEEWAY = 1e-9  # an IoU this close below a threshold is floating-point error, not a miss


def _best_iou(pred: tuple, gts: list) -> float:
    return max((temporal_iou(pred, g) for g in gts), default=0.0)


def _check(predictions: list, ground_truth: list) -> None:
    if len(predictions) != len(ground_truth):
        raise ValueError(
            f"{len(predictions)} prediction lists for {len(ground_truth)} queries")


def recall_at(predictions: list, ground_truth: list, k: int, threshold: float) -> float:
    """Fraction of queries with a top-k prediction of IoU >= threshold with any gt.

    For k=1 this is Moment-DETR's R1@IoU: the top-1 window against the gt
    window it overlaps most.
    """
    _check(predictions, ground_truth)
    if not predictions:
        return 0.0
    thr = round(float(threshold), 2)
    hits = sum(
        any(_best_iou(p, gts) >= thr - LEEWAY for p in preds[:k])
        for preds, gts in zip(predictions, ground_truth))
    return hits / len(predictions)


def mean_iou(predictions: list, ground_truth: list) -> float:
    """Mean over queries of IoU(top-1 prediction, best-matching gt window)."""
    _check(predictions, ground_truth)
    if not predictions:
        return 0.0
    ious = [_best_iou(preds[0], gts) if preds else 0.0
            for preds, gts in zip(predictions, ground_truth)]
    return float(np.mean(ious))


def _interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC 2011 interpolated AP: area under the monotone precision envelope."""
    prec = np.concatenate([[0.0], precision, [0.0]])
    rec = np.concatenate([[0.0], recall, [1.0]])
    prec = np.maximum.accumulate(prec[::-1])[::-1]  # envelope from the right
    steps = np.nonzero(rec[1:] != rec[:-1])[0] + 1
    return float(np.sum((rec[steps] - rec[steps - 1]) * prec[steps]))


def query_average_precision(preds: list, gts: list, thresholds=DEFAULT_THRESHOLDS) -> np.ndarray:
    """AP of one query at each IoU threshold (compute_average_precision_detection).

    Predictions are ranked by score (stable sort); each, in turn, matches the
    highest-IoU gt window not yet taken at that threshold, else it is a false
    positive.
    """
    thresholds = [round(float(t), 2) for t in thresholds]
    ap = np.zeros(len(thresholds))
    if not preds or not gts:
        return ap
    ranked = sorted(preds, key=lambda p: -float(p[2]))
    tp = np.zeros((len(thresholds), len(ranked)))
    taken = np.zeros((len(thresholds), len(gts)), dtype=bool)
    for i, p in enumerate(ranked):
        ious = np.array([temporal_iou(p, g) for g in gts])
        order = np.argsort(ious, kind="stable")[::-1]
        for t, thr in enumerate(thresholds):
            for j in order:
                if ious[j] < thr - LEEWAY:
                    break
                if not taken[t, j]:
                    taken[t, j] = True
                    tp[t, i] = 1
                    break
    tp_cum = np.cumsum(tp, axis=1)
    ranks = np.arange(1, len(ranked) + 1)
    for t in range(len(thresholds)):
        ap[t] = _interpolated_ap(tp_cum[t] / ranks, tp_cum[t] / len(gts))
    return ap


def average_precision(predictions: list, ground_truth: list, thresholds=DEFAULT_THRESHOLDS,
                      max_predictions: int | None = MAX_PRED_WINDOWS) -> float:
    """Moment-DETR MR-mAP: per-query AP at each threshold, mean over queries, then thresholds.

    As in compute_mr_ap only the first ``max_predictions`` windows of each
    query (in the order given) are scored. Averaging a (queries x thresholds)
    array over both axes equals their "mean over queries, then over
    thresholds".
    """
    _check(predictions, ground_truth)
    if not predictions:
        return 0.0
    rows = [query_average_precision(
        preds[:max_predictions] if max_predictions is not None else preds, gts, thresholds)
        for preds, gts in zip(predictions, ground_truth)]
    return float(np.mean(np.stack(rows)))


def summarise(predictions: list, ground_truth: list) -> dict:
    """The headline numbers of ``vmr eval``, as fractions."""
    return {
        "R1@0.3": recall_at(predictions, ground_truth, 1, 0.3),
        "R1@0.5": recall_at(predictions, ground_truth, 1, 0.5),
        "R1@0.7": recall_at(predictions, ground_truth, 1, 0.7),
        "mIoU": mean_iou(predictions, ground_truth),
        "R5@0.5": recall_at(predictions, ground_truth, 5, 0.5),
        "mAP": average_precision(predictions, ground_truth),
    }
