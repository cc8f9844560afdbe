"""Aggregation of clip features into one video feature (`--aggregation=`)."""

import keras
from keras import layers

from aqa_tf.config import AGGREGATIONS
from aqa_tf.models.layers.weight_decider import WeightDecider


def build_aggregation(name: str, lstm_units: int = 256, **kwargs):
    """Returns a layer mapping clip features `[batch, num_clips, dim]` to `[batch, dim']`.

    - `average`: C3D-AVG's element-wise mean over clips (paper 001, section 4.1).
    - `weight_decider`: paper 002's learned per-element softmax weighting over clips; the layer
      returns `(video_features, weights)` (see `WeightDecider`).
    - `lstm_encoder`: an LSTM reads the clips in order and its last hidden state
      (`lstm_units`) is the video feature (paper 000, section 4.3).
    - `lstm`: paper 003's C3D-LSTM aggregation: the same LSTM (256 units), its weights drawn
      from N(0, 0.1) as the paper initialises them; meant for fc6 clip features
      (`--backbone_fc6=4096`) and a frozen C3D.
    """
    if name == "average":
        return layers.GlobalAveragePooling1D(name="clip_average")
    if name == "weight_decider":
        return WeightDecider(name="weight_decider", **kwargs)
    if name == "lstm_encoder":
        return layers.LSTM(lstm_units, name="lstm_encoder")
    if name == "lstm":
        init = keras.initializers.RandomNormal(stddev=0.1)
        return layers.LSTM(lstm_units, kernel_initializer=init, recurrent_initializer=init,
                           name="lstm")
    raise ValueError(f"unknown aggregation {name!r}; known aggregations: {', '.join(AGGREGATIONS)}")


def aggregate(layer, clip_features):
    """Applies an aggregation layer; returns the video features (and drops WD's weights)."""
    out = layer(clip_features)
    return out[0] if isinstance(out, (tuple, list)) else out
