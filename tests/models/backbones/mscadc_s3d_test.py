"""MSCADC (paper 001, Table 3): shapes at the paper's input, replication padding, parameter
counts against the PyTorch definition, serialisation and mixed precision."""

import numpy as np
import pytest

import keras

from aqa_tf.config import DataConfig, ModelConfig
from aqa_tf.models.aqa_model import backbone_of, build_aqa_model
from aqa_tf.models.backbones import build_backbone
from aqa_tf.models.heads.mscadc import ReplicationPadding3D

PAPER_DATA = DataConfig(sample_length=103, num_frames=16, clip_length=16, frame_step=6.5,
                        crop_size=180)
SMALL_DATA = DataConfig(sample_length=103, num_frames=16, clip_length=16, frame_step=6.5,
                        crop_size=32, batch_size=2)


def _params(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def test_paper_input_shapes():
    model = build_aqa_model(ModelConfig(backbone="mscadc"), PAPER_DATA)
    # Body: 16x180x180 -> pools -> 4x22x22 -> conv5b (padding 1 < dilation 2) -> 2x20x20x256.
    assert tuple(backbone_of(model).output.shape[1:]) == (2, 20, 20, 256)
    # Head: 1x1x1 conv with padding 1 -> 4x22x22, context net, max-pool -> 2x11x11: the
    # authors' AvgPool3d((2, 11, 11)) covers the whole map.
    assert tuple(model.get_layer("fs_head_conv2_relu").output.shape[1:]) == (2, 11, 11, 12)
    assert tuple(model.get_layer("cls_head_conv3_position").output.shape[1:]) == (2, 11, 11, 3)
    assert set(model.output) == {"score", "position", "armstand", "rotation_type",
                                 "somersaults", "twists"}


def test_caption_features_are_1200_wide_at_paper_input():
    from aqa_tf.models.heads import mscadc as mscadc_heads
    body = build_backbone("mscadc", clip_length=16, image_size=180)
    features = mscadc_heads.caption_features(body.output)
    assert features.shape[-1] == 1200  # the authors' view(-1, 1200): 12 x 1 x 10 x 10


def test_replication_padding_repeats_edges():
    x = np.arange(2 * 3 * 4, dtype="float32").reshape(1, 2, 3, 4, 1)
    got = np.asarray(ReplicationPadding3D(2)(x))
    expected = np.pad(x, ((0, 0), (2, 2), (2, 2), (2, 2), (0, 0)), mode="edge")
    np.testing.assert_array_equal(got, expected)
    layer = ReplicationPadding3D.from_config(ReplicationPadding3D(9).get_config())
    assert layer.padding == 9


def test_parameter_counts_match_pytorch_definitions():
    pytest.importorskip("torch", reason="torch is needed for the PyTorch reference")
    from tests.models.backbones import torch_reference as ref
    model = build_aqa_model(ModelConfig(backbone="mscadc"), PAPER_DATA)
    body = backbone_of(model)
    head_fs = [w for l in model.layers if l.name.startswith("fs_") for w in l.trainable_weights]
    head_cls = [w for l in model.layers if l.name.startswith("cls_")
                for w in l.trainable_weights]
    rows = [("mscadc body", _params(body.trainable_weights),
             sum(p.numel() for p in ref.MSCADCBody().parameters())),
            ("mscadc score head", _params(head_fs),
             sum(p.numel() for p in ref.MSCADCHead({"": 1}).parameters())),
            ("mscadc dive head", _params(head_cls),
             sum(p.numel() for p in ref.mscadc_classifier().parameters()))]
    for name, ours, theirs in rows:
        print(f"{name}: ours {ours:,} reference {theirs:,}")
        assert ours == theirs


def test_round_trip_and_mixed_bfloat16(tmp_path):
    model = build_aqa_model(ModelConfig(backbone="mscadc", width_multiplier=0.25), SMALL_DATA)
    x = np.random.default_rng(0).standard_normal((2, 1, 16, 32, 32, 3)).astype("float32")
    path = str(tmp_path / "mscadc.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    for name, value in model({"video": x}).items():
        np.testing.assert_allclose(np.asarray(restored({"video": x})[name]), np.asarray(value),
                                   atol=1e-5)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = build_aqa_model(ModelConfig(backbone="mscadc", width_multiplier=0.25),
                                SMALL_DATA)
        outputs = mixed({"video": x})
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(v.dtype == "float32" for v in outputs.values())
    assert all(np.isfinite(np.asarray(v)).all() for v in outputs.values())


def test_several_clips_are_refused():
    with pytest.raises(ValueError, match="whole action as one clip"):
        build_aqa_model(ModelConfig(backbone="mscadc"),
                        DataConfig(num_frames=32, clip_length=16, crop_size=32))


def test_s3d_parameter_count_matches_pytorch_definition():
    pytest.importorskip("torch", reason="torch is needed for the PyTorch reference")
    from tests.models.backbones import torch_reference as ref
    reference = ref.S3D()
    theirs = sum(p.numel() for n, p in reference.named_parameters() if n.startswith("base."))
    backbone = build_backbone("s3d", clip_length=16, image_size=112)
    ours = _params(backbone.trainable_weights)
    print(f"s3d: ours {ours:,} reference {theirs:,}")
    assert ours == theirs and backbone.feature_dim == 1024
