"""Evaluation helpers: the checkpoint selection rules."""

import pytest

from aqa_tf.training import evaluation


def test_selection_criterion():
    metrics = {"spearman": 0.8, "mae": 3.0, "accuracy/position": 0.5, "accuracy/twists": 0.7}
    assert evaluation.selection_criterion(metrics, "spearman") == pytest.approx(0.8)
    assert evaluation.selection_criterion(metrics, "spearman_accuracy") == pytest.approx(1.4)
    # A score-only model: rho alone.
    assert evaluation.selection_criterion({"spearman": 0.5}, "spearman_accuracy") == 0.5
    with pytest.raises(ValueError, match="select_on='best'"):
        evaluation.selection_criterion(metrics, "best")
