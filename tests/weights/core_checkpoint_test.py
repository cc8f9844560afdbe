"""The CoRe authors' trained checkpoint (`--init_weights_source=core`, yuxumin/CoRe `main.py`:
one file with the I3D backbone and the regression tree) converts into a CoRe model with parity
against their own modules: `models/i3d.py` (the I3D they fine-tune), `models/RegressTree.py` and
`utils/Group_helper.py` (the read-out), at their sizes (16-frame clips of 224x224, features
averaged over the clips, a tree of depth 5 over 2 x 1024 + 1 numbers).

Their files are read from $CORE_REPO (a checkout or git directory of github.com/yuxumin/CoRe),
else from the local mirror (`tests.helpers.authors_module`); without them the parity tests are
skipped (in CI too: a clean clone has no copy). The refusal of a wrong model always runs.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is needed to build the PyTorch references")

from aqa_tf.config import ConfigError, DataConfig, ModelConfig  # noqa: E402
from aqa_tf.data import exemplars  # noqa: E402
from tests.helpers import authors_module  # noqa: E402
from tests.models.backbones import torch_reference  # noqa: E402

SKIP = "the refusal of a wrong model still runs"
# One clip of 16 frames at 224 (CoRe averages 10 such clips' features: the average
# aggregation, tested with the other models).
CLIPS, FRAMES, SIZE = 1, 16, 224


@pytest.fixture(scope="module")
def authors(tmp_path_factory):
    files = {name: authors_module(tmp_path_factory, "yuxumin/CoRe", path, "CORE_REPO", SKIP)
             for name, path in (("i3d", "models/i3d.py"), ("tree", "models/RegressTree.py"),
                                ("group", "utils/Group_helper.py"))}
    return files


def _checkpoint(authors, path):
    """A checkpoint as their `save_checkpoint` writes it, of random modules (BN statistics
    random too), saved from DataParallel (`module.` prefixes, which their loader strips)."""
    i3d = torch_reference.randomise(authors["i3d"].I3D(num_classes=400, modality="rgb",
                                                       dropout_prob=0.5), seed=5)
    torch.manual_seed(6)
    tree = authors["tree"].RegressTree(2 * 1024 + 1, 256, 5).eval()
    torch.save({"base_model": {f"module.backbone.{k}": v for k, v in i3d.state_dict().items()},
                "regressor": {f"module.{k}": v for k, v in tree.state_dict().items()},
                "optimizer": {"state": {}, "param_groups": []}, "epoch": 41,
                "epoch_best": 40, "rho_best": np.float64(0.95), "L2_min": 1.0,
                "RL2_min": 0.5}, path)
    return i3d, tree


def _configs(groups):
    model = ModelConfig(backbone="i3d", aggregation="average", fc_units=0, dropout=0.0,
                        heads=("core",), core_tree_depth=5, core_hidden=256,
                        core_score_range=30, core_difficulty=True, exemplar_match="any",
                        core_groups=tuple(np.asarray(groups).reshape(-1)))
    data = DataConfig(num_frames=CLIPS * FRAMES, sample_length=CLIPS * FRAMES,
                      clip_length=FRAMES, clip_stride=FRAMES, crop_size=SIZE)
    return model, data


def test_authors_checkpoint_scores_as_their_modules(authors, tmp_path):
    from aqa_tf.models.heads import core
    from aqa_tf.weights import sources

    path = str(tmp_path / "CoRe_MTL.pth")
    i3d, tree = _checkpoint(authors, path)
    rng = np.random.default_rng(0)
    groups = exemplars.group_boundaries(np.abs(rng.normal(0, 4, 500)), 5, 30)
    model_config, data_config = _configs(groups)
    model = sources.model_from_checkpoint(model_config, data_config, path, "core")

    videos = rng.uniform(-1, 1, (2, CLIPS, FRAMES, SIZE, SIZE, 3)).astype("float32")
    exemplar_target, difficulty = np.float32(17.5), np.float32(3.2)
    # Theirs (models/Backbone.py, tools/helper.py network_forward_test): clip features averaged,
    # [exemplar, query, exemplar / score_range] into the tree, Group_helper's read-out, then
    # (relative + exemplar) x difficulty.
    with torch.no_grad():
        features = [torch.stack([i3d(torch.from_numpy(np.transpose(video[c], (3, 0, 1, 2)))[None])
                                 .reshape(-1) for c in range(CLIPS)]).mean(0)
                    for video in videos]
        query, exemplar = features
        pair = torch.cat([exemplar, query, torch.tensor([exemplar_target / 30.0])])[None]
        out_prob, delta = tree(pair)
    helper = authors["group"].Group_helper(list(np.abs(rng.normal(0, 4, 10))), 5,
                                           Symmetrical=True, Max=30, Min=0)
    helper.Group = [list(g) for g in groups]  # the groups the model was given
    leaf_probs = out_prob[-1].reshape(1, -1).numpy()
    relative = float(helper.inference(leaf_probs, delta.numpy())[0, 0])
    expected_score = (relative + exemplar_target) * difficulty

    owner = model
    encoder = __import__("keras").Model(owner.input["video"], owner.features.pooled)
    ours = np.asarray(encoder(videos, training=False))
    theirs = np.stack([f.numpy() for f in features])
    feature_error = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    tree_ours = np.asarray(model.heads["core"].tree(pair.numpy()))
    tree_theirs = np.concatenate([leaf_probs, delta.numpy()], -1)
    tree_error = float(np.abs(tree_ours - tree_theirs).max() / np.abs(tree_theirs).max())
    inference = model.inference_model()
    score = float(np.asarray(inference({
        "video": videos[:1], "difficulty": np.array([difficulty]),
        core.EXEMPLAR_FEATURES: ours[1][None, None],
        core.EXEMPLAR_TARGETS: np.array([[exemplar_target]])})["score"])[0])
    print(f"CoRe checkpoint: I3D features rel. error {feature_error:.2e}, tree outputs "
          f"{tree_error:.2e}; score {score:.4f} vs theirs {expected_score:.4f}")
    assert feature_error <= 1e-4 and tree_error <= 1e-4
    assert abs(score - expected_score) <= 1e-3 * max(1.0, abs(expected_score))


def test_a_model_without_the_core_head_is_refused(tmp_path):
    """The I3D's keys alone would fit a USDL model: the source says what to build instead."""
    from aqa_tf.weights import sources

    path = str(tmp_path / "CoRe.pth")
    torch.save({"base_model": {}, "regressor": {}, "epoch": 1}, path)
    model_config = ModelConfig(backbone="i3d", aggregation="average", fc_units=0,
                               heads=("usdl",), width_multiplier=0.125)
    data_config = DataConfig(num_frames=16, sample_length=16, clip_length=16, clip_stride=16,
                             crop_size=64)
    with pytest.raises(ConfigError, match="--heads=core"):
        sources.model_from_checkpoint(model_config, data_config, path, "core")
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ConfigError, match="not a CoRe checkpoint"):
        sources.model_from_checkpoint(model_config, data_config, path, "core")
