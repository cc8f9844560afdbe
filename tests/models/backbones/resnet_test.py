"""3D ResNets and R(2+1)D: shapes, factorisation widths, serialisation, and parameter counts
against the PyTorch definitions they mirror (when torch is installed)."""

import numpy as np
import pytest

from aqa_tf.models.backbones import build_backbone
from aqa_tf.models.backbones.r2plus1d import R2Plus1D, mid_planes

# Parameter counts (weights + BN scale/offset, no fc) of the published definitions: Hara et
# al.'s 3D-ResNets-PyTorch `resnet.py` and `resnet2p1d.py` (stem mid width 110), and
# torchvision's stem width 45. Computed from tests/models/backbones/torch_reference.py.
NAMES = ["resnet3d_18", "resnet3d_34", "resnet3d_50", "resnet3d_101",
         "r2plus1d_18", "r2plus1d_34", "r2plus1d_50"]


def test_factorisation_width():
    # M = floor(3 d^2 N_in N_out / (d^2 N_in + 3 N_out)) with d = 3.
    assert mid_planes(64, 64) == 144
    assert mid_planes(64, 128) == 230
    assert mid_planes(512, 512) == 1152
    stem = R2Plus1D(depth=18, clip_length=8, image_size=32)
    assert stem.get_layer("conv1_s").filters == 110  # 3D-ResNets-PyTorch, t = 7
    assert R2Plus1D(depth=18, clip_length=8, image_size=32,
                    stem_channels=45).get_layer("conv1_s").filters == 45  # torchvision


@pytest.mark.parametrize("name, dim", [("resnet3d_18", 512), ("resnet3d_50", 2048),
                                       ("r2plus1d_34", 512), ("r2plus1d_50", 2048)])
def test_feature_dims_and_forward(name, dim):
    backbone = build_backbone(name, clip_length=8, image_size=32)
    assert backbone.feature_dim == dim
    x = np.random.default_rng(0).standard_normal((2, 8, 32, 32, 3)).astype("float32")
    assert backbone(x).shape == (2, dim)


def _keras_params(backbone):
    return sum(int(np.prod(w.shape)) for w in backbone.trainable_weights)


def test_ig65m_parameter_count_matches_torchvision_definition():
    pytest.importorskip("torch", reason="torch is needed for the PyTorch reference")
    from tests.models.backbones import torch_reference
    expected = sum(p.numel() for p in torch_reference.TorchvisionR2Plus1D().parameters())
    ours = _keras_params(build_backbone("r2plus1d_34_ig65m", clip_length=8, image_size=32))
    print(f"r2plus1d_34_ig65m: ours {ours:,} reference {expected:,}")
    assert ours == expected


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_pytorch(name):
    torch = pytest.importorskip("torch", reason="torch is needed for the PyTorch reference")
    from tests.models.backbones import torch_reference
    kind, depth = name.rsplit("_", 1)
    reference = torch_reference.ResNet(int(depth), factorised=kind == "r2plus1d")
    expected = sum(p.numel() for p in reference.parameters())
    ours = _keras_params(build_backbone(name, clip_length=8, image_size=32))
    print(f"{name}: ours {ours:,} reference {expected:,}")
    assert ours == expected
    del torch
