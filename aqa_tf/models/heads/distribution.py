"""Score distribution heads: USDL and MUSDL (Tang et al., CVPR 2020, "Uncertainty-aware Score
Distribution Learning for Action Quality Assessment").

Instead of regressing one number, an MLP with a softmax predicts a distribution over discretised
scores, trained with KL divergence against a Gaussian centred on the true score
(`losses.ScoreDistributionLoss` / `JudgeDistributionLoss`). The paper leaves details to its code
(github.com/nzl-thu/MUSDL), which these heads follow:

- input: the average of the clip features (their `MTL-AQA/main.py` averages the 10 I3D clip
  features, 1024-d); here the head reads the pooled feature, so their setting is
  `--backbone=i3d --aggregation=average --fc_units=0`.
- MLP: 1024-256-128-bins, ReLU, softmax (`models/evaluator.py`, `MLP_block`).
- `usdl`: bins spread evenly over the final score `--usdl_score_min`..`--usdl_score_max`
  (MTL-AQA: 101 bins over 0..104.5, `MTL-AQA/opts.py` output_dim, label_max; JIGSAWS: 25 bins
  over the total GRS 6..30, `JIGSAWS/opts.py` and `main.py` `np.arange(6, 31)`).
- `musdl`: one MLP per judge, bins over a judge's `--musdl_judge_min`..`--musdl_judge_max`, and
  the panel rule `--musdl_rule` that makes the final score of the judges' scores:
  `diving` (MTL-AQA: 7 judges, 21 bins over 0..10; the sum of the middle three of the sorted
  judges, [2:5], times the difficulty: `MTL-AQA/main.py`, `compute_score`) or `sum` (JIGSAWS:
  the 6 GRS elements as judges, 5 bins over 1..5, the total their sum, no difficulty:
  `JIGSAWS/main.py`, `compute_score`).
- read-out: the authors take the argmax bin (`main.py`, `compute_score`, both heads, although a
  comment there says expectation); `--distribution_readout=expectation` takes the mean.

Outputs (points, as the `score` head's): `score [batch]`, `score_distribution` (usdl `[batch,
bins]`; musdl `[batch, judges, bins]`), `score_std [batch]`, `score_quantiles [batch, 4]` (the
5, 25, 75 and 95% quantiles of the final score: the 90% and 50% central intervals), and for musdl
`judge_scores [batch, judges]` (each judge's read-out score; with `expectation`, the expected
score). Exports serve the score, `score_std`, the 90% interval (`score_interval_low/high`), the
distributions and (musdl) the judges' scores; the metadata's `distribution_range` gives the
values of the first and last bin.

USDL's spread is exact, from its distribution. MUSDL's final score is a function of independent
judges (the panel rule), so its spread is estimated from `PANEL_SAMPLES` panels
drawn from the judges' distributions by inverse CDF at fixed stratified uniforms (seed 0), each
scored by the same rule: deterministic, and made only of cumsum, comparisons and sorts (what
TFLite runs).
"""

from typing import Dict

import keras
import numpy as np
from keras import layers, ops

from aqa_tf import tasks
from aqa_tf.config import ConfigError, ModelConfig
from aqa_tf.metrics import scores as metrics_lib
from aqa_tf.models.heads.base import Features, Head
from aqa_tf.models.heads.score import ScoreHead
from aqa_tf.models.losses import JudgeDistributionLoss, ScoreDistributionLoss
from aqa_tf.registry import HEADS

SCORE_DISTRIBUTION = "score_distribution"
SCORE_STD = "score_std"
SCORE_QUANTILES = "score_quantiles"
JUDGE_SCORES = "judge_scores"
# Levels of `score_quantiles`: the ends of the 90% and 50% central intervals.
QUANTILE_LEVELS = (0.05, 0.25, 0.75, 0.95)
# A judge's scores run 0..10 on MTL-AQA (authors' opts.py judge_max): the defaults of JudgePanel.
JUDGE_MAX = 10.0
# Panels drawn per video to estimate the spread of MUSDL's final score.
PANEL_SAMPLES = 1000
# Diving's rule: the middle three of a panel of seven (MTL-AQA).
COUNTED_JUDGES = 3
DIVING_JUDGES = 7


def first_bin_reaching(cdf, level):
    """Index `[...]` of the first bin whose cumulative probability reaches `level` (the level's
    quantile on the bin grid), from `cdf [..., bins]`; the last bin when rounding keeps the sum
    below it."""
    count = ops.sum(ops.cast(cdf < level, "int32"), axis=-1)
    return ops.minimum(count, cdf.shape[-1] - 1)


def bin_step(low: float, high: float, bins: int) -> float:
    """Points between two neighbouring bins of `bins` spread evenly over `low`..`high`."""
    return (float(high) - float(low)) / (bins - 1)


def read_out(probabilities, step: float, readout: str, low: float = 0.0):
    """The score of distributions `[..., bins]` over bins `low`, `low + step`, ...: the argmax
    bin's value or the expectation."""
    if readout == "argmax":
        return low + ops.cast(ops.argmax(probabilities, axis=-1), "float32") * step
    values = low + ops.arange(probabilities.shape[-1], dtype="float32") * step
    return ops.sum(probabilities * values, axis=-1)


def middle_sum(judge_scores):
    """Diving's rule on panels `[..., judges]`: drop the highest and lowest (judges - 3) / 2
    scores and sum the middle three (7 judges: the two highest and two lowest go)."""
    drop = (judge_scores.shape[-1] - COUNTED_JUDGES) // 2
    ordered = ops.sort(judge_scores, axis=-1)
    return ops.sum(ordered[..., drop:drop + COUNTED_JUDGES], axis=-1)


def panel_score(judge_scores, rule: str):
    """The final score of panels `[..., judges]` by `rule` (before any difficulty): `diving`,
    the middle three; `sum`, every judge (JIGSAWS: the total GRS of its 6 elements)."""
    if rule == "sum":
        return ops.sum(judge_scores, axis=-1)
    return middle_sum(judge_scores)


@keras.saving.register_keras_serializable(package="aqa_tf")
class BinnedScore(layers.Layer):
    """USDL's read-out: distributions `[batch, bins]` over `score_min`..`score_max` -> (score,
    std, quantiles `[batch, 4]` at `QUANTILE_LEVELS`), in points. The std and quantiles are those
    of the predicted distribution (the quantiles on the bin grid)."""

    def __init__(self, score_max: float = 104.5, readout: str = "argmax",
                 score_min: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.score_max, self.readout = float(score_max), readout
        self.score_min = float(score_min)

    def call(self, probabilities):
        probabilities = ops.cast(probabilities, "float32")
        low, bins = self.score_min, probabilities.shape[-1]
        step = bin_step(low, self.score_max, bins)
        values = low + ops.arange(bins, dtype="float32") * step
        mean = ops.sum(probabilities * values, axis=-1)
        variance = ops.sum(probabilities * ops.square(values - ops.expand_dims(mean, -1)), -1)
        cdf = ops.cumsum(probabilities, axis=-1)
        quantiles = ops.stack([low + ops.cast(first_bin_reaching(cdf, q), "float32") * step
                               for q in QUANTILE_LEVELS], axis=-1)
        return (read_out(probabilities, step, self.readout, low),
                ops.sqrt(ops.maximum(variance, 0.0)), quantiles)

    def get_config(self):
        return {**super().get_config(), "score_max": self.score_max, "readout": self.readout,
                "score_min": self.score_min}


@keras.saving.register_keras_serializable(package="aqa_tf")
class JudgePanel(layers.Layer):
    """MUSDL's read-out: the judges' distributions (a list of `[batch, bins]`, over
    `judge_min`..`judge_max`) and, for the diving rule, the difficulty `[batch]` -> (distributions
    `[batch, judges, bins]`, judge scores `[batch, judges]`, score, std, quantiles `[batch, 4]`),
    in points.

    The score is `rule` (`panel_score`) on the read-out judge scores; `diving` multiplies it by
    the difficulty (authors' `MTL-AQA/main.py`), `sum` reads none (`JIGSAWS/main.py`). The std
    and quantiles are of the final score over `samples` panels drawn from the judges'
    distributions, independently, by inverse CDF at fixed stratified uniforms (each judge a
    random permutation of (i + 0.5) / samples, numpy seed `seed`), scored by the same rule.
    """

    def __init__(self, readout: str = "argmax", samples: int = PANEL_SAMPLES, seed: int = 0,
                 rule: str = "diving", judge_min: float = 0.0, judge_max: float = JUDGE_MAX,
                 **kwargs):
        super().__init__(**kwargs)
        self.readout, self.samples, self.seed = readout, int(samples), int(seed)
        self.rule, self.judge_min, self.judge_max = rule, float(judge_min), float(judge_max)

    def uniforms(self, judges: int) -> np.ndarray:
        """The fixed uniforms `[samples, judges]` the panels are drawn at."""
        rng = np.random.default_rng(self.seed)
        strata = (np.arange(self.samples) + 0.5) / self.samples
        return np.stack([rng.permutation(strata) for _ in range(judges)], -1).astype("float32")

    def call(self, judge_probabilities, difficulty=None):
        probabilities = ops.cast(ops.stack(judge_probabilities, axis=1), "float32")
        low = self.judge_min
        step = bin_step(low, self.judge_max, probabilities.shape[-1])
        judge_scores = read_out(probabilities, step, self.readout, low)
        cdf = ops.expand_dims(ops.cumsum(probabilities, axis=-1), 1)  # [batch, 1, judges, bins]
        u = ops.convert_to_tensor(self.uniforms(probabilities.shape[1]))[None, :, :, None]
        drawn = low + ops.cast(first_bin_reaching(cdf, u), "float32") * step  # [b, samples, j]
        score, panels = panel_score(judge_scores, self.rule), panel_score(drawn, self.rule)
        if self.rule == "diving":
            difficulty = ops.reshape(ops.cast(difficulty, "float32"), (-1, 1))
            score, panels = score * difficulty[:, 0], panels * difficulty
        panels = ops.sort(panels, axis=-1)  # [batch, samples]
        picks = [max(int(np.ceil(q * self.samples)) - 1, 0) for q in QUANTILE_LEVELS]
        quantiles = ops.stack([panels[:, i] for i in picks], axis=-1)
        return probabilities, judge_scores, score, ops.std(panels, axis=-1), quantiles

    def get_config(self):
        return {**super().get_config(), "readout": self.readout, "samples": self.samples,
                "seed": self.seed, "rule": self.rule, "judge_min": self.judge_min,
                "judge_max": self.judge_max}


def distribution_mlp(pooled, hidden, bins: int, prefix: str):
    """The authors' `MLP_block` (`models/evaluator.py`): Dense+ReLU per hidden width, then a
    softmax over the bins (float32 under mixed precision)."""
    x = pooled
    for i, units in enumerate(hidden):
        x = layers.Dense(units, activation="relu", name=f"{prefix}_fc{i + 1}")(x)
    return layers.Dense(bins, activation="softmax", dtype="float32", name=f"{prefix}_bins")(x)


class DistributionHead(ScoreHead):
    """What USDL and MUSDL share: the score head's metrics, report and metadata, plus the
    calibration of the predicted intervals and the serving of the spread."""

    predicts_score = True
    untrained_outputs = (tasks.SCORE_OUTPUT, SCORE_STD, SCORE_QUANTILES)

    @classmethod
    def create(cls, model_config, data_config) -> Head:
        return cls(model_config, data_config)

    @classmethod
    def check_config(cls, model_config: ModelConfig):
        if model_config.distribution_std <= 0:
            raise ConfigError(f"distribution_std={model_config.distribution_std} must be "
                              "positive")
        if any(units <= 0 for units in model_config.distribution_hidden):
            raise ConfigError(f"distribution_hidden={model_config.distribution_hidden}: widths "
                              "must be positive")
        if model_config.multiply_difficulty:
            raise ConfigError(f"heads={model_config.heads}: --multiply_difficulty is the score "
                              "head's; usdl predicts the final score, musdl's diving rule "
                              "multiplies the judges' sum by the difficulty itself")

    def add_inputs(self, inputs):
        if self.data_config.per_action_scores:
            raise ValueError(f"heads {self.name}: score_normalization="
                             f"{self.data_config.score_normalization} is the score head's")

    def pooled(self, features: Features):
        if features.pooled is None:
            raise ValueError(f"head {self.name} reads the pooled clip feature; backbone "
                             f"{self.model_config.backbone} gives a whole-action map")
        return features.pooled

    def clip_scores(self, clip_features, inputs):
        return None  # the MLP reads the average feature; per-clip scores are not defined here

    def metrics(self, predictions, context) -> Dict[str, float]:
        result = super().metrics(predictions, context)
        true = predictions.targets[tasks.SCORE_OUTPUT]
        quantiles = predictions.outputs[SCORE_QUANTILES]
        result["coverage_50"] = metrics_lib.interval_coverage(true, quantiles[:, 1],
                                                              quantiles[:, 2])
        result["coverage_90"] = metrics_lib.interval_coverage(true, quantiles[:, 0],
                                                              quantiles[:, 3])
        result["mean_score_std"] = float(np.mean(predictions.outputs[SCORE_STD]))
        return result

    def serving_outputs(self, outputs, inputs):
        quantiles = ops.cast(outputs[SCORE_QUANTILES], "float32")
        return {tasks.SCORE_OUTPUT: ops.cast(outputs[tasks.SCORE_OUTPUT], "float32"),
                SCORE_STD: ops.cast(outputs[SCORE_STD], "float32"),
                "score_interval_low": quantiles[:, 0], "score_interval_high": quantiles[:, 3],
                SCORE_DISTRIBUTION: ops.cast(outputs[SCORE_DISTRIBUTION], "float32")}

    def distribution_range(self):
        """(low, high): the values of the first and last bin of `score_distribution`."""
        raise NotImplementedError

    def metadata(self) -> Dict:
        return {**super().metadata(), "predicts_distribution": True, "score_interval": 0.9,
                "score_readout": self.model_config.distribution_readout,
                "distribution_range": list(self.distribution_range())}


@HEADS.register("usdl")
class USDLHead(DistributionHead):
    """USDL: one distribution over the final score's bins (--usdl_score_min..--usdl_score_max)."""

    name = "usdl"
    target_keys = {SCORE_DISTRIBUTION: tasks.SCORE_OUTPUT}

    @classmethod
    def check_config(cls, model_config: ModelConfig):
        super().check_config(model_config)
        low, high = model_config.usdl_score_min, model_config.usdl_score_max
        if model_config.usdl_bins < 2 or not 0 <= low < high:
            raise ConfigError(f"usdl_bins={model_config.usdl_bins}, usdl_score_min={low}, "
                              f"usdl_score_max={high}: need 2 or more bins over a range "
                              "0 <= usdl_score_min < usdl_score_max")

    def build(self, features: Features) -> Dict[str, keras.KerasTensor]:
        config = self.model_config
        probabilities = distribution_mlp(self.pooled(features), config.distribution_hidden,
                                         config.usdl_bins, "usdl")
        score, std, quantiles = BinnedScore(config.usdl_score_max, config.distribution_readout,
                                            config.usdl_score_min,
                                            name="usdl_readout")(probabilities)
        return {tasks.SCORE_OUTPUT: score, SCORE_DISTRIBUTION: probabilities, SCORE_STD: std,
                SCORE_QUANTILES: quantiles}

    def losses(self, train_config):
        config = self.model_config
        return {SCORE_DISTRIBUTION: (
            ScoreDistributionLoss(config.usdl_bins, config.distribution_std,
                                  config.usdl_score_max, config.usdl_score_min),
            train_config.score_loss_weight)}

    def synthetic_batch(self, rng, batch, x, y):
        low, high = self.model_config.usdl_score_min, self.model_config.usdl_score_max
        y[SCORE_DISTRIBUTION] = rng.uniform(low + 0.1 * (high - low), high - 0.05 * (high - low),
                                            batch).astype("float32")

    def distribution_range(self):
        return self.model_config.usdl_score_min, self.model_config.usdl_score_max

    def metadata(self) -> Dict:
        return {**super().metadata(), "uses_difficulty": False}


@HEADS.register("musdl")
class MUSDLHead(DistributionHead):
    """MUSDL: one distribution per judge over --musdl_judge_min..--musdl_judge_max; the score is
    the panel rule's (--musdl_rule): diving, the middle three of 7 x the difficulty (reads
    `difficulty [batch]`), or sum, every judge. Trained on `judge_scores [batch, judges]` (-1:
    missing judge), which `pipeline.build_dataset(include_judges=True, num_judges=...)` adds."""

    name = "musdl"
    target_keys = {SCORE_DISTRIBUTION: JUDGE_SCORES}
    untrained_outputs = DistributionHead.untrained_outputs + (JUDGE_SCORES,)

    @property
    def dataset_options(self):
        # The panel size is the model's (--musdl_judges): the one source of the judges target's
        # width, so a record with another panel reads as missing.
        return {"include_judges": True, "num_judges": self.model_config.musdl_judges}

    @property
    def uses_difficulty(self) -> bool:
        return self.model_config.musdl_rule == "diving"

    @classmethod
    def check_config(cls, model_config: ModelConfig):
        super().check_config(model_config)
        config, judges = model_config, model_config.musdl_judges
        if config.musdl_bins < 2 or judges < 1:
            raise ConfigError(f"musdl_bins={config.musdl_bins}, musdl_judges={judges}: need 2 "
                              "or more bins and 1 or more judges")
        if not 0 <= config.musdl_judge_min < config.musdl_judge_max:
            raise ConfigError(f"musdl_judge_min={config.musdl_judge_min}, musdl_judge_max="
                              f"{config.musdl_judge_max}: need 0 <= min < max")
        if config.musdl_rule == "diving" and judges != DIVING_JUDGES:
            raise ConfigError(f"musdl_rule=diving sums the middle three of {DIVING_JUDGES} "
                              f"judges (MTL-AQA), but musdl_judges={judges}: use "
                              "--musdl_rule=sum to add up every judge (JIGSAWS: the 6 GRS "
                              "elements), or 7 judges")

    def add_inputs(self, inputs):
        super().add_inputs(inputs)
        if self.uses_difficulty:
            inputs[tasks.DIFFICULTY_INPUT] = keras.Input((), name=tasks.DIFFICULTY_INPUT)

    def build(self, features: Features) -> Dict[str, keras.KerasTensor]:
        config, pooled = self.model_config, self.pooled(features)
        judges = [distribution_mlp(pooled, config.distribution_hidden, config.musdl_bins,
                                   f"musdl_judge{j + 1}") for j in range(config.musdl_judges)]
        panel = JudgePanel(config.distribution_readout, rule=config.musdl_rule,
                           judge_min=config.musdl_judge_min, judge_max=config.musdl_judge_max,
                           name="musdl_panel")
        args = [features.inputs[tasks.DIFFICULTY_INPUT]] if self.uses_difficulty else []
        probabilities, judge_scores, score, std, quantiles = panel(judges, *args)
        return {tasks.SCORE_OUTPUT: score, SCORE_DISTRIBUTION: probabilities,
                JUDGE_SCORES: judge_scores, SCORE_STD: std, SCORE_QUANTILES: quantiles}

    def losses(self, train_config):
        config = self.model_config
        return {SCORE_DISTRIBUTION: (
            JudgeDistributionLoss(config.musdl_bins, config.distribution_std,
                                  config.musdl_judge_max, config.musdl_judge_min),
            train_config.score_loss_weight)}

    def synthetic_batch(self, rng, batch, x, y):
        config = self.model_config
        if self.uses_difficulty:
            x[tasks.DIFFICULTY_INPUT] = rng.uniform(1.5, 3.8, batch).astype("float32")
        step = bin_step(config.musdl_judge_min, config.musdl_judge_max, config.musdl_bins)
        bins = rng.integers(config.musdl_bins // 3, config.musdl_bins,
                            (batch, config.musdl_judges))
        judges = config.musdl_judge_min + bins * step
        judges[0, -1] = -1.0  # a missing judge, as the records mark one
        y[SCORE_DISTRIBUTION] = judges.astype("float32")

    def metrics(self, predictions, context) -> Dict[str, float]:
        result = super().metrics(predictions, context)
        true = predictions.targets.get(JUDGE_SCORES)
        if true is not None:
            present = np.isfinite(true) & (true >= 0)
            error = np.abs(predictions.outputs[JUDGE_SCORES] - true)[present]
            result["judge_mae"] = float(error.mean()) if error.size else float("nan")
        return result

    def serving_outputs(self, outputs, inputs):
        return {**super().serving_outputs(outputs, inputs),
                JUDGE_SCORES: ops.cast(outputs[JUDGE_SCORES], "float32")}

    def distribution_range(self):
        return self.model_config.musdl_judge_min, self.model_config.musdl_judge_max

    def metadata(self) -> Dict:
        config = self.model_config
        return {**super().metadata(), "uses_difficulty": self.uses_difficulty,
                "judges": config.musdl_judges, "panel_rule": config.musdl_rule,
                "judge_range": [config.musdl_judge_min, config.musdl_judge_max]}
