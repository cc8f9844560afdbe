"""TFLite / LiteRT export (`aqa_tf.serving.tflite_lib`): the builtin forms of 3D pooling and dilated
convolution, the inference-time clip folding, a backbone of each backbone module converted with
builtin ops only and matching its Keras model (`tests.helpers.backbone_per_module`: the module's
other depths, bottleneck blocks and stems are the same layer classes, hence operators), the
`aqa_tf.export --format=tflite` command and `aqa_tf.predict --model X.tflite`. The parity bars on
the trained quickstart model are in tests/train_test.py."""

import json
import os

import numpy as np
import pytest

import keras

from aqa_tf.config import DataConfig, ModelConfig
from tests.helpers import backbone_per_module
from tests.helpers import run_cli
from tests.predict_test import exported, videos  # noqa: F401 (module fixtures)


def test_factored_3d_pooling_gives_the_3d_pooling():
    from aqa_tf.models.layers import tflite_ops
    x = np.random.default_rng(0).standard_normal((2, 7, 9, 11, 4)).astype("float32")
    for layer in (tflite_ops.MaxPooling3D((2, 3, 2), strides=(1, 2, 2)),
                  tflite_ops.MaxPooling3D(2, strides=2), tflite_ops.MaxPooling3D((1, 2, 2)),
                  tflite_ops.AveragePooling3D((2, 9, 11), strides=1)):
        expected = np.asarray(layer(x))
        with tflite_ops.builtin_graph():
            factored = np.asarray(layer(x))
        assert factored.shape == expected.shape
        if isinstance(layer, tflite_ops.MaxPooling3D):
            np.testing.assert_array_equal(factored, expected)
        else:
            np.testing.assert_allclose(factored, expected, rtol=1e-6, atol=1e-6)


def test_clip_encoder_folds_clips_at_inference_only():
    """Folded (inference) and per-clip (training, BatchNorm statistics per clip) paths."""
    from aqa_tf.models.backbones import build_backbone
    from aqa_tf.models.layers import clip_encoder
    backbone = build_backbone("r2plus1d_18", clip_length=8, image_size=32,
                              width_multiplier=0.125, name="backbone")
    encoder = clip_encoder.TimeDistributed(backbone, name="clip_encoder")
    reference = keras.layers.TimeDistributed(backbone)
    video = np.random.default_rng(1).standard_normal((2, 3, 8, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(encoder(video, training=False)),
                               np.asarray(reference(video, training=False)), rtol=1e-4,
                               atol=1e-5)
    # Training: each clip's batch statistics, as the per-clip loop computes them.
    per_clip = np.stack([np.asarray(backbone(video[:, i], training=True)) for i in range(3)],
                        axis=1)
    np.testing.assert_allclose(np.asarray(encoder(video, training=True)), per_clip,
                               rtol=1e-4, atol=1e-5)
    assert clip_encoder._has_batch_statistics(backbone)


def test_clip_encoder_folds_clips_in_training_without_batch_statistics():
    """C3D (no BatchNorm) trains on all clips in one call: the same features and gradients as
    Keras's per-clip TimeDistributed, and a graph with one copy of the backbone."""
    import tensorflow as tf
    from aqa_tf.models.backbones import build_backbone
    from aqa_tf.models.layers import clip_encoder
    backbone = build_backbone("c3d", clip_length=16, image_size=32, width_multiplier=0.125,
                              name="backbone")
    assert not clip_encoder._has_batch_statistics(backbone)
    encoder = clip_encoder.TimeDistributed(backbone, name="clip_encoder")
    reference = keras.layers.TimeDistributed(backbone)
    video = tf.constant(np.random.default_rng(2).standard_normal((2, 3, 16, 32, 32, 3)),
                        "float32")
    results = []
    for layer in (encoder, reference):
        with tf.GradientTape() as tape:
            features = layer(video, training=True)
            loss = tf.reduce_sum(features * features)
        results.append([features] + tape.gradient(loss, backbone.trainable_variables))
    for folded, looped in zip(*results):
        np.testing.assert_allclose(np.asarray(folded), np.asarray(looped), rtol=1e-4, atol=1e-5)
    graph = tf.function(lambda v: encoder(v, training=True)).get_concrete_function(
        tf.TensorSpec(video.shape, "float32")).graph
    convs = [op for op in graph.get_operations() if op.type == "Conv3D"]
    assert len(convs) == 8  # C3D's eight convolutions, once


def _small_model(backbone: str, **model_options):
    if backbone == "mscadc":  # the whole action as one 16-frame clip
        data = DataConfig(sample_length=16, num_frames=16, clip_length=16, crop_size=32,
                          stored_height=36, stored_width=48)
    else:  # two clips (C3D's pool5 needs 16 frames)
        length = 16 if backbone == "c3d" else 8
        data = DataConfig(sample_length=2 * length, num_frames=2 * length, clip_length=length,
                          clip_stride=length, crop_size=32, stored_height=36, stored_width=48)
    keras.utils.set_random_seed(0)
    from aqa_tf.models.aqa_model import build_aqa_model
    options = {"width_multiplier": 0.125, "fc_units": 16, **model_options}
    return build_aqa_model(ModelConfig(backbone=backbone, **options), data), data


def _operators(blob: bytes):
    """Names of the operators of a flatbuffer (custom and Flex ops by their custom names)."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.Model.GetRootAs(bytearray(blob), 0)
    names = set()
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        op = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        names.add(code.CustomCode().decode() if op == schema.BuiltinOperator.CUSTOM
                  else builtin[op])
    return names


CASES = [(name, {}) for name in backbone_per_module()] + [
    # Aggregations and score options around the cheapest backbone to convert (what they add
    # to the graph does not depend on the backbone; each backbone is converted above).
    ("c3d", {"aggregation": "lstm", "heads": ("score",)}),
    ("c3d", {"aggregation": "weight_decider", "projection_units": (32,)}),
    ("c3d", {"multiply_difficulty": True, "heads": ("score",)})]


@pytest.mark.parametrize("backbone, options", CASES,
                         ids=[n + "".join(f"-{k}" for k in o) for n, o in CASES])
def test_backbone_converts_to_builtin_float32_tflite_matching_keras(backbone, options, tmp_path):
    import tensorflow as tf
    from aqa_tf.serving import export_lib
    from aqa_tf.serving import tflite_lib
    model, data = _small_model(backbone, **options)
    blob = tflite_lib.convert(model, data, "none")
    ops = _operators(blob)
    assert "CUSTOM" not in ops and not any(o.startswith("Flex") for o in ops), ops
    assert "CONV_3D" in ops
    path = str(tmp_path / "model.tflite")
    with open(path, "wb") as f:
        f.write(blob)
    meta = tflite_lib.read_metadata(path)
    assert meta["tflite"]["quantize"] == "none" and meta["window_length"] == data.window_length
    window = np.random.default_rng(2).integers(
        0, 256, (data.window_length, data.stored_height, data.stored_width, 3), dtype=np.uint8)
    difficulty = 3.2
    got = tflite_lib.LiteModel(path).run(window, difficulty)
    expected = tf.function(export_lib.window_fn(model, data))(
        tf.constant(window[None]), tf.constant([difficulty]))
    assert set(got) == set(expected)
    for name, value in expected.items():
        value = value.numpy()
        relative = np.abs(got[name] - value).max() / max(np.abs(value).max(), 1e-6)
        print(f"{backbone} {name}: relative error {relative:.2e}")
        assert relative <= 1e-4, (name, relative)


def test_export_tflite_cli_and_predict_on_litert(exported, videos, tmp_path):  # noqa: F811
    """`aqa_tf.export --format=tflite` writes the variants with their metadata; `aqa_tf.predict
    --model X.tflite` gives the SavedModel's score (float32: within 1e-3 points) and top-1
    sub-actions on the same video; a bad --quantize is one line and exit 2."""
    saved_model, model, _ = exported
    weights = os.path.join(os.path.dirname(os.path.dirname(saved_model)), "random.weights.h5")
    proc = run_cli("aqa_tf.export", "--flagfile=configs/quickstart.cfg", f"--checkpoint={weights}",
                   f"--export_dir={tmp_path}", "--experiment_name=qs", "--format=tflite",
                   "--quantize=none,float16")
    paths = {q: str(tmp_path / "qs" / "tflite" / f"qs_v1_{q}.tflite") for q in ("none", "float16")}
    for quantize, path in paths.items():
        assert f"TFLite ({quantize}): {path}" in proc.stdout
    bad = run_cli("aqa_tf.export", "--flagfile=configs/quickstart.cfg", f"--checkpoint={weights}",
                  f"--export_dir={tmp_path}", "--format=tflite", "--quantize=int4", expect=2)
    assert bad.stderr.strip().splitlines()[-1].startswith(
        "error: flag --quantize=int4: unknown int4")

    results = {}
    for name, model_path in (("saved_model", saved_model), ("none", paths["none"]),
                             ("float16", paths["float16"])):
        out = str(tmp_path / f"{name}.json")
        proc = run_cli("aqa_tf.predict", videos["720p"], f"--model={model_path}", "--noprogress",
                       f"--output_json={out}", f"--output_dir={tmp_path}")
        with open(out) as f:
            results[name] = json.load(f)[0]
    assert "TFLite" in proc.stdout
    reference = results["saved_model"]
    for name in ("none", "float16"):
        diff = abs(results[name]["score"] - reference["score"])
        print(f"{name}: score {results[name]['score']:.5f} vs {reference['score']:.5f}")
        assert diff <= (1e-3 if name == "none" else 0.05), (name, diff)
        for head, ranked in reference["sub_actions"].items():
            assert results[name]["sub_actions"][head][0][0] == ranked[0][0]
    assert results["none"]["clip_scores"] == pytest.approx(reference["clip_scores"], abs=1e-3)

    # Issue 24, case 7: truncated exports are one line (before: tracebacks from the flatbuffer
    # reader, the protobuf parser or the checkpoint reader).
    import shutil
    from tests.helpers import user_error
    cut_tflite = str(tmp_path / "cut.tflite")
    with open(paths["none"], "rb") as f:
        data = f.read()
    with open(cut_tflite, "wb") as f:
        f.write(data[:len(data) // 2])
    cut_pb, cut_vars = str(tmp_path / "cut_pb"), str(tmp_path / "cut_vars")
    shutil.copytree(saved_model, cut_pb)
    shutil.copytree(saved_model, cut_vars)
    for path in (os.path.join(cut_pb, "saved_model.pb"),
                 os.path.join(cut_vars, "variables", "variables.data-00000-of-00001")):
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[:len(data) // 2])
    for model_path in (cut_tflite, cut_pb, cut_vars):
        proc = run_cli("aqa_tf.predict", videos["stored"], f"--model={model_path}",
                       "--noprogress", expect=2)
        print(user_error(proc, f"model {model_path}: not a readable", "truncated or corrupt"))


def test_predict_rejects_a_tflite_file_without_metadata(tmp_path):
    import tensorflow as tf

    class Double(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1], tf.float32)])
        def __call__(self, x):
            return {"y": 2 * x}

    module = Double()
    blob = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.__call__.get_concrete_function()], module).convert()
    path = str(tmp_path / "other.tflite")
    with open(path, "wb") as f:
        f.write(blob)
    video = str(tmp_path / "dive.mp4")
    from aqa_tf.data import video as video_lib
    video_lib.write_video(video, np.zeros((8, 32, 32, 3), np.uint8), 25)
    proc = run_cli("aqa_tf.predict", video, f"--model={path}", expect=2)
    assert "no aqa_tf metadata" in proc.stderr.strip().splitlines()[-1]
