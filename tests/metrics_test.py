import numpy as np
from scipy import stats

from aqa_tf.metrics import scores as metrics


def test_compute_metrics_numbers():
    true = np.array([10.0, 20.0, 30.0, 40.0, -1.0])
    pred = np.array([12.0, 18.0, 35.0, 39.0, 99.0])
    logits = np.array([[2, 0], [0, 2], [2, 0], [2, 0], [0, 2]], "float32")
    labels = np.array([0, 1, 1, -1, 1])
    m = metrics.compute_metrics(true, pred, {"armstand": labels}, {"armstand": logits},
                                score_range=(0.0, 100.0))
    assert m["num_samples"] == 5
    assert abs(m["spearman"] - stats.spearmanr(true[:4], pred[:4])[0]) < 1e-12
    assert abs(m["mae"] - np.mean([2, 2, 5, 1])) < 1e-12
    assert abs(m["r_l2"] - np.mean((np.array([2, 2, 5, 1]) / 100.0) ** 2) * 100) < 1e-12
    assert abs(m["accuracy/armstand"] - 3 / 4) < 1e-12  # label -1 left out


def test_constant_prediction_has_zero_correlation_and_majority_rate():
    assert metrics.spearman([1, 2, 3], [5, 5, 5]) == 0.0
    assert metrics.majority_rate([0, 1, 1, 2, -1]) == 0.5


def test_an_empty_score_range_leaves_r_l2_out():
    out = metrics.compute_metrics([30.0, 40.0], [31.0, 38.0], score_range=(36.0, 36.0))
    assert "r_l2" not in out and out["mae"] == 1.5
