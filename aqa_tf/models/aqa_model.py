"""`AQAModel`: TimeDistributed(backbone) -> aggregation -> fc6 -> task heads (paper 001,
Fig. 2; papers 000, 002, 003 vary the backbone, the aggregation and the heads).

After keras-hub's `Task`: the model is a functional Keras model built in `__init__` from its
configuration, and keeps its parts as attributes: `backbone` (the per-clip network),
`aggregation` (the layer that pools the clips, None for whole-action backbones) and `heads`
(name -> `heads.base.Head`). Everything that depends on which heads a model has (losses,
metrics, report, export outputs and signatures) is asked of the heads, never found by name.
"""

import dataclasses
from typing import Dict, Optional, Tuple

import keras
from keras import layers, ops

from aqa_tf.config import DataConfig, ModelConfig
from aqa_tf.models.backbones import build_backbone
from aqa_tf.models.heads import build_heads
from aqa_tf.models.heads.base import Features
from aqa_tf.models.heads.caption import CaptionGenerator  # noqa: F401 (the public name)
from aqa_tf.models.layers import clip_encoder
from aqa_tf.models.layers.aggregation import build_aggregation

BACKBONE_LAYER = "clip_encoder"
CLIP_WEIGHTS = "clip_weights"
CLIP_SCORES = "clip_scores"


def build_clip_backbone(model_config: ModelConfig, data_config: DataConfig) -> keras.Model:
    """The backbone `model_config` names, for clips of `data_config`'s length and crop, with its
    options (width, C3D BatchNorm and fc6); what `AQAModel` wraps in `TimeDistributed` and what
    backbone checkpoints convert into."""
    options = {"batch_norm": True} if model_config.backbone_batch_norm else {}
    if model_config.backbone_fc6:
        options["fc6_units"] = model_config.backbone_fc6
    backbone = build_backbone(model_config.backbone, clip_length=data_config.clip_length,
                              image_size=data_config.crop_size,
                              width_multiplier=model_config.width_multiplier,
                              name=model_config.backbone, **options)
    if model_config.backbone_bn_momentum:
        for layer in backbone._flatten_layers(include_self=False):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = model_config.backbone_bn_momentum
    return backbone


@keras.saving.register_keras_serializable(package="aqa_tf")
class AQAModel(keras.Model):
    """An AQA model of `model_config` for the inputs of `data_config`.

    Inputs: `{"video": [batch, num_clips, clip_length, crop, crop, 3]}` (normalised float32),
    plus what the heads read (`difficulty`, `action`, `caption_tokens`). Outputs: those of the
    heads, e.g. `score [batch]` in judges' points, the sub-action logits, the teacher-forced
    caption logits; `inference_model()` drops the training-only ones and `CaptionGenerator`
    writes captions.
    """

    def __init__(self, model_config: ModelConfig, data_config: DataConfig, **kwargs):
        model_config.validate()
        data_config.validate()
        video = keras.Input((data_config.num_clips, data_config.clip_length,
                             data_config.crop_size, data_config.crop_size, 3), name="video")
        backbone = build_clip_backbone(model_config, data_config)
        heads = build_heads(model_config, data_config)
        reads_maps = any(h.reads_clip_maps for h in heads.values())
        if reads_maps and not getattr(backbone, "map_pooling", ()):
            names = ",".join(h.name for h in heads.values() if h.reads_clip_maps)
            raise ValueError(f"heads {names} read every clip's feature map, which backbone "
                             f"{model_config.backbone} does not give (use i3d)")
        # Heads that read the clips' maps: the encoder stops at the map (same layers, same
        # weights file paths) and the clip features are the backbone's pooling of it.
        clip_layer = clip_encoder.TimeDistributed(
            backbone.feature_map_model() if reads_maps else backbone, name=BACKBONE_LAYER,
            fold_in_training=any(h.folds_clips for h in heads.values()))

        def encode_clips(other):
            out = clip_layer(other)
            if not reads_maps:
                return out, None
            folded = ops.reshape(out, (-1,) + tuple(out.shape[2:]))
            pooled = backbone.pool_feature_map(folded)
            return ops.reshape(pooled, (-1, int(out.shape[1]), int(pooled.shape[-1]))), out

        clips, clip_maps = encode_clips(video)
        inputs = {"video": video}
        for head in heads.values():
            head.add_inputs(inputs)
        if getattr(backbone, "spatial_features", False):
            features, aggregation, trunk = _whole_action(model_config, data_config, inputs,
                                                         clips)
        else:
            features, aggregation, trunk = _aggregate_clips(model_config, inputs, clips)
            pool = features.encode
            features.encode = lambda other: pool(encode_clips(other)[0])
            if reads_maps:
                features.clip_maps, features.encode_clips = clip_maps, encode_clips
        outputs = {}
        for head in heads.values():
            outputs.update(head.build(features))
        kind = "mtl" if len(heads) > 1 else "stl"
        name = kwargs.pop("name", None) or (
            f"{model_config.backbone}_{kind}" if aggregation is None
            else f"{model_config.backbone}_{model_config.aggregation}_{kind}")
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.model_config, self.data_config = model_config, data_config
        self.backbone = backbone
        self.aggregation = aggregation
        self.heads = heads
        self.features = features
        # What `clip_contributions` reads: the clip features the aggregation pools, the layers
        # between the aggregation and the heads, and the Weight-Decider's weights.
        self._clip_features, self._trunk, self._clip_weights = trunk

    def get_config(self):
        return {"model_config": dataclasses.asdict(self.model_config),
                "data_config": dataclasses.asdict(self.data_config), "name": self.name}

    @classmethod
    def from_config(cls, config):
        def rebuild(kind, fields):
            return kind(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v)
                           if isinstance(v, list) else v for k, v in fields.items()})
        return cls(rebuild(ModelConfig, config["model_config"]),
                   rebuild(DataConfig, config["data_config"]), name=config.get("name"))

    def training_only(self) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
        """(inputs, outputs) that exist only to train (teacher forcing)."""
        inputs = tuple(n for h in self.heads.values() for n in h.training_inputs)
        outputs = tuple(n for h in self.heads.values() for n in h.training_outputs)
        return inputs, outputs

    def inference_model(self) -> keras.Model:
        """The model without the training-only paths: the inputs and outputs a scorer uses
        (shares the layers and weights of this model)."""
        drop_inputs, drop_outputs = self.training_only()
        if not drop_inputs and not drop_outputs:
            return self
        inputs = {k: v for k, v in self.input.items() if k not in drop_inputs}
        outputs = {k: v for k, v in self.output.items() if k not in drop_outputs}
        for head in self.heads.values():
            inputs.update(head.inference_inputs)
            outputs.update(head.inference_outputs)
        inference = keras.Model(inputs, outputs, name=f"{self.name}_inference")
        # The model it came from, untracked by Keras (it is not a layer of `inference`).
        object.__setattr__(inference, "aqa_model", self)
        return inference

    def loss_dicts(self, train_config) -> Tuple[Dict, Dict]:
        """(losses, loss weights) keyed by output, from every head (paper 001, eq. 4)."""
        losses, weights = {}, {}
        for head in self.heads.values():
            for output, (loss, weight) in head.losses(train_config).items():
                losses[output], weights[output] = loss, weight
        return losses, weights

    def synthetic_batch(self, rng, batch: int) -> Tuple[Dict, Dict]:
        """Random inputs and targets of every input and output the model trains on."""
        config = self.data_config
        shape = [config.num_clips, config.clip_length, config.crop_size, config.crop_size, 3]
        x = {"video": rng.standard_normal([batch] + shape).astype("float32")}
        y = {}
        for head in self.heads.values():
            head.synthetic_batch(rng, batch, x, y)
        return x, y

    def clip_contributions(self) -> Optional[Tuple[str, keras.Model]]:
        """What each clip contributes to the score, as `(name, model)` where `model` maps the
        inference inputs to `[batch, num_clips]`:

        - `clip_weights` for Weight-Decider models: the softmax weights of each clip averaged
          over the feature elements (they sum to one over the clips);
        - `clip_scores` for averaging models: the score the heads give one clip's features
          alone (the model scores the average of the clip features);
        - None for the LSTM aggregations and whole-action backbones (one clip).
        """
        inputs = self.inference_model().input
        if self.aggregation is None:
            return None
        if self._clip_weights is not None:
            return CLIP_WEIGHTS, keras.Model(inputs, ops.mean(self._clip_weights, axis=-1),
                                             name=CLIP_WEIGHTS)
        if self.model_config.aggregation != "average":
            return None
        x = self._clip_features
        for layer in self._trunk:
            x = layer(x)
        for head in self.heads.values():
            scores = getattr(head, "clip_scores", lambda *_: None)(x, inputs)
            if scores is not None:
                return CLIP_SCORES, keras.Model(inputs, scores, name=CLIP_SCORES)
        return None


def _aggregate_clips(model_config: ModelConfig, inputs, clips):
    """Clip backbones: projection (paper 002), aggregation, fc6 (paper 001)."""
    # Paper 002: clip features projected (FC + ReLU) to 128-d before the aggregation.
    projections = [layers.Dense(units, activation="relu", name=f"projection_{i}")
                   for i, units in enumerate(model_config.projection_units)]
    projected = clips
    for layer in projections:
        projected = layer(projected)
    aggregation = build_aggregation(model_config.aggregation, lstm_units=model_config.lstm_units)
    out = aggregation(projected)
    x, weights = (out[0], out[1]) if isinstance(out, (tuple, list)) else (out, None)
    trunk, after = [], []
    if model_config.fc_units:
        # paper 001 / authors' `my_fc6`: Linear(8192 -> 4096) + ReLU + dropout 0.5.
        fc6 = layers.Dense(model_config.fc_units, activation="relu", name="fc6")
        after = [fc6, layers.Dropout(model_config.dropout, name="fc6_dropout")]
        x = after[1](fc6(x))
        trunk.append(fc6)

    def encode(other_clips):
        """The same projection, aggregation and fc6 on another video's clip features."""
        y = other_clips
        for layer in projections:
            y = layer(y)
        out = aggregation(y)
        y = out[0] if isinstance(out, (tuple, list)) else out
        for layer in after:
            y = layer(y)
        return y

    features = Features(inputs=inputs, clips=clips, pooled=x, encode=encode)
    return features, aggregation, (projected, trunk, weights)


def _whole_action(model_config: ModelConfig, data_config: DataConfig, inputs, clips):
    """MSCADC (paper 001, Table 3): the body's feature map feeds one context-net head per task.

    The whole action is one clip (16 frames subsampled with --frame_step), so there is nothing
    to aggregate: --aggregation, --fc_units and --projection_units do not apply.
    """
    if data_config.num_clips != 1:
        raise ValueError(
            f"backbone {model_config.backbone!r} reads the whole action as one clip, but the "
            f"data configuration gives {data_config.num_clips} clips; use num_frames == "
            "clip_length (paper 001: --num_frames=16 --clip_length=16 --frame_step=6.5)")
    feature_map = layers.Reshape(tuple(clips.shape[2:]), name="whole_action")(clips)
    return Features(inputs=inputs, clips=clips, feature_map=feature_map), None, (None, [], None)


def build_aqa_model(model_config: ModelConfig, data_config: DataConfig) -> AQAModel:
    """The `AQAModel` of the configurations (see its docstring for inputs and outputs)."""
    return AQAModel(model_config, data_config)


def backbone_of(model: AQAModel) -> keras.Model:
    """The per-clip backbone inside an `AQAModel`."""
    return model.backbone


def inference_model(model: AQAModel) -> keras.Model:
    """`AQAModel.inference_model` of `model`."""
    return model.inference_model()


def owner(model: keras.Model) -> AQAModel:
    """The `AQAModel` of `model` (itself, or the model an inference model was made from)."""
    return getattr(model, "aqa_model", model)


def clip_contributions(model: keras.Model) -> Optional[Tuple[str, keras.Model]]:
    """`AQAModel.clip_contributions` of `model` (an `AQAModel`, or its inference model)."""
    return owner(model).clip_contributions()
