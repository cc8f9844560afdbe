"""Losses of paper 001 (eq. 1-4), masked so that samples with a missing label add nothing."""

import keras
from keras import ops



@keras.saving.register_keras_serializable(package="aqa_tf")
class ScoreLoss(keras.losses.Loss):
    """L2 + L1 distance on normalised scores (paper 001, eq. 1; authors' MSELoss + L1Loss).

    Both scores are divided by `score_std` (17 for MTL-AQA) before the distance. Samples whose
    true score is missing (negative, the schema's -1, unless `signed`) or not finite get zero
    loss. `signed`: targets may be negative (per-action standardised scores); only non-finite
    ones are missing.

    y_true: `[batch]` scores in points. y_pred: `[batch]` scores in points.
    """

    def __init__(self, score_std: float = 17.0, l1_weight: float = 1.0, l2_weight: float = 1.0,
                 signed: bool = False, name: str = "score_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.score_std = float(score_std)
        self.signed = bool(signed)
        self.l1_weight = float(l1_weight)
        self.l2_weight = float(l2_weight)

    def call(self, y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, "float32"), (-1,))
        y_pred = ops.reshape(ops.cast(y_pred, "float32"), (-1,))
        valid = ops.isfinite(y_true)
        if not self.signed:
            valid = ops.logical_and(valid, y_true >= 0.0)
        diff = ops.where(valid, (y_pred - ops.where(valid, y_true, 0.0)) / self.score_std, 0.0)
        return self.l2_weight * ops.square(diff) + self.l1_weight * ops.abs(diff)

    def get_config(self):
        return {**super().get_config(), "score_std": self.score_std,
                "l1_weight": self.l1_weight, "l2_weight": self.l2_weight,
                "signed": self.signed}


@keras.saving.register_keras_serializable(package="aqa_tf")
class MaskedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy from logits (paper 001, eq. 2) ignoring labels equal to `MISSING_INT` (-1).

    y_true: `[batch]` int class ids. y_pred: `[batch, num_classes]` logits.
    """

    def __init__(self, name: str = "masked_sparse_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        valid = y_true >= 0
        safe = ops.where(valid, y_true, 0)
        ce = keras.losses.sparse_categorical_crossentropy(
            safe, ops.cast(y_pred, "float32"), from_logits=True)
        return ops.where(valid, ce, 0.0)


@keras.saving.register_keras_serializable(package="aqa_tf")
class CaptionLoss(keras.losses.Loss):
    """Masked negative log-likelihood of the caption words (paper 001, eq. 3; the authors'
    `LanguageModelCriterion`): summed over the real words of each caption (targets >= 0;
    padding is -1 and adds nothing) and averaged over the batch. A sample without a caption
    (all -1) contributes zero but stays in the batch.

    y_true: `[batch, steps]` next-word ids (-1: padding). y_pred: `[batch, steps, vocab]` logits.
    """

    def __init__(self, name: str = "caption_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        valid = y_true >= 0
        nll = keras.losses.sparse_categorical_crossentropy(
            ops.where(valid, y_true, 0), ops.cast(y_pred, "float32"), from_logits=True)
        return ops.sum(ops.where(valid, nll, 0.0), axis=-1)
