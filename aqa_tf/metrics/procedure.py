"""How well a dive's steps are found (FineDiving, Xu et al., CVPR 2022: AIoU, the
average IoU of the predicted step against the annotated one at a threshold), as the authors'
`utils/misc.py` (`segment_iou`, `cal_tiou`) and `tools/helper.py` compute it. NumPy only.

A dive has two transitions `[t1, t2]`: the first frames of its second and third steps (the
annotation's `transits + 1`, `tools/runner.py`). The IoU is that of the middle step, the
segment `[t1, t2]`, against the predicted `[p1, p2]`.
"""

import sys
from typing import Dict, Sequence

import numpy as np

# The authors' epsilon in the IoU's denominator (`utils/misc.py`).
EPSILON = sys.float_info.epsilon


def segment_iou(target, predicted) -> np.ndarray:
    """IoU of the segments `[t1, t2]` and `[p1, p2]` (their `segment_iou`): the overlap
    `max(0, min(t2, p2) - max(t1, p1))` over `(p2 - p1) + (t2 - t1) - overlap + epsilon`.

    Args:
        target, predicted: `[..., 2]` frame indices (broadcast against each other).

    Returns:
        `[...]` float64 IoUs.
    """
    target = np.asarray(target, np.float64)
    predicted = np.asarray(predicted, np.float64)
    overlap = np.clip(np.minimum(target[..., 1], predicted[..., 1]) -
                      np.maximum(target[..., 0], predicted[..., 0]), 0, None)
    union = (predicted[..., 1] - predicted[..., 0]) + (target[..., 1] - target[..., 0]) - overlap
    return overlap / (union + EPSILON)


def aiou(targets, predictions, thresholds: Sequence[float] = (0.5, 0.75)
         ) -> Dict[float, float]:
    """AIoU at each threshold: the fraction of queries whose IoU is >= the threshold.

    Args:
        targets: `[n, 2]` annotated transitions.
        predictions: `[n, 2]`, or `[n, voters, 2]` when a query was scored against several
            exemplars: then, as their `network_forward_test`, the query's IoUs over its voters
            are averaged before the threshold (their test batch is 1 query).
        thresholds: the IoU thresholds (theirs: 0.5 and 0.75).

    Returns:
        `{threshold: fraction}`.
    """
    targets = np.asarray(targets, np.float64).reshape(-1, 2)
    predictions = np.asarray(predictions, np.float64)
    if predictions.ndim == 2:
        predictions = predictions[:, None]
    if predictions.ndim != 3 or predictions.shape[0] != targets.shape[0] or \
            predictions.shape[-1] != 2:
        raise ValueError(f"predictions of shape {predictions.shape} do not fit targets "
                         f"{targets.shape}: expected [n, 2] or [n, voters, 2]")
    if targets.shape[0] == 0:
        raise ValueError("aiou of no queries")
    iou = segment_iou(targets[:, None], predictions).mean(axis=1)
    return {float(t): float(np.mean(iou >= t)) for t in thresholds}
