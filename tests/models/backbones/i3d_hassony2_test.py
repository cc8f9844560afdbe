"""I3D weights of hassony2/kinetics_i3d_pytorch (`--backbone=i3d --source=i3d_hassony2`: its
`model/model_rgb.pth`, what CoRe and TSA load): key mapping, where its padding is TF's "SAME",
a wrong checkpoint, and weight import with parity against PyTorch: our reference
(`torch_reference.I3DHassony2`, hassony2's key names and padding) and, where it is on this
machine, hassony2's own `src/i3dpt.py`.

That file is not part of this project: the tests read it from $HASSONY2_I3D (the file, a
checkout or a git directory of github.com/hassony2/kinetics_i3d_pytorch), else from the local
mirror (`tests.helpers.authors_module`), copy it to a temporary folder and import it from
there; without it those tests are skipped (in CI too: a clean clone has no copy), the
parity against our reference still runs. Nothing here needs the network.
"""


import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is needed to build the PyTorch references")

from aqa_tf.models.backbones import build_backbone  # noqa: E402
from aqa_tf.models.backbones.i3d import same_padding  # noqa: E402
from aqa_tf.weights import mapping, sources  # noqa: E402
from tests.helpers import authors_module  # noqa: E402
from tests.models.backbones import torch_reference  # noqa: E402
from tests.models.backbones.i3d_test import _relative_error, _torch_input  # noqa: E402

CLASSIFIER_KEYS = ["conv3d_0c_1x1.conv3d.bias", "conv3d_0c_1x1.conv3d.weight"]


def _converted(reference, clip_length, image_size, width, tmp_path):
    """A Keras I3D holding `reference`'s weights, through a checkpoint file and the
    `i3d_hassony2` source, as `aqa_tf.weights.convert` does; checks the load report."""
    path = str(tmp_path / "model_rgb.pth")
    torch.save(reference.state_dict(), path)
    state = sources.read_torch_checkpoint(path)
    backbone = build_backbone("i3d", clip_length=clip_length, image_size=image_size,
                              width_multiplier=width)
    report = sources.convert_into(backbone, state, "i3d_hassony2")
    assert report["ignored"] == CLASSIFIER_KEYS
    assert len(report["loaded"]) == len(backbone.weights)
    assert sorted(report["loaded"]) == sorted(
        k for k in state
        if not k.startswith("conv3d_0c_1x1.") and not k.endswith("num_batches_tracked"))
    return backbone


def test_layer_names_map_to_hassony2s_keys():
    module = mapping.i3d_hassony2_module_of_layer
    assert module("Conv3d_1a_7x7_conv3d") == "conv3d_1a_7x7.conv3d"
    assert module("Conv3d_2c_3x3_bn") == "conv3d_2c_3x3.batch3d"
    assert module("Mixed_3b_b0_conv3d") == "mixed_3b.branch_0.conv3d"
    assert module("Mixed_4b_b1a_bn") == "mixed_4b.branch_1.0.batch3d"
    assert module("Mixed_4f_b2b_conv3d") == "mixed_4f.branch_2.1.conv3d"
    assert module("Mixed_5c_b3b_bn") == "mixed_5c.branch_3.1.batch3d"


def test_hassony2s_padding_is_tf_same_at_multiples_of_16():
    """Its height/width padding is max(k - s, 0) whatever the size n; TF's "SAME" (ours) is that
    only for n divisible by s. The stride-2 layers with k > s (the 7x7x7 conv, the 3x3 max-pools
    2a, 3a, 4a) see n, n/2, n/4, n/8: all even exactly when n is a multiple of 16. (5a, k = s = 2,
    pads nothing, and its ceil mode then covers TF's one padded row of an odd size.)"""
    for size in range(16, 240):
        sizes = [size]
        for _ in range(3):
            sizes.append(-(-sizes[-1] // 2))
        kernels = (7, 3, 3, 3)
        same = all(same_padding(n, k, 2) == ((k - 2) // 2, k - 2 - (k - 2) // 2)
                   for n, k in zip(sizes, kernels))
        assert same == (size % 16 == 0), size


@pytest.mark.parametrize("clip_length, image_size, width", [(16, 112, 1.0), (9, 80, 0.25)],
                         ids=["16x112-full", "9x80-odd-time-quarter"])
def test_checkpoint_converts_with_parity_to_the_reference(clip_length, image_size, width,
                                                          tmp_path):
    """Random weights and BN statistics in the reference, converted. 9 frames: every temporal
    padding takes its odd-length branch; 80 and 112 end with an odd 5x5 / 7x7 map at 5a."""
    reference = torch_reference.randomise(
        torch_reference.I3DHassony2(width=width), seed=clip_length + 100)
    backbone = _converted(reference, clip_length, image_size, width, tmp_path)
    clip = np.random.default_rng(7).uniform(
        -1, 1, (1, clip_length, image_size, image_size, 3)).astype("float32")
    with torch.no_grad():
        expected = reference.features(_torch_input(clip)).numpy()
    _relative_error(expected, backbone, clip, f"hassony2 reference {clip_length}x{image_size}")


def test_piergiaj_checkpoint_is_refused_with_the_missing_keys(tmp_path):
    path = str(tmp_path / "rgb_imagenet.pt")
    torch.save(torch_reference.I3D(width=0.125).state_dict(), path)
    state = sources.read_torch_checkpoint(path)
    backbone = build_backbone("i3d", clip_length=8, image_size=64, width_multiplier=0.125)
    with pytest.raises(mapping.ConversionError) as caught:
        sources.convert_into(backbone, state, "i3d_hassony2")
    message = str(caught.value)
    assert f"{len(backbone.weights)} missing key(s)" in message
    assert "conv3d_1a_7x7.conv3d.weight (for Conv3d_1a_7x7_conv3d)" in message
    assert "mixed_5c.branch_3.1.batch3d.running_var (for Mixed_5c_b3b_bn)" in message
    assert "unexpected key(s)" in message and "Mixed_4b.b1b.bn.running_var" in message


@pytest.fixture(scope="module")
def i3dpt(tmp_path_factory):
    return authors_module(tmp_path_factory, "hassony2/kinetics_i3d_pytorch", "src/i3dpt.py",
                          "HASSONY2_I3D",
                          "the parity against torch_reference.I3DHassony2 still runs")


def _ports_body(model, x):
    """The port's modules in the order it registers (and runs) them, up to Mixed_5c: its
    forward without the pooling and the classifier."""
    for name, child in model.named_children():
        x = child(x)
        if name == "mixed_5c":
            return x
    raise AssertionError("the port has no mixed_5c")


def test_reference_has_the_ports_keys_and_outputs(i3dpt):
    """9x97: odd length and odd sizes everywhere, where the port's padding is not TF's: the
    reference follows the port there too."""
    theirs = torch_reference.randomise(i3dpt.I3D(num_classes=400), seed=11)
    ours = torch_reference.I3DHassony2()
    assert ({k: tuple(v.shape) for k, v in theirs.state_dict().items()} ==
            {k: tuple(v.shape) for k, v in ours.state_dict().items()})
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.from_numpy(np.random.default_rng(12).uniform(-1, 1, (1, 3, 9, 97, 97))
                         .astype("float32"))
    with torch.no_grad():
        got, expected = ours.eval().body(x).numpy(), _ports_body(theirs, x).numpy()
    print(f"reference vs i3dpt, Mixed_5c at 9x97: max abs diff "
          f"{np.abs(got - expected).max():.2e}")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_ports_checkpoint_converts_with_parity(i3dpt, tmp_path):
    """16x224, the input CoRe and TSA feed: the port's Mixed_5c through its own `avg_pool`
    (one (2, 7, 7) window)."""
    theirs = torch_reference.randomise(i3dpt.I3D(num_classes=400), seed=224)
    backbone = _converted(theirs, 16, 224, 1.0, tmp_path)
    clip = np.random.default_rng(224).uniform(-1, 1, (1, 16, 224, 224, 3)).astype("float32")
    with torch.no_grad():
        expected = theirs.avg_pool(_ports_body(theirs, _torch_input(clip))).flatten(1).numpy()
    _relative_error(expected, backbone, clip, "i3dpt 16x224")
