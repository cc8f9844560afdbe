"""Evaluation metrics computed over a whole evaluation set (not averaged per batch)."""

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats


def spearman(true_scores: ArrayLike, pred_scores: ArrayLike) -> float:
    """Spearman rank correlation (scipy), the AQA metric of every paper here."""
    true_scores, pred_scores = np.asarray(true_scores), np.asarray(pred_scores)
    if len(true_scores) < 2 or np.all(pred_scores == pred_scores[0]):
        return 0.0  # Undefined for constant predictions; report no correlation.
    return float(stats.spearmanr(true_scores, pred_scores)[0])


def relative_l2(true_scores: ArrayLike, pred_scores: ArrayLike,
                score_range: Tuple[float, float]) -> float:
    """R-l2 = mean(((s - s_hat) / (s_max - s_min))^2) x 100, range from the training split."""
    low, high = score_range
    if high <= low:
        raise ValueError(f"score range {score_range} is empty")
    diff = (np.asarray(true_scores) - np.asarray(pred_scores)) / (high - low)
    return float(np.mean(diff ** 2) * 100.0)


def compute_metrics(true_scores: ArrayLike, pred_scores: ArrayLike,
                    true_classes: Optional[Dict[str, np.ndarray]] = None,
                    pred_logits: Optional[Dict[str, np.ndarray]] = None,
                    score_range: Optional[Tuple[float, float]] = None) -> Dict[str, float]:
    """All evaluation metrics of one split.

    Samples with a missing score (< 0 or not finite) are left out of the score metrics, and
    samples with a missing class label (-1) out of that sub-action's accuracy.

    Returns:
      dict with `spearman`, `mae` (points), `r_l2` (if `score_range` is not empty),
      `num_samples`, and
      `accuracy/<sub-action>` for every class output given.
    """
    true_scores = np.asarray(true_scores, np.float64)
    pred_scores = np.asarray(pred_scores, np.float64)
    valid = np.isfinite(true_scores) & (true_scores >= 0)
    t, p = true_scores[valid], pred_scores[valid]
    out = {"num_samples": int(len(true_scores)), "spearman": spearman(t, p),
           "mae": float(np.mean(np.abs(t - p))) if len(t) else float("nan")}
    # R-l2 needs a score range; a training split whose scores are all equal has none.
    if score_range is not None and score_range[1] > score_range[0] and len(t):
        out["r_l2"] = relative_l2(t, p, score_range)
    out.update(class_accuracies(true_classes or {}, pred_logits or {}))
    return out


def class_accuracies(true_classes: Dict[str, np.ndarray],
                     pred_logits: Dict[str, np.ndarray]) -> Dict[str, float]:
    """`accuracy/<name>` of every classifier in `pred_logits`, over the samples whose label is
    not missing (-1)."""
    out = {}
    for name, logits in pred_logits.items():
        labels = np.asarray(true_classes[name])
        keep = labels >= 0
        if keep.any():
            out[f"accuracy/{name}"] = float(np.mean(np.argmax(logits[keep], -1) == labels[keep]))
    return out


def majority_rate(labels: ArrayLike) -> float:
    """Accuracy of always predicting the most frequent class (a baseline for accuracies)."""
    labels = np.asarray(labels)
    labels = labels[labels >= 0]
    return float(np.bincount(labels).max() / len(labels)) if len(labels) else float("nan")


def fisher_z_mean(correlations: Sequence[float]) -> float:
    """The average of correlations through Fisher's z (paper 003, after its ref. [6]):
    `tanh(mean(atanh(rho)))`. Correlations of +-1 are clipped just inside (atanh is infinite
    there); NaNs are left out."""
    rhos = np.asarray([r for r in correlations if np.isfinite(r)], np.float64)
    if not len(rhos):
        return float("nan")
    return float(np.tanh(np.mean(np.arctanh(np.clip(rhos, -0.9999999, 0.9999999)))))


def per_action_metrics(true_scores: ArrayLike, pred_scores: ArrayLike, actions: ArrayLike,
                       names: Sequence[str]) -> Dict[str, float]:
    """Spearman per action (`spearman/<name>`, action id `i` named `names[i - 1]`), their
    Fisher-z average `spearman_fisher_z` (the number paper 003 reports) and their plain mean
    `spearman_action_mean`. Samples with a missing score are left out."""
    true_scores = np.asarray(true_scores, np.float64)
    pred_scores = np.asarray(pred_scores, np.float64)
    actions = np.asarray(actions)
    valid = np.isfinite(true_scores) & (true_scores >= 0)
    out = {}
    for action in sorted(set(actions[valid].tolist())):
        keep = valid & (actions == action)
        name = names[action - 1] if 0 < action <= len(names) else f"action_{action}"
        out[f"spearman/{name}"] = spearman(true_scores[keep], pred_scores[keep])
    rhos = list(out.values())
    out["spearman_fisher_z"] = fisher_z_mean(rhos)
    out["spearman_action_mean"] = float(np.nanmean(rhos)) if rhos else float("nan")
    return out


def interval_coverage(true_scores: ArrayLike, low: ArrayLike, high: ArrayLike) -> float:
    """The fraction of samples whose true score lies in its predicted interval [low, high]
    (calibration of a distribution head: about 0.9 for calibrated 90% intervals). Samples with
    a missing score (< 0 or not finite) are left out; NaN when none is left."""
    true_scores = np.asarray(true_scores, np.float64)
    valid = np.isfinite(true_scores) & (true_scores >= 0)
    if not valid.any():
        return float("nan")
    t = true_scores[valid]
    inside = (np.asarray(low)[valid] <= t) & (t <= np.asarray(high)[valid])
    return float(np.mean(inside))
