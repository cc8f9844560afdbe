"""CoRe's group-aware regression tree (Yu et al., ICCV 2021, Sec. 3.3; the authors'
`models/RegressTree.py`), and the read-out of its prediction.

A binary tree of depth `depth` over the pair feature `[exemplar feature, query feature,
exemplar score / score_range]`: Dense + ReLU to `hidden` units, then at each level every node
splits its `hidden` features into its two children's (a 1x1 grouped convolution in the
authors' code: one `[hidden, 2 * hidden]` map per node) and classifies which child the score
difference falls in. Leaf probabilities are the products along the path (sums of log-softmaxes);
each leaf regresses the difference's position inside its group with its own `[hidden, 1]` map.

Outputs `[batch, 2 * leaves]`: the leaves' log-probabilities, then their positions (both
float32). Node order as the authors' channels: node `k` of a level has children `2k`, `2k + 1`.
"""

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="aqa_tf")
class RegressionTree(layers.Layer):
    """The tree; see the module docstring. `depth` 5 and `hidden` 256 in the paper."""

    def __init__(self, depth: int = 5, hidden: int = 256, **kwargs):
        super().__init__(**kwargs)
        if depth < 2:
            raise ValueError(f"tree_depth={depth}: a tree needs depth >= 2 (two leaves)")
        self.depth, self.hidden = int(depth), int(hidden)
        self.leaves = 2 ** (self.depth - 1)

    def build(self, input_shape):
        h = self.hidden
        self.first = self.add_weight(name="first_kernel", shape=(int(input_shape[-1]), h),
                                     initializer="glorot_uniform")
        self.first_bias = self.add_weight(name="first_bias", shape=(h,), initializer="zeros")
        self.split_kernels, self.split_biases = [], []
        self.clf_kernels, self.clf_biases = [], []
        for level in range(self.depth - 1):
            nodes = 2 ** level
            self.split_kernels.append(self.add_weight(
                name=f"split{level}_kernel", shape=(nodes, h, 2 * h),
                initializer="glorot_uniform"))
            self.split_biases.append(self.add_weight(
                name=f"split{level}_bias", shape=(nodes, 2 * h), initializer="zeros"))
            self.clf_kernels.append(self.add_weight(
                name=f"clf{level}_kernel", shape=(nodes, h, 2), initializer="glorot_uniform"))
            self.clf_biases.append(self.add_weight(
                name=f"clf{level}_bias", shape=(nodes, 2), initializer="zeros"))
        self.reg_kernel = self.add_weight(name="reg_kernel", shape=(self.leaves, h),
                                          initializer="glorot_uniform")
        self.reg_bias = self.add_weight(name="reg_bias", shape=(self.leaves,),
                                        initializer="zeros")

    def call(self, pair_features):
        x = ops.relu(ops.matmul(pair_features, self.first) + self.first_bias)
        x = ops.expand_dims(x, 1)  # [batch, nodes=1, hidden]
        log_prob = None
        for level in range(self.depth - 1):
            nodes = 2 ** level
            logits = ops.einsum("bnh,nhc->bnc", x, self.clf_kernels[level]) + \
                self.clf_biases[level]
            step = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)  # [batch, nodes, 2]
            if log_prob is not None:
                step = step + ops.expand_dims(log_prob, -1)
            log_prob = ops.reshape(step, (-1, 2 * nodes))
            x = ops.relu(ops.einsum("bnh,nhc->bnc", x, self.split_kernels[level]) +
                         self.split_biases[level])
            x = ops.reshape(x, (-1, 2 * nodes, self.hidden))
        delta = ops.sum(x * self.reg_kernel, axis=-1) + self.reg_bias  # [batch, leaves]
        return ops.concatenate([log_prob, ops.cast(delta, "float32")], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * self.leaves)

    def get_config(self):
        return {**super().get_config(), "depth": self.depth, "hidden": self.hidden}


@keras.saving.register_keras_serializable(package="aqa_tf")
class TreeReadout(layers.Layer):
    """Tree outputs `[..., 2 * leaves]` -> the difference they predict `[...]` (the authors'
    `Group_helper.inference`): in the most probable leaf `[left, right]`, `left + (right - left)
    * position` (`left + position` where the leaf is one point). `boundaries` `[leaves, 2]`
    come from the training split (`data.exemplars.group_boundaries`) and are saved with the
    layer."""

    def __init__(self, boundaries, **kwargs):
        super().__init__(**kwargs)
        self.boundaries = np.asarray(boundaries, np.float64).reshape(-1, 2)

    def call(self, tree):
        leaves = self.boundaries.shape[0]
        tree = ops.cast(tree, "float32")
        log_prob, position = tree[..., :leaves], tree[..., leaves:]
        # The first most probable leaf, one-hot, made of comparisons and a cumulative sum (what
        # TFLite's builtin ops run: Keras' argmax there needs TF's BitwiseAnd).
        is_max = ops.cast(log_prob >= ops.max(log_prob, axis=-1, keepdims=True), "float32")
        one_hot = is_max * ops.cast(ops.cumsum(is_max, axis=-1) == 1.0, "float32")
        left = ops.sum(one_hot * self.boundaries[:, 0].astype("float32"), axis=-1)
        right = ops.sum(one_hot * self.boundaries[:, 1].astype("float32"), axis=-1)
        chosen = ops.sum(one_hot * position, axis=-1)
        width = right - left
        return left + ops.where(width == 0.0, 1.0, width) * chosen

    def get_config(self):
        return {**super().get_config(), "boundaries": self.boundaries.tolist()}


def tree_weights_from_torch(state, prefix: str = ""):
    """The weights of `RegressionTree` (in `layer.weights` order) from the authors'
    `RegressTree` state dict (numpy arrays; `prefix` e.g. "module." for DataParallel saves):
    `first_layer.0`, `feature_layers.<level>.0`, `clf_layers.<level>`, `reg_layer`. A grouped
    Conv1d weight `[nodes * out, hidden, 1]` holds node `k`'s map in output rows `k * out ..`."""
    def get(name):
        return np.asarray(state[prefix + name], np.float32)

    depth = 1 + sum(1 for k in state if k.startswith(prefix + "clf_layers.") and
                    k.endswith(".weight"))
    hidden = get("first_layer.0.weight").shape[0]
    out = [get("first_layer.0.weight").T, get("first_layer.0.bias")]
    splits, clfs = [], []
    for level in range(depth - 1):
        nodes = 2 ** level
        w = get(f"feature_layers.{level}.0.weight")[..., 0]  # [nodes * 2h, h]
        splits += [w.reshape(nodes, 2 * hidden, hidden).transpose(0, 2, 1),
                   get(f"feature_layers.{level}.0.bias").reshape(nodes, 2 * hidden)]
        w = get(f"clf_layers.{level}.weight")[..., 0]  # [nodes * 2, h]
        clfs += [w.reshape(nodes, 2, hidden).transpose(0, 2, 1),
                 get(f"clf_layers.{level}.bias").reshape(nodes, 2)]
    for level in range(depth - 1):
        out += [splits[2 * level], splits[2 * level + 1], clfs[2 * level], clfs[2 * level + 1]]
    out += [get("reg_layer.weight")[..., 0], get("reg_layer.bias")]
    return out
