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


def gaussian_bin_target(centre, bins: int, std: float):
    """Soft labels of USDL/MUSDL: a Gaussian of deviation `std` (in bins) centred on `centre`
    (in bins, any shape `[...]`), evaluated at the bin indices 0..bins-1 and normalised to sum 1
    over the bins -> `[..., bins]`.

    As the authors' `MTL-AQA/dataset.py` (`proc_label`): scipy's normal pdf on the integer grid,
    divided by its sum (the pdf's constant factor cancels in that division, so it is left out).
    """
    grid = ops.arange(bins, dtype="float32")
    z = (grid - ops.expand_dims(ops.cast(centre, "float32"), -1)) / float(std)
    density = ops.exp(-0.5 * ops.square(z))
    return density / ops.sum(density, axis=-1, keepdims=True)


def kl_divergence(target, probabilities, epsilon: float = 1e-12):
    """KL(target || predicted) summed over the last axis; bins where the target is 0 add 0 (as
    torch's `KLDivLoss`, which the authors apply to `log(softmax)`). Predicted probabilities are
    floored at `epsilon` before the log."""
    log_ratio = ops.log(ops.maximum(target, epsilon)) - ops.log(
        ops.maximum(ops.cast(probabilities, "float32"), epsilon))
    return ops.sum(ops.where(target > 0.0, target * log_ratio, 0.0), axis=-1)


def score_to_bins(score, low: float, high: float, bins: int):
    """A score in points -> its position on a grid of `bins` bins spread evenly over
    `low`..`high` (bin units: `low` is 0, `high` is bins - 1)."""
    return (score - low) * (bins - 1) / (high - low)


@keras.saving.register_keras_serializable(package="aqa_tf")
class ScoreDistributionLoss(keras.losses.Loss):
    """USDL (Tang et al., CVPR 2020): KL(Gaussian target || predicted distribution) over the
    score bins.

    The true score in points is mapped onto the bin grid over `score_min`..`score_max` as the
    authors do (`MTL-AQA/dataset.py`: `score * (bins - 1) / score_max` with score_max =
    `label_max` 104.5 of their `opts.py`; `JIGSAWS/main.py`: 25 bins at the total GRS 6..30),
    and the target is a Gaussian of deviation `std` bins there (their `--std`: MTL-AQA 5,
    JIGSAWS 1). Per sample the KL is summed over the bins; torch's `KLDivLoss()` of their
    `main.py` averages over bins and batch, i.e. this loss / bins: a constant factor (use the
    loss weight to match it). Samples whose score is missing (negative or not finite) add zero.

    y_true: `[batch]` scores in points. y_pred: `[batch, bins]` probabilities.
    """

    def __init__(self, bins: int = 101, std: float = 5.0, score_max: float = 104.5,
                 score_min: float = 0.0, name: str = "score_distribution_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.bins, self.std, self.score_max = int(bins), float(std), float(score_max)
        self.score_min = float(score_min)

    def call(self, y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, "float32"), (-1,))
        valid = ops.logical_and(ops.isfinite(y_true), y_true >= 0.0)
        centre = score_to_bins(ops.where(valid, y_true, self.score_min), self.score_min,
                               self.score_max, self.bins)
        kl = kl_divergence(gaussian_bin_target(centre, self.bins, self.std), y_pred)
        return ops.where(valid, kl, 0.0)

    def get_config(self):
        return {**super().get_config(), "bins": self.bins, "std": self.std,
                "score_max": self.score_max, "score_min": self.score_min}


@keras.saving.register_keras_serializable(package="aqa_tf")
class JudgeDistributionLoss(keras.losses.Loss):
    """MUSDL (Tang et al., CVPR 2020): one USDL loss per judge, over that judge's score bins.

    A judge's score (`judge_min`..`judge_max`) is mapped onto the grid of `bins` bins over that
    range (authors' `MTL-AQA/dataset.py`: 21 bins over 0..10, 0.5 points apart;
    `JIGSAWS/main.py`: 5 bins at the GRS elements' 1..5) with a Gaussian target of deviation
    `std` bins. The per-judge KLs are averaged over the judges present: a missing judge (score
    < 0, the records' -1, or not finite) adds nothing, and a sample without any judge adds zero.
    The authors' `main.py` sums the judges' `KLDivLoss()` (each averaged over bins and batch):
    with every judge present this loss is theirs x bins / judges.

    y_true: `[batch, judges]` judge scores. y_pred: `[batch, judges, bins]` probabilities.
    """

    def __init__(self, bins: int = 21, std: float = 5.0, judge_max: float = 10.0,
                 judge_min: float = 0.0, name: str = "judge_distribution_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.bins, self.std, self.judge_max = int(bins), float(std), float(judge_max)
        self.judge_min = float(judge_min)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        valid = ops.logical_and(ops.isfinite(y_true), y_true >= 0.0)
        centre = score_to_bins(ops.where(valid, y_true, self.judge_min), self.judge_min,
                               self.judge_max, self.bins)
        kl = ops.where(valid, kl_divergence(gaussian_bin_target(centre, self.bins, self.std),
                                            y_pred), 0.0)
        present = ops.sum(ops.cast(valid, "float32"), axis=-1)
        return ops.sum(kl, axis=-1) / ops.maximum(present, 1.0)

    def get_config(self):
        return {**super().get_config(), "bins": self.bins, "std": self.std,
                "judge_max": self.judge_max, "judge_min": self.judge_min}


@keras.saving.register_keras_serializable(package="aqa_tf")
class RegressionTreeLoss(keras.losses.Loss):
    """CoRe's loss on one direction of a pair (the authors' `tools/helper.py`,
    `network_forward_train`): the negative log-likelihood of the leaf whose group holds the
    true difference, plus, for every leaf, the mean squared error of its predicted position over
    the samples whose difference falls in it (leaves without such samples add nothing).

    The per-sample values returned are scaled so that Keras' mean over the batch equals the
    authors' sum `nll + sum_leaves mse_leaf`. Samples with a non-finite target add nothing.

    y_true: `[batch]` differences `query - exemplar` (`sign` -1: the reverse direction, trained
    on `exemplar - query`). y_pred: `[batch, 2 * leaves]` (`RegressionTree`).
    `boundaries`: `[leaves, 2]` (`data.exemplars.group_boundaries`).
    """

    def __init__(self, boundaries, sign: float = 1.0, name: str = "regression_tree_loss",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        import numpy as np
        self.boundaries = np.asarray(boundaries, np.float64).reshape(-1, 2)
        self.sign = float(sign)

    def call(self, y_true, y_pred):
        leaves = self.boundaries.shape[0]
        y_pred = ops.cast(y_pred, "float32")
        log_prob, position = y_pred[:, :leaves], y_pred[:, leaves:]
        d = ops.reshape(ops.cast(y_true, "float32"), (-1, 1)) * self.sign
        valid = ops.isfinite(d)
        d = ops.where(valid, d, 0.0)
        left = ops.convert_to_tensor(self.boundaries[:, 0].astype("float32"))[None]
        right = ops.convert_to_tensor(self.boundaries[:, 1].astype("float32"))[None]
        inside = ops.where(d >= 0, ops.logical_and(d >= left, d < right),
                           ops.logical_and(d > left, d <= right))
        inside = ops.logical_and(inside, valid)
        width = right - left
        target = ops.where(width == 0.0, d - left, (d - left) / ops.where(width == 0.0, 1.0,
                                                                          width))
        # The first leaf that holds the difference (leaf 0 when none does: argmax of zeros).
        leaf = ops.argmax(ops.cast(inside, "int32"), axis=-1)
        nll = -ops.sum(ops.one_hot(leaf, leaves) * log_prob, axis=-1)
        mask = ops.cast(inside, "float32")
        batch = ops.cast(ops.shape(d)[0], "float32")
        counts = ops.sum(mask, axis=0, keepdims=True)
        scale = ops.where(counts > 0, batch / ops.maximum(counts, 1.0), 0.0)
        mse = ops.sum(mask * scale * ops.square(position - target), axis=-1)
        return ops.where(valid[:, 0], nll, 0.0) + mse

    def get_config(self):
        return {**super().get_config(), "boundaries": self.boundaries.tolist(),
                "sign": self.sign}


@keras.saving.register_keras_serializable(package="aqa_tf")
class TransitionLoss(keras.losses.Loss):
    """TSA's transition loss (FineDiving, Xu et al., CVPR 2022; the authors'
    `tools/helper.py`, `network_forward_train`): binary cross-entropy of PSNet's per-frame
    transition probabilities against one-hot targets (`label_12_pad`: 1 at frame `t_i` of
    column `i`, 0 elsewhere), averaged over all batch x frames x transitions entries as torch's
    `BCELoss` (whose logs are clamped at -100, which this matches: with probabilities of exactly
    0 or 1 the value is theirs and the gradient stays finite). The per-sample values returned
    are the means over frames and transitions, so Keras' mean over the batch is their number.

    A frame index outside `[0, T)` gives an all-zero target column (torch would raise).

    y_true: `[batch, transitions]` frame indices (their `label_tas`: the first frames of steps
    2 and 3, floats are truncated as their `int()`). y_pred: `[batch, T, transitions]`
    probabilities (`layers.procedure.StepSegmenter`).
    """

    def __init__(self, name: str = "transition_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        probs = ops.cast(y_pred, "float32")
        frames = probs.shape[1]
        # [batch, transitions, T] one-hot rows -> [batch, T, transitions].
        target = ops.transpose(ops.one_hot(ops.cast(y_true, "int32"), frames), (0, 2, 1))

        def clamped_log(p):
            # log(p) floored at -100 as torch; the inner `where` keeps log's gradient finite.
            safe = ops.where(p > 0.0, p, 1.0)
            return ops.where(p > 0.0, ops.maximum(ops.log(safe), -100.0), -100.0)

        bce = -(target * clamped_log(probs) + (1.0 - target) * clamped_log(1.0 - probs))
        return ops.mean(bce, axis=(1, 2))
