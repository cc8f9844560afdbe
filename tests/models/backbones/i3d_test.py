"""I3D (`--backbone=i3d`): TF "SAME" padding, shapes and parameter count at MUSDL's input, and
weight import with parity against PyTorch: our reference (`torch_reference.I3D`, piergiaj's key
names) and, where it is on this machine, piergiaj/pytorch-i3d's own `pytorch_i3d.py`.

That file is not part of this project: the tests read it from $PYTORCH_I3D (the file, a
checkout or a bare git directory of github.com/piergiaj/pytorch-i3d), else from the local
mirror (`tests.helpers.authors_module`), copy it to a temporary folder and import it from
there; without it those tests are skipped (in CI too: a clean clone has no copy), the
parity against our reference still runs. Nothing here needs the network.
"""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is needed to build the PyTorch references")

from aqa_tf.models.backbones import build_backbone  # noqa: E402
from aqa_tf.models.backbones.i3d import same_padding  # noqa: E402
from aqa_tf.weights import mapping, sources  # noqa: E402
from tests.helpers import authors_module  # noqa: E402
from tests.models.backbones import torch_reference  # noqa: E402

LOGITS_KEYS = ["logits.conv3d.bias", "logits.conv3d.weight"]


def _converted(reference, clip_length, image_size, width, tmp_path):
    """A Keras I3D holding `reference`'s weights, through a checkpoint file and the `i3d`
    source, as `aqa_tf.weights.convert` does; checks the load report."""
    path = str(tmp_path / "rgb_imagenet.pt")
    torch.save(reference.state_dict(), path)
    state = sources.read_torch_checkpoint(path)
    backbone = build_backbone("i3d", clip_length=clip_length, image_size=image_size,
                              width_multiplier=width)
    report = sources.convert_into(backbone, state, "i3d")
    assert report["ignored"] == LOGITS_KEYS
    assert len(report["loaded"]) == len(backbone.weights)
    assert sorted(report["loaded"]) == sorted(
        k for k in state if not k.startswith("logits.") and not k.endswith("num_batches_tracked"))
    return backbone


def _relative_error(expected, backbone, clip, label):
    got = np.asarray(backbone(clip, training=False))
    assert got.shape == expected.shape
    relative = float(np.abs(got - expected).max() / np.abs(expected).max())
    print(f"{label}: max |keras - torch| / max |torch| = {relative:.2e}")
    assert relative <= 1e-4, (label, relative)
    return relative


def _torch_input(clip):
    return torch.from_numpy(np.transpose(clip, (0, 4, 1, 2, 3)))


def test_same_padding_is_tensorflow_same():
    for size in range(1, 40):
        for kernel in (1, 2, 3, 7):
            for stride in (1, 2):
                before, after = same_padding(size, kernel, stride)
                total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
                assert (before, after) == (total // 2, total - total // 2)
                assert (size + before + after - kernel) // stride + 1 == math.ceil(size / stride)
    assert same_padding(112, 7, 2) == (2, 3) and same_padding(97, 7, 2) == (3, 3)
    backbone = build_backbone("i3d", clip_length=10, image_size=97, width_multiplier=0.125)
    assert backbone.get_layer("Conv3d_1a_7x7_pad").padding == ((2, 3), (3, 3), (3, 3))
    assert backbone.get_layer("MaxPool3d_2a_3x3_pad").padding == ((0, 0), (1, 1), (1, 1))
    assert backbone.get_layer("MaxPool3d_5a_2x2_pad").padding == ((0, 1), (0, 1), (0, 1))


def test_musdl_input_shapes_and_parameter_count():
    backbone = build_backbone("i3d", clip_length=16, image_size=224)
    assert tuple(backbone.get_layer("Mixed_5c_concat").output.shape[1:]) == (2, 7, 7, 1024)
    assert tuple(backbone.get_layer("avg_pool").output.shape[1:]) == (1, 1, 1, 1024)
    assert backbone.feature_dim == 1024 and backbone.output_shape == (None, 1024)
    reference = torch_reference.I3D()
    theirs = sum(p.numel() for n, p in reference.named_parameters()
                 if not n.startswith("logits."))
    ours = sum(int(np.prod(w.shape)) for w in backbone.trainable_weights)
    print(f"i3d: ours {ours:,} reference {theirs:,}")
    assert ours == theirs == 12_287_264
    small = build_backbone("i3d", clip_length=16, image_size=112)
    assert tuple(small.get_layer("avg_pool").output.shape[1:]) == (1, 1, 1, 1024)


def test_layer_names_map_to_the_ports_keys():
    assert mapping.i3d_module_of_layer("Conv3d_1a_7x7_conv3d") == "Conv3d_1a_7x7.conv3d"
    assert mapping.i3d_module_of_layer("Conv3d_2c_3x3_bn") == "Conv3d_2c_3x3.bn"
    assert mapping.i3d_module_of_layer("Mixed_4b_b1b_bn") == "Mixed_4b.b1b.bn"
    assert mapping.i3d_module_of_layer("Mixed_5c_b0_conv3d") == "Mixed_5c.b0.conv3d"


@pytest.mark.parametrize("clip_length, image_size, width", [(16, 112, 1.0), (10, 97, 0.25)],
                         ids=["16x112-full", "10x97-odd-quarter"])
def test_checkpoint_converts_with_parity_to_the_reference(clip_length, image_size, width,
                                                          tmp_path):
    """Random weights and BN statistics in the reference, converted; 10x97 pads unevenly
    and runs every max-pool on odd sizes."""
    reference = torch_reference.randomise(torch_reference.I3D(width=width), seed=clip_length)
    backbone = _converted(reference, clip_length, image_size, width, tmp_path)
    clip = np.random.default_rng(3).uniform(
        -1, 1, (1, clip_length, image_size, image_size, 3)).astype("float32")
    with torch.no_grad():
        expected = reference.features(_torch_input(clip)).numpy()
    _relative_error(expected, backbone, clip, f"reference {clip_length}x{image_size}")


@pytest.fixture(scope="module")
def pytorch_i3d(tmp_path_factory):
    return authors_module(tmp_path_factory, "piergiaj/pytorch-i3d", "pytorch_i3d.py",
                          "PYTORCH_I3D", "the parity against torch_reference.I3D still runs")


def test_reference_has_the_ports_keys_and_outputs(pytorch_i3d):
    theirs = torch_reference.randomise(pytorch_i3d.InceptionI3d(), seed=5)
    ours = torch_reference.I3D()
    assert ({k: tuple(v.shape) for k, v in theirs.state_dict().items()} ==
            {k: tuple(v.shape) for k, v in ours.state_dict().items()})
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.from_numpy(np.random.default_rng(4).uniform(-1, 1, (1, 3, 9, 97, 97))
                         .astype("float32"))
    with torch.no_grad():
        got, expected = ours.eval().body(x).numpy(), _ports_body(theirs, x).numpy()
    print(f"reference vs pytorch_i3d, Mixed_5c at 9x97: max abs diff "
          f"{np.abs(got - expected).max():.2e}")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _ports_body(model, x):
    """The port's end points up to Mixed_5c (its `extract_features` without the pooling)."""
    for end_point in model.VALID_ENDPOINTS:
        if end_point in model.end_points:
            x = model._modules[end_point](x)
    return x


@pytest.mark.parametrize("image_size", [224, 112], ids=["224-extract_features", "112-Mixed_5c"])
def test_ports_checkpoint_converts_with_parity(pytorch_i3d, image_size, tmp_path):
    """16x224: the port's own `extract_features` (one (2, 7, 7) window); 16x112, where its
    7x7 window does not fit: its Mixed_5c, pooled as our backbone pools."""
    theirs = torch_reference.randomise(pytorch_i3d.InceptionI3d(), seed=image_size)
    backbone = _converted(theirs, 16, image_size, 1.0, tmp_path)
    clip = np.random.default_rng(image_size).uniform(
        -1, 1, (1, 16, image_size, image_size, 3)).astype("float32")
    with torch.no_grad():
        if image_size == 224:
            expected = theirs.extract_features(_torch_input(clip)).flatten(1).numpy()
        else:
            expected = torch_reference.I3D.pool(_ports_body(theirs, _torch_input(clip))).numpy()
    _relative_error(expected, backbone, clip, f"pytorch_i3d 16x{image_size}")
