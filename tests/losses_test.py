import numpy as np

from aqa_tf.models import losses


def test_score_loss_is_l1_plus_l2_on_normalised_scores_and_masks_missing():
    loss = losses.ScoreLoss(score_std=17.0)
    y_true = np.array([85.0, 34.0, -1.0], "float32")  # last one missing
    y_pred = np.array([68.0, 34.0, 50.0], "float32")
    per_sample = np.asarray(loss.call(y_true, y_pred))
    np.testing.assert_allclose(per_sample, [1.0 + 1.0, 0.0, 0.0], atol=1e-6)
    d = np.array([-17.0, 0.0]) / 17.0
    # Keras reduction: mean over the batch (the masked sample contributes zero).
    np.testing.assert_allclose(float(loss(y_true, y_pred)), (d ** 2 + abs(d)).sum() / 3, rtol=1e-6)


def test_masked_cross_entropy_ignores_missing_labels():
    loss = losses.MaskedSparseCategoricalCrossentropy()
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]], "float32"))
    per_sample = np.asarray(loss.call(np.array([0, -1]), logits))
    np.testing.assert_allclose(per_sample, [-np.log(0.5), 0.0], rtol=1e-5)


def test_model_losses_come_from_its_heads_with_the_configured_weights():
    from aqa_tf.config import DataConfig, ModelConfig, TrainConfig
    from aqa_tf.models import aqa_model
    model = aqa_model.build_aqa_model(
        ModelConfig(backbone="c3d", width_multiplier=0.0625, fc_units=8,
                    heads=("score", "dive"), num_classes=(("position", 3), ("twists", 4))),
        DataConfig(sample_length=16, num_frames=16, crop_size=32))
    l, w = model.loss_dicts(TrainConfig(score_loss_weight=1.0, class_loss_weight=0.5))
    assert w == {"score": 1.0, "position": 0.5, "twists": 0.5}
    assert isinstance(l["score"], losses.ScoreLoss)
    assert isinstance(l["twists"], losses.MaskedSparseCategoricalCrossentropy)


def test_signed_score_loss_keeps_negative_targets_and_masks_nan():
    """Per-action standardised targets are signed; a missing one is NaN and adds nothing (nor a
    NaN gradient)."""
    import tensorflow as tf
    loss = losses.ScoreLoss(1.0, signed=True)
    y_true = np.array([-0.5, 1.0, np.nan], "float32")
    y_pred = tf.Variable(np.array([0.5, 1.0, 3.0], "float32"))
    with tf.GradientTape() as tape:
        per_sample = loss.call(y_true, y_pred)
        total = tf.reduce_sum(per_sample)
    np.testing.assert_allclose(np.asarray(per_sample), [1.0 + 1.0, 0.0, 0.0], atol=1e-6)
    assert np.isfinite(tape.gradient(total, y_pred).numpy()).all()
    assert losses.ScoreLoss.from_config(loss.get_config()).signed
