"""Metrics for face decisions: ROC, AUC, equal error rate, FAR/FRR, calibration (ECE).

Shapes: y_true (N,) of 0/1 (1 = positive: "is person XYZ", "same person"); scores (N,) real,
higher = more likely positive; proba (N,) probabilities of the positive class, or (N, C) rows of
class probabilities for the multiclass ECE. Decision rule everywhere: accept when
``score >= threshold`` (the course's rule).

`roc_curve` and `roc_auc` agree with scikit-learn's `roc_curve(drop_intermediate=False)` and
`roc_auc_score`; `reliability_curve` with `sklearn.calibration.calibration_curve` (uniform bins).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "roc_curve",
    "roc_auc",
    "eer",
    "far_frr",
    "threshold_at_far",
    "ece",
    "reliability_curve",
    "accuracy",
]


def _binary(y_true, scores, where: str, need_both=True):
    y = np.asarray(y_true)
    s = np.asarray(scores)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{where}: y_true must hold 0/1 labels; got dtype {y.dtype}")
    if s.dtype.kind not in "iuf":
        raise TypeError(f"{where}: scores must be real numbers; got dtype {s.dtype}")
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"{where}: y_true and scores must be 1-D of the same length (N,); got "
                         f"shapes {y.shape} and {s.shape}")
    if y.size == 0:
        raise ValueError(f"{where}: empty input; need at least one example")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"{where}: y_true must hold only 0 and 1; got values {np.unique(y)[:10]}")
    s = s.astype(np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{where}: scores contain NaN or infinity; remove or fix those examples")
    y = y.astype(np.int64)
    if need_both and (y.min() == y.max()):
        raise ValueError(f"{where}: y_true holds only one class ({int(y[0])}); ROC-based metrics "
                         "need both positives and negatives")
    return y, s


def roc_curve(y_true, scores):
    """(fpr, tpr, thresholds), thresholds decreasing; the first point is (0, 0) at +inf.

    Point i: accept every score >= thresholds[i]. Matches scikit-learn's
    ``roc_curve(y_true, scores, drop_intermediate=False)``.
    """
    y, s = _binary(y_true, scores, "roc_curve")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], y.size - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    thresholds = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thresholds


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve (ties count one half), as scikit-learn's roc_auc_score."""
    fpr, tpr, _ = roc_curve(y_true, scores)
    return float(np.trapezoid(tpr, fpr))


def far_frr(y_true, scores, threshold):
    """(FAR, FRR) at `threshold` with the rule accept = score >= threshold.

    FAR = accepted negatives / negatives (false accepts), FRR = rejected positives / positives.
    `threshold` may be a scalar (floats back) or an array (arrays back).
    """
    y, s = _binary(y_true, scores, "far_frr")
    t = np.asarray(threshold, dtype=np.float64)
    if np.any(np.isnan(t)):
        raise ValueError("far_frr: threshold is NaN; pass a real number")
    acc = s[None, :] >= t.reshape(-1, 1)
    far = (acc & (y == 0)).sum(axis=1) / max(int((y == 0).sum()), 1)
    frr = (~acc & (y == 1)).sum(axis=1) / max(int((y == 1).sum()), 1)
    if t.ndim == 0:
        return float(far[0]), float(frr[0])
    return far.reshape(t.shape), frr.reshape(t.shape)


def eer(y_true, scores, *, return_threshold=False):
    """Equal error rate: where FAR = FRR, linearly interpolated along the ROC curve.

    Returns the EER (float), or (eer, threshold) with `return_threshold=True`, the threshold
    being the ROC point nearest the crossing.
    """
    fpr, tpr, thr = roc_curve(y_true, scores)
    fnr = 1.0 - tpr
    diff = fnr - fpr  # decreasing from 1 to -1 along the curve
    i = int(np.nonzero(diff <= 0)[0][0])
    if i == 0 or diff[i] == 0:
        value = fpr[i] if diff[i] == 0 else (fpr[i] + fnr[i]) / 2
    else:
        d0, d1 = diff[i - 1], diff[i]
        w = d0 / (d0 - d1)
        value = fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
    j = i if i == 0 or abs(diff[i]) <= abs(diff[i - 1]) else i - 1
    t = float(thr[j]) if np.isfinite(thr[j]) else float(thr[1])
    return (float(value), t) if return_threshold else float(value)


def threshold_at_far(y_true, scores, target_far: float) -> float:
    """The lowest threshold whose FAR (rule score >= threshold) is at most `target_far`."""
    if not 0.0 <= float(target_far) <= 1.0:
        raise ValueError(f"threshold_at_far: target_far must lie in [0, 1]; got {target_far}")
    fpr, _, thr = roc_curve(y_true, scores)
    ok = np.nonzero(fpr <= target_far)[0]
    j = int(ok[-1])
    if not np.isfinite(thr[j]):  # only the empty-accept point qualifies: above the top score
        return float(np.nextafter(thr[1], np.inf))
    return float(thr[j])


def _proba(y_true, proba, where):
    p = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y_true)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{where}: y_true must hold integer labels; got dtype {y.dtype}")
    if p.ndim not in (1, 2) or y.ndim != 1 or p.shape[0] != y.shape[0]:
        raise ValueError(f"{where}: expected y_true (N,) and proba (N,) or (N, C); got shapes "
                         f"{y.shape} and {p.shape}")
    if p.shape[0] == 0:
        raise ValueError(f"{where}: empty input; need at least one example")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError(f"{where}: proba must be probabilities in [0, 1]; got values from "
                         f"{np.nanmin(p)} to {np.nanmax(p)}")
    if p.ndim == 1:
        if not np.all((y == 0) | (y == 1)):
            raise ValueError(f"{where}: with proba (N,) y_true must be 0/1; got {np.unique(y)[:10]}")
        return y.astype(np.float64), p
    C = p.shape[1]
    if np.any(y < 0) or np.any(y >= C) or np.any(np.mod(y, 1) != 0):
        raise ValueError(f"{where}: labels must be integers in 0..{C - 1}; got {np.unique(y)[:10]}")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y.astype(np.int64)).astype(np.float64)
    return correct, conf


def _bins(p, n_bins):
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    return np.searchsorted(edges[1:-1], p), int(n_bins)


def reliability_curve(y_true, proba, n_bins=10):
    """(mean_predicted, fraction_positive, counts) over equal-width bins, empty bins dropped.

    Binary proba (N,): fraction of positives per bin (as sklearn's calibration_curve);
    multiclass proba (N, C): confidence (max probability) vs accuracy per bin.
    """
    y, p = _proba(y_true, proba, "reliability_curve")
    ids, n = _bins(p, n_bins)
    counts = np.bincount(ids, minlength=n)
    sums_p = np.bincount(ids, weights=p, minlength=n)
    sums_y = np.bincount(ids, weights=y, minlength=n)
    keep = counts > 0
    return sums_p[keep] / counts[keep], sums_y[keep] / counts[keep], counts[keep]


def ece(y_true, proba, n_bins=10) -> float:
    """Expected calibration error: sum over bins of (bin size / N) * |mean p - observed rate|.

    Binary proba (N,) of the positive class, or multiclass proba (N, C) (top-label ECE).
    """
    mean_p, frac, counts = reliability_curve(y_true, proba, n_bins)
    return float(np.sum(counts * np.abs(mean_p - frac)) / counts.sum())


def accuracy(y_true, y_pred) -> float:
    """Fraction of equal labels; y_true and y_pred (N,)."""
    a, b = np.asarray(y_true), np.asarray(y_pred)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"accuracy: y_true and y_pred must be 1-D of one non-zero length; got "
                         f"{a.shape} and {b.shape}")
    return float(np.mean(a == b))
