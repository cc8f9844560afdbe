"""Aggregation of clip features into one video feature (`--aggregation=`), registered by name
in `registry.AGGREGATIONS`. Each builder returns a layer mapping clip features
`[batch, num_clips, dim]` to `[batch, dim']` (or `(features, extras)`, see `aggregate`)."""

import keras
from keras import layers

from aqa_tf.models.layers.weight_decider import WeightDecider
from aqa_tf.registry import AGGREGATIONS


@AGGREGATIONS.register("average")
def _average(lstm_units: int = 256) -> layers.Layer:
    """C3D-AVG's element-wise mean over clips (paper 001, section 4.1)."""
    return layers.GlobalAveragePooling1D(name="clip_average")


@AGGREGATIONS.register("weight_decider")
def _weight_decider(lstm_units: int = 256, **kwargs) -> layers.Layer:
    """Paper 002's learned per-element softmax weighting over clips; the layer returns
    `(video_features, weights)` (see `WeightDecider`)."""
    return WeightDecider(name="weight_decider", **kwargs)


@AGGREGATIONS.register("lstm_encoder")
def _lstm_encoder(lstm_units: int = 256) -> layers.Layer:
    """An LSTM reads the clips in order; its last hidden state is the video feature (paper 000,
    section 4.3)."""
    return layers.LSTM(lstm_units, name="lstm_encoder")


@AGGREGATIONS.register("lstm")
def _lstm(lstm_units: int = 256) -> layers.Layer:
    """Paper 003's C3D-LSTM aggregation: the same LSTM (256 units), its weights drawn from
    N(0, 0.1) as the paper initialises them; meant for fc6 clip features
    (`--backbone_fc6=4096`) and a frozen C3D."""
    init = keras.initializers.RandomNormal(stddev=0.1)
    return layers.LSTM(lstm_units, kernel_initializer=init, recurrent_initializer=init,
                       name="lstm")


def build_aggregation(name: str, lstm_units: int = 256, **kwargs) -> layers.Layer:
    """The aggregation layer registered as `name` (`lstm_units`: width of the LSTM ones;
    `kwargs`: passed to the layer, e.g. the Weight-Decider's `hidden_units`).

    Raises:
      ValueError: for an unknown name, listing the known aggregations.
    """
    return AGGREGATIONS.get(name)(lstm_units=lstm_units, **kwargs)


def aggregate(layer: layers.Layer, clip_features: keras.KerasTensor) -> keras.KerasTensor:
    """Applies an aggregation layer; returns the video features (and drops WD's weights)."""
    out = layer(clip_features)
    return out[0] if isinstance(out, (tuple, list)) else out
