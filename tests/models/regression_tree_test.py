"""CoRe's regression tree: groups, targets, outputs and loss against hand and NumPy
computations, and the layer against the authors' `RegressTree` / `Group_helper` in PyTorch."""

import numpy as np
import pytest

from aqa_tf.data import exemplars
from tests.helpers import authors_module


def test_group_boundaries_equal_a_hand_computation():
    # 9 differences, depth 3: 4 leaves, 2 per half. Positive half: leaf 2 = [0, d[int(0.5 * 8)]]
    # = [0, 2.0], leaf 3 = [d[4], score_range] = [2.0, 30]; the negative half mirrors it.
    deltas = [3.0, 0.5, 2.0, 1.0, 0.0, 4.5, 1.5, 2.5, 6.0]
    groups = exemplars.group_boundaries(deltas, depth=3, score_range=30)
    np.testing.assert_array_equal(groups, [[-30, -2], [-2, 0], [0, 2], [2, 30]])
    # Depth 4: 8 leaves, 4 per half, cut at int(i / 4 * 8) = 2, 4, 6 of the sorted list
    # [0, .5, 1, 1.5, 2, 2.5, 3, 4.5, 6].
    groups = exemplars.group_boundaries(deltas, depth=4, score_range=30)
    np.testing.assert_array_equal(groups[4:], [[0, 1], [1, 2], [2, 3], [3, 30]])
    np.testing.assert_array_equal(groups[:4], [[-30, -3], [-3, -2], [-2, -1], [-1, 0]])


def test_pair_deltas_are_within_groups_only():
    targets = np.array([1.0, 2.0, 4.0, 10.0, 13.0])
    groups = {"a": [0, 1, 2], "b": [3, 4]}
    np.testing.assert_allclose(sorted(exemplars.pair_deltas(targets, groups)), [1, 2, 3, 3])


def test_group_targets_follow_the_half_open_rule():
    groups = np.array([[-30, -2], [-2, 0], [0, 2], [2, 30]], np.float64)
    leaf, position = exemplars.group_targets(np.array([0.0, 1.0, 2.0, -2.0, -0.5, 40.0]), groups)
    # -2 < 0 belongs to (-30, -2]; 40 to no leaf (leaf 0, no position anywhere).
    np.testing.assert_array_equal(leaf, [2, 2, 3, 0, 1, 0])
    np.testing.assert_allclose(position[:, 2], [0.0, 0.5, -1, -1, -1, -1])
    np.testing.assert_allclose(position[:, 1], [-1, -1, -1, -1, 0.75, -1])
    assert position[3, 0] == 1.0
    np.testing.assert_allclose(position[5], [-1, -1, -1, -1])
    # The read-out inverts the targets in the true leaf.
    scores = np.eye(4)[leaf]
    back = exemplars.relative_from_tree(scores, np.maximum(position, 0), groups)
    np.testing.assert_allclose(back[:5], [0.0, 1.0, 2.0, -2.0, -0.5])


def _numpy_tree(x, weights, depth):
    """The tree as the module docstring defines it, node by node in NumPy (float64)."""
    w = [np.asarray(v, np.float64) for v in weights]
    h = np.maximum(x @ w[0] + w[1], 0)
    nodes, log_prob, i = [h], None, 2
    for level in range(depth - 1):
        split_k, split_b, clf_k, clf_b = w[i:i + 4]
        i += 4
        new_nodes, new_log = [], []
        for k, node in enumerate(nodes):
            logits = node @ clf_k[k] + clf_b[k]
            step = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
            if log_prob is not None:
                step = step + log_prob[:, k:k + 1]
            new_log.append(step)
            children = np.maximum(node @ split_k[k] + split_b[k], 0)
            hidden = children.shape[-1] // 2
            new_nodes += [children[:, :hidden], children[:, hidden:]]
        nodes, log_prob = new_nodes, np.concatenate(new_log, -1)
    delta = np.stack([node @ w[i][k] + w[i + 1][k] for k, node in enumerate(nodes)], -1)
    return np.concatenate([log_prob, delta], -1)


def test_tree_outputs_match_numpy_on_fixed_weights():
    from aqa_tf.models.layers.regression_tree import RegressionTree, TreeReadout
    rng = np.random.default_rng(0)
    layer = RegressionTree(depth=4, hidden=8)
    x = rng.standard_normal((5, 11)).astype("float32")
    layer(x)
    weights = [rng.standard_normal(v.shape).astype("float32") * 0.5 for v in layer.weights]
    layer.set_weights(weights)
    out = np.asarray(layer(x))
    assert out.shape == (5, 16)
    np.testing.assert_allclose(out, _numpy_tree(x.astype(np.float64), weights, 4),
                               rtol=1e-4, atol=1e-5)
    # Leaf probabilities sum to one.
    np.testing.assert_allclose(np.exp(out[:, :8]).sum(-1), 1.0, rtol=1e-5)
    groups = exemplars.group_boundaries(rng.uniform(0, 10, 50), depth=4, score_range=30)
    np.testing.assert_allclose(np.asarray(TreeReadout(groups)(out)),
                               exemplars.relative_from_tree(out[:, :8], out[:, 8:], groups),
                               rtol=1e-5, atol=1e-5)


def _numpy_loss(true, tree, groups):
    """The authors' loss (`tools/helper.py`) on one direction, in NumPy."""
    leaves = groups.shape[0]
    log_prob, delta = tree[:, :leaves], tree[:, leaves:]
    leaf, position = exemplars.group_targets(true, groups)
    loss = -np.mean(log_prob[np.arange(len(true)), leaf])
    for i in range(leaves):
        mask = position[:, i] >= 0
        if mask.any():
            loss += np.mean((delta[mask, i] - position[mask, i]) ** 2)
    return loss


def test_tree_loss_matches_the_authors_formula():
    from aqa_tf.models.losses import RegressionTreeLoss
    rng = np.random.default_rng(1)
    groups = exemplars.group_boundaries(rng.uniform(0, 8, 200), depth=3, score_range=30)
    logits = rng.standard_normal((6, 4))
    log_prob = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    tree = np.concatenate([log_prob, rng.uniform(0, 1, (6, 4))], -1).astype("float32")
    true = np.array([0.3, -1.2, 5.0, -7.5, 2.2, 0.0], np.float32)
    loss = RegressionTreeLoss(groups)(true, tree)
    np.testing.assert_allclose(float(loss), _numpy_loss(true, tree, groups), rtol=1e-5)
    reverse = RegressionTreeLoss(groups, sign=-1.0)(-true, tree)
    np.testing.assert_allclose(float(reverse), float(loss), rtol=1e-6)


@pytest.fixture(scope="module")
def authors(tmp_path_factory):
    pytest.importorskip("torch", reason="torch builds the PyTorch references")
    skip = "the NumPy checks above still run"
    return (authors_module(tmp_path_factory, "yuxumin/CoRe", "models/RegressTree.py",
                           "CORE_REPO", skip),
            authors_module(tmp_path_factory, "yuxumin/CoRe", "utils/Group_helper.py",
                           "CORE_REPO", skip))


def test_converted_tree_matches_the_authors_regress_tree(authors):
    import torch

    from aqa_tf.models.layers.regression_tree import RegressionTree, tree_weights_from_torch
    regress_tree, _ = authors
    torch.manual_seed(0)
    # The paper's sizes: [exemplar, query, score / range] of two 1024-d I3D features; depth 5.
    reference = regress_tree.RegressTree(2 * 1024 + 1, 256, 5).eval()
    x = torch.randn(4, 2 * 1024 + 1)
    with torch.no_grad():
        log_prob, delta = reference(x)
    expected = np.concatenate([log_prob[-1].reshape(4, -1).numpy(), delta.numpy()], -1)
    layer = RegressionTree(depth=5, hidden=256)
    layer(x.numpy())
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    layer.set_weights(tree_weights_from_torch(state))
    out = np.asarray(layer(x.numpy()))
    rel = np.abs(out - expected).max() / np.abs(expected).max()
    assert rel <= 1e-4, rel


def test_group_boundaries_equal_the_authors_group_helper(authors):
    _, group_helper = authors
    rng = np.random.default_rng(2)
    for depth, n in ((5, 1000), (4, 37), (3, 2)):
        deltas = list(np.abs(rng.normal(0, 5, n)))
        theirs = group_helper.Group_helper(deltas, depth, Symmetrical=True, Max=30, Min=0)
        np.testing.assert_allclose(exemplars.group_boundaries(deltas, depth, 30),
                                   np.asarray(theirs.get_Group(), np.float64))
