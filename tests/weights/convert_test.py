"""Weight import parity: PyTorch modules with the published key names and random weights ->
state dict file -> converter -> Keras backbone; outputs equal in eval mode (BN running stats)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is needed to build the PyTorch references")

from aqa_tf.models.backbones import build_backbone  # noqa: E402
from aqa_tf.weights import convert, mapping  # noqa: E402
from tests.models.backbones import torch_reference  # noqa: E402


def _randomise(module, seed):
    """Random weights and BN statistics, eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith(".weight") and tensor.dim() == 1:  # BN scale
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif tensor.dim() > 1:
                fan_in = int(np.prod(tensor.shape[1:]))
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    return module.eval()


def _save(state_dict, path, wrap):
    if wrap:  # 3D-ResNets-PyTorch checkpoints: {"state_dict": {"module.<key>": ...}, ...}
        state_dict = {"state_dict": {f"module.{k}": v for k, v in state_dict.items()},
                      "epoch": 200, "arch": "resnet"}
    torch.save(state_dict, path)


def _compare(reference, backbone, clip):
    with torch.no_grad():
        expected = reference(torch.from_numpy(np.transpose(clip, (0, 4, 1, 2, 3)))).numpy()
    got = np.asarray(backbone(clip, training=False))
    scale = float(np.abs(expected).max())
    err = float(np.abs(got - expected).max())
    print(f"max abs diff {err:.3g} (output scale {scale:.3g})")
    assert err <= 1e-4 * scale
    return err


@pytest.mark.parametrize("name", ["resnet3d_18", "resnet3d_34", "resnet3d_50", "resnet3d_101",
                                  "r2plus1d_18", "r2plus1d_34", "r2plus1d_50"])
def test_resnet_checkpoints_convert_with_parity(name, tmp_path):
    kind, depth = name.rsplit("_", 1)
    reference = _randomise(torch_reference.ResNet(int(depth), factorised=kind == "r2plus1d"),
                           seed=int(depth))
    state = dict(reference.state_dict())
    state["fc.weight"] = torch.zeros(400, 2048 if int(depth) >= 50 else 512)  # the classifier
    state["fc.bias"] = torch.zeros(400)
    path = str(tmp_path / f"{name}.pth")
    _save(state, path, wrap=True)

    backbone = build_backbone(name, clip_length=8, image_size=48)
    report = convert.convert_into(backbone, convert.read_torch_checkpoint(path), "resnet")
    assert report["ignored"] == ["fc.bias", "fc.weight"]
    clip = np.random.default_rng(0).standard_normal((2, 8, 48, 48, 3)).astype("float32")
    _compare(reference, backbone, clip)


def test_ig65m_torchvision_checkpoint_converts_with_parity(tmp_path):
    reference = _randomise(torch_reference.TorchvisionR2Plus1D(), seed=65)
    state = dict(reference.state_dict())
    assert "layer1.0.conv1.0.3.weight" in state and "stem.3.weight" in state
    state["fc.weight"], state["fc.bias"] = torch.zeros(359, 512), torch.zeros(359)
    path = str(tmp_path / "r2plus1d_34_clip32_ig65m.pth")
    _save(state, path, wrap=False)
    backbone = build_backbone("r2plus1d_34_ig65m", clip_length=8, image_size=48)
    report = convert.convert_into(backbone, convert.read_torch_checkpoint(path), "torchvision")
    assert report["ignored"] == ["fc.bias", "fc.weight"]
    clip = np.random.default_rng(2).standard_normal((2, 8, 48, 48, 3)).astype("float32")
    _compare(reference, backbone, clip)


class _C3D(torch.nn.Module):
    """The Sports-1M C3D with its published key names (conv1 ... conv5b, fc6-8)."""

    def __init__(self):
        super().__init__()
        widths = [("conv1", 3, 64), ("conv2", 64, 128), ("conv3a", 128, 256),
                  ("conv3b", 256, 256), ("conv4a", 256, 512), ("conv4b", 512, 512),
                  ("conv5a", 512, 512), ("conv5b", 512, 512)]
        for name, cin, cout in widths:
            setattr(self, name, torch.nn.Conv3d(cin, cout, 3, padding=1))
        self.fc6 = torch.nn.Linear(8192, 4096)
        self.fc7 = torch.nn.Linear(4096, 4096)
        self.fc8 = torch.nn.Linear(4096, 487)

    def forward(self, x):
        f = torch.nn.functional
        x = f.max_pool3d(f.relu(self.conv1(x)), (1, 2, 2), (1, 2, 2))
        x = f.max_pool3d(f.relu(self.conv2(x)), 2, 2)
        x = f.max_pool3d(f.relu(self.conv3b(f.relu(self.conv3a(x)))), 2, 2)
        x = f.max_pool3d(f.relu(self.conv4b(f.relu(self.conv4a(x)))), 2, 2)
        x = f.max_pool3d(f.relu(self.conv5b(f.relu(self.conv5a(x)))), 2, 2, padding=(0, 1, 1))
        return torch.flatten(x, 1)  # pool5 features, channels-first order


def test_c3d_sports1m_pickle_converts_with_parity(tmp_path):
    reference = _randomise(_C3D(), seed=3)
    path = str(tmp_path / "c3d.pickle")
    _save(dict(reference.state_dict()), path, wrap=False)
    backbone = build_backbone("c3d")
    report = convert.convert_into(backbone, convert.read_torch_checkpoint(path), "c3d")
    assert len(report["loaded"]) == 16
    assert report["ignored"] == ["fc6.bias", "fc6.weight", "fc7.bias", "fc7.weight",
                                 "fc8.bias", "fc8.weight"]
    clip = np.random.default_rng(1).uniform(-1, 1, (1, 16, 112, 112, 3)).astype("float32")
    _compare(reference, backbone, clip)

    # With fc6 in the backbone (paper 003's C3D-LSTM reads fc6 features), fc6 is imported too.
    with_fc6 = build_backbone("c3d", fc6_units=4096)
    report = convert.convert_into(with_fc6, convert.read_torch_checkpoint(path), "c3d")
    assert "fc6.weight" in report["loaded"] and "fc6.weight" not in report["ignored"]

    class _UpToFc6(torch.nn.Module):
        def forward(self, x):
            return torch.relu(reference.fc6(reference(x)))

    _compare(_UpToFc6(), with_fc6, clip)


def test_mismatched_checkpoint_lists_every_problem():
    reference = torch_reference.ResNet(18)
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    del state["layer1.0.conv1.weight"]
    state["layer9.0.conv1.weight"] = np.zeros((1,))
    state["bn1.weight"] = np.zeros((32,), np.float32)
    backbone = build_backbone("resnet3d_18", clip_length=8, image_size=32)
    with pytest.raises(mapping.ConversionError) as error:
        convert.convert_into(backbone, state, "resnet")
    message = str(error.value)
    assert "1 missing key(s)" in message and "layer1.0.conv1.weight" in message
    assert "1 unexpected key(s)" in message and "layer9.0.conv1.weight" in message
    assert "shape mismatch" in message and "bn1.weight: checkpoint (32,)" in message


def test_module_names():
    assert mapping.resnet_module_of_layer("layer1_0_conv1_s") == "layer1.0.conv1_s"
    assert mapping.resnet_module_of_layer("layer2_0_downsample_1") == "layer2.0.downsample.1"
    assert mapping.resnet_module_of_layer("layer3_12_bn2_t") == "layer3.12.bn2_t"
    assert mapping.resnet_module_of_layer("conv1_t") == "conv1_t"
    assert mapping.torchvision_module_of_layer("conv1_t") == "stem.3"
    assert mapping.torchvision_module_of_layer("layer1_0_conv1_s") == "layer1.0.conv1.0.0"
    assert mapping.torchvision_module_of_layer("layer1_0_bn1_s") == "layer1.0.conv1.0.1"
    assert mapping.torchvision_module_of_layer("layer4_2_conv2_t") == "layer4.2.conv2.0.3"
    assert mapping.torchvision_module_of_layer("layer4_2_bn2_t") == "layer4.2.conv2.1"
    assert mapping.torchvision_module_of_layer("layer2_0_downsample_1") == "layer2.0.downsample.1"
