"""`build_aqa_model(config)`: TimeDistributed(backbone) -> aggregation -> fc6 -> task heads."""

from typing import Optional, Tuple

import keras
from keras import layers, ops

from aqa_tf import tasks
from aqa_tf.config import DataConfig, ModelConfig
from aqa_tf.models import heads
from aqa_tf.models import mscadc_heads
from aqa_tf.models.backbones import build_backbone
from aqa_tf.models.captioning import S2VTCaptioner
from aqa_tf.models.layers.aggregation import aggregate, build_aggregation
from aqa_tf.models.layers import clip_encoder

BACKBONE_LAYER = "clip_encoder"
CAPTIONER_LAYER = "captioner"
CAPTION_TOKENS = tasks.CAPTION_TOKENS


def build_clip_backbone(model_config: ModelConfig, data_config: DataConfig) -> keras.Model:
    """The backbone `model_config` names, for clips of `data_config`'s length and crop, with its
    options (width, C3D BatchNorm and fc6); what `build_aqa_model` wraps in `TimeDistributed`
    and what backbone checkpoints convert into."""
    options = {"batch_norm": True} if model_config.backbone_batch_norm else {}
    if model_config.backbone_fc6:
        options["fc6_units"] = model_config.backbone_fc6
    return build_backbone(model_config.backbone, clip_length=data_config.clip_length,
                          image_size=data_config.crop_size,
                          width_multiplier=model_config.width_multiplier,
                          name=model_config.backbone, **options)


def build_aqa_model(model_config: ModelConfig, data_config: DataConfig) -> keras.Model:
    """Builds C3D-AVG-STL / -MTL style models (paper 001, Fig. 2).

    Inputs: `{"video": [batch, num_clips, clip_length, crop, crop, 3]}` (normalised float32).
    Outputs: `{"score": [batch]}` in judges' points, plus with the `dive` head the logits
    `{"position", "armstand", "rotation_type", "somersaults", "twists": [batch, classes]}`,
    and with the `caption` head the teacher-forced next-word logits `{"caption": [batch,
    max_caption_words + 1, vocab]}` given the input `caption_tokens` (`<sos> w1 ..`);
    `generate_captions` writes captions without it.
    """
    model_config.validate()
    data_config.validate()
    video = keras.Input((data_config.num_clips, data_config.clip_length, data_config.crop_size,
                         data_config.crop_size, 3), name="video")
    backbone = build_clip_backbone(model_config, data_config)
    clip_features = clip_encoder.TimeDistributed(backbone, name=BACKBONE_LAYER)(video)
    backbone_features = clip_features
    inputs = {"video": video}
    if model_config.multiply_difficulty:
        inputs["difficulty"] = keras.Input((), name="difficulty")
    if data_config.per_action_scores:
        if model_config.multiply_difficulty:
            raise ValueError("--multiply_difficulty and per-action score normalisation do "
                             "not combine (the action's deviation scales the whole score)")
        if not data_config.action_score_std:
            raise ValueError(f"score_normalization={data_config.score_normalization}: the "
                             "per-action score deviations "
                             "of the training split are missing (evaluation."
                             "with_action_score_stds)")
        inputs[tasks.ACTION_INPUT] = keras.Input((), dtype="int32", name=tasks.ACTION_INPUT)
    if getattr(backbone, "spatial_features", False):
        return _build_dense_head_model(model_config, data_config, inputs, clip_features)
    for i, units in enumerate(model_config.projection_units):
        # Paper 002: clip features projected (FC + ReLU) to 128-d before the aggregation.
        clip_features = layers.Dense(units, activation="relu", name=f"projection_{i}")(
            clip_features)
    x = aggregate(build_aggregation(model_config.aggregation,
                                    lstm_units=model_config.lstm_units), clip_features)
    if model_config.fc_units:
        # paper 001 / authors' `my_fc6`: Linear(8192 -> 4096) + ReLU + dropout 0.5.
        x = layers.Dense(model_config.fc_units, activation="relu", name="fc6")(x)
        x = layers.Dropout(model_config.dropout, name="fc6_dropout")(x)
    # Paper 002 (--multiply_difficulty): the regressor predicts the execution part and the
    # model returns difficulty x prediction (difficulty read from the record).
    outputs = _score_outputs(layers.Dense(1, dtype="float32", name="score_regressor")(x),
                             model_config, data_config, inputs)
    if "dive" in model_config.heads:
        outputs.update(heads.dive_heads(x, model_config.class_counts))
    if "caption" in model_config.heads:
        # S2VT reads the clip features before aggregation (C3D: 8192-d pool5 per clip).
        _add_caption_head(model_config, data_config, inputs, outputs, backbone_features)
    name = f"{model_config.backbone}_{model_config.aggregation}_" + (
        "mtl" if len(model_config.heads) > 1 else "stl")
    return keras.Model(inputs=inputs, outputs=outputs, name=name)


def _build_dense_head_model(model_config: ModelConfig, data_config: DataConfig, inputs,
                            clip_features) -> keras.Model:
    """MSCADC (paper 001, Table 3): the body's feature map feeds one context-net head per task.

    The whole action is one clip (16 frames subsampled with --frame_step), so there is nothing
    to aggregate: --aggregation, --fc_units and --projection_units do not apply.
    """
    if data_config.num_clips != 1:
        raise ValueError(
            f"backbone {model_config.backbone!r} reads the whole action as one clip, but the "
            f"data configuration gives {data_config.num_clips} clips; use num_frames == "
            "clip_length (paper 001: --num_frames=16 --clip_length=16 --frame_step=6.5)")
    feature_map = layers.Reshape(tuple(clip_features.shape[2:]), name="whole_action")(
        clip_features)
    outputs = _score_outputs(mscadc_heads.score_regressor(feature_map), model_config,
                             data_config, inputs)
    if "dive" in model_config.heads:
        outputs.update(mscadc_heads.dive_classifier(feature_map, model_config.class_counts))
    if "caption" in model_config.heads:
        # The caption head's context net gives one 1200-d feature: a one-step video sequence.
        caption_map = mscadc_heads.caption_features(feature_map)
        caption_input = layers.Reshape((1, int(caption_map.shape[-1])),
                                       name="cap_sequence")(caption_map)
        _add_caption_head(model_config, data_config, inputs, outputs, caption_input)
    name = f"{model_config.backbone}_" + ("mtl" if len(model_config.heads) > 1 else "stl")
    return keras.Model(inputs=inputs, outputs=outputs, name=name)


def _score_outputs(normalised, model_config: ModelConfig, data_config: DataConfig, inputs):
    """The score output(s) of the regressor's `[batch, 1]` output: `score` in points (global
    `score_std`, difficulty x execution, or per-action deviations with `normalized_score`)."""
    if tasks.ACTION_INPUT in inputs:
        return heads.per_action_score_outputs(normalised, inputs[tasks.ACTION_INPUT],
                                              data_config.action_score_std,
                                              data_config.action_score_mean)
    return {tasks.SCORE_OUTPUT: heads.score_output(normalised, model_config.score_std,
                                                   inputs.get("difficulty"))}


def backbone_of(model: keras.Model) -> keras.Model:
    """The per-clip backbone inside a model built by `build_aqa_model`."""
    return model.get_layer(BACKBONE_LAYER).layer


def _add_caption_head(model_config: ModelConfig, data_config: DataConfig, inputs, outputs,
                      clip_features):
    tokens = keras.Input((data_config.max_caption_words + 1,), dtype="int32",
                         name=CAPTION_TOKENS)
    inputs[CAPTION_TOKENS] = tokens
    captioner = S2VTCaptioner(
        model_config.vocab_size, cell=model_config.caption_cell,
        num_layers=model_config.caption_layers, hidden_units=model_config.caption_hidden,
        embedding_dim=model_config.caption_embedding, dropout=model_config.caption_dropout,
        attention=model_config.caption_attention, name=CAPTIONER_LAYER,
        # float32 under any policy: its recurrent steps are small matrix products (batch x 512)
        # that gain nothing from bfloat16 and pay its casts. Under mixed_bfloat16 on a 2-core
        # Zen 4, paper-size C3D-AVG-MTL trained 1.09x faster (0.2425 -> 0.2645 samples/s) and
        # captioned 1.10x faster (0.8467 -> 0.9354) than with a bfloat16 S2VT.
        dtype="float32")
    outputs[tasks.CAPTION_OUTPUT] = captioner([clip_features, tokens])


def has_caption_head(model: keras.Model) -> bool:
    return CAPTION_TOKENS in model.input


def inference_model(model: keras.Model) -> keras.Model:
    """The model without the teacher-forced caption path: inputs `video` (+ `difficulty`),
    outputs score and class logits (shares the layers and weights of `model`)."""
    if not has_caption_head(model):
        return model
    return keras.Model({k: v for k, v in model.input.items() if k != CAPTION_TOKENS},
                       {k: v for k, v in model.output.items() if k != tasks.CAPTION_OUTPUT},
                       name=f"{model.name}_inference")


CLIP_WEIGHTS = "clip_weights"
CLIP_SCORES = "clip_scores"


def clip_contributions(model: keras.Model) -> Optional[Tuple[str, keras.Model]]:
    """What each clip contributes to the score, as `(name, model)` where `model` maps the
    model's inputs (without `caption_tokens`) to `[batch, num_clips]`:

    - `clip_weights` for Weight-Decider models: the softmax weights of each clip averaged over
      the feature elements (they sum to one over the clips);
    - `clip_scores` for averaging models: the score the heads give one clip's features alone
      (the model scores the average of the clip features);
    - None for the LSTM aggregations and MSCADC (one clip).
    """
    inputs = {k: v for k, v in model.input.items() if k != CAPTION_TOKENS}
    names = {layer.name for layer in model.layers}
    if "weight_decider" in names:
        weights = model.get_layer("weight_decider").output[1]
        return CLIP_WEIGHTS, keras.Model(inputs, ops.mean(weights, axis=-1), name=CLIP_WEIGHTS)
    if "clip_average" not in names:
        return None
    x = model.get_layer("clip_average").input
    if "fc6" in names:
        x = model.get_layer("fc6")(x)
    x = model.get_layer("score_regressor")(x)
    if "difficulty" in inputs:
        scores = model.get_layer("execution")(x) * ops.expand_dims(inputs["difficulty"], -1)
    elif tasks.ACTION_INPUT in inputs:  # per-action deviations (paper 003)
        scores = model.get_layer(tasks.SCORE_OUTPUT).to_points(
            model.get_layer(tasks.NORMALIZED_SCORE_OUTPUT)(x), inputs[tasks.ACTION_INPUT])
    else:
        scores = model.get_layer(tasks.SCORE_OUTPUT)(x)
    return CLIP_SCORES, keras.Model(inputs, scores, name=CLIP_SCORES)


class CaptionGenerator:
    """Writes captions for a model with a caption head: `video` -> token ids `[batch,
    max_words + 1]` (ending at their first `<eos>`), greedy or beam-search decoding."""

    def __init__(self, model: keras.Model, max_words: int, method: str = "greedy",
                 beam_size: int = 3):
        captioner = model.get_layer(CAPTIONER_LAYER)
        self.features = keras.Model({"video": model.input["video"]}, captioner.input[0],
                                    name="caption_features")
        self.captioner = captioner
        self.max_words, self.method, self.beam_size = max_words, method, beam_size

    def __call__(self, video):
        clip_features = self.features({"video": video}, training=False)
        return self.captioner.generate(clip_features, self.max_words, self.method, self.beam_size)
