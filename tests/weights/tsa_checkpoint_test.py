"""The FineDiving authors' trained TSA checkpoint (`--init_weights_source=tsa`: their
`tools/helper.py` `save_checkpoint` writes the I3D, PSNet, decoder and regressor in one file)
converts into a TSA model that scores a query against an exemplar as their modules do, at
their sizes (9 clips of 16 frames of 112x112, 1024-d I3D features, 64-d steps, 8 heads, 3
blocks): their `models/i3d.py` and the composition of `tests.models.procedure_test`
(`network_forward_test` for one exemplar).

Their files are read from $FINEDIVING_REPO (a checkout or git directory of
github.com/xujinglin/FineDiving), else from the local mirror (`tests.helpers.authors_module`);
without them the parity test is skipped (in CI too). The refusals always run.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is needed to build the PyTorch references")

from aqa_tf.config import ConfigError, DataConfig, ModelConfig  # noqa: E402
from tests.helpers import authors_module  # noqa: E402
from tests.models.backbones import torch_reference  # noqa: E402
from tests.models.procedure_test import (ENV, REPO, SKIP, _their_composition,  # noqa: E402
                                         authors)

assert authors  # the fixture, used by name below
STARTS, FRAMES, SIZE = tuple(range(0, 90, 10)), 16, 112  # models/Backbone.py


def _configs():
    model = ModelConfig(backbone="i3d", aggregation="average", fc_units=0, dropout=0.0,
                        heads=("tsa",), tsa_fix_size=5, tsa_heads=8, tsa_layers=3,
                        exemplar_match="any", voters=1)
    data = DataConfig(num_frames=96, sample_length=96, clip_length=FRAMES, clip_starts=STARTS,
                      crop_size=SIZE)
    return model, data


def test_authors_checkpoint_scores_as_their_modules(authors, tmp_path_factory, tmp_path):
    from aqa_tf.models.heads import core
    from aqa_tf.weights import sources

    i3d_module = authors_module(tmp_path_factory, REPO, "models/i3d.py", ENV, SKIP)
    i3d = torch_reference.randomise(i3d_module.I3D(num_classes=400, modality="rgb",
                                                   dropout_prob=0.5), seed=21)
    psnet = torch_reference.randomise(authors["ps"].PSNet(n_channels=9), seed=22)
    fuser = torch_reference.randomise(authors["vit"].decoder_fuser(dim=64, num_heads=8,
                                                                   num_layers=3), seed=23)
    mlp = torch_reference.randomise(authors["mlp"].MLP_score(64, 1), seed=24)
    path = str(tmp_path / "TSA_FineDiving.pth")
    module = lambda m, prefix="": {f"module.{prefix}{k}": v  # noqa: E731 (DataParallel)
                                   for k, v in m.state_dict().items()}
    torch.save({"base_model": module(i3d, "backbone."), "psnet_model": module(psnet),
                "decoder": module(fuser), "regressor_delta": module(mlp),
                "optimizer": {"state": {}, "param_groups": []}, "epoch": 120,
                "epoch_best_aqa": 118, "rho_best": 0.92, "L2_min": 1.0, "RL2_min": 0.5}, path)
    model_config, data_config = _configs()
    model = sources.model_from_checkpoint(model_config, data_config, path, "tsa")

    rng = np.random.default_rng(0)
    videos = rng.uniform(-1, 1, (2, 96, SIZE, SIZE, 3)).astype("float32")  # query, exemplar
    with torch.no_grad():  # their I3D_backbone.forward: the 9 clips of both videos at once
        pack = torch.from_numpy(np.concatenate([videos[:, s:s + FRAMES] for s in STARTS]))
        maps, features = i3d(pack.permute(0, 4, 1, 2, 3))
    features = features.reshape(len(STARTS), 2, -1).transpose(0, 1)  # [2, 9, 1024]
    maps = maps.reshape((len(STARTS), 2) + tuple(maps.shape[1:])).transpose(0, 1)
    com_feature = torch.cat((features[:1], features[1:]), 2)
    com_feamap = torch.cat((maps[:1], maps[1:]), 2)
    delta, _, transitions, _ = _their_composition(authors, psnet, fuser, mlp, com_feature,
                                                  com_feamap)

    clips = np.stack([[v[s:s + FRAMES] for s in STARTS] for v in videos])
    head = model.heads["tsa"]
    memory = np.asarray(head.bank_encoder(model)(clips[1:], training=False))
    exemplar_score = 81.5
    out = model.inference_model()({"video": clips[:1], core.EXEMPLAR_FEATURES: memory[None],
                                   core.EXEMPLAR_TARGETS: np.array([[exemplar_score]])})
    ours = float(np.asarray(out["score"])[0]) - exemplar_score
    error = abs(ours - float(delta[0])) / max(1e-6, abs(float(delta[0])))
    print(f"TSA checkpoint: delta {ours:.6f} vs theirs {float(delta[0]):.6f} (rel. "
          f"{error:.1e}); transitions {np.asarray(out['step_transitions'])[0].tolist()} vs "
          f"{transitions[0].astype(int).tolist()}")
    np.testing.assert_array_equal(np.asarray(out["step_transitions"])[0],
                                  np.maximum(transitions[0], [1, 2]).astype(int))
    assert error <= 1e-4


def test_a_model_without_the_tsa_head_and_a_checkpoint_of_another_kind_are_refused(tmp_path):
    from aqa_tf.weights import sources

    path = str(tmp_path / "TSA.pth")
    torch.save({"base_model": {}, "psnet_model": {}, "decoder": {}, "regressor_delta": {}},
               path)
    model_config = ModelConfig(backbone="i3d", aggregation="average", fc_units=0,
                               heads=("usdl",), width_multiplier=0.125)
    data_config = DataConfig(num_frames=16, sample_length=16, clip_length=16, clip_stride=16,
                             crop_size=64)
    with pytest.raises(ConfigError, match="--heads=tsa"):
        sources.model_from_checkpoint(model_config, data_config, path, "tsa")
    torch.save({"base_model": {}, "regressor": {}}, path)  # CoRe's
    with pytest.raises(ConfigError, match="not a TSA checkpoint"):
        sources.model_from_checkpoint(model_config, data_config, path, "tsa")
