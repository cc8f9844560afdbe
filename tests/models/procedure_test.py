"""TSA (FineDiving, Xu et al., CVPR 2022): the layers of `models.layers.procedure`, the
`TransitionLoss` and the AIoU of `data.procedure`, against hand computations and against the
authors' PyTorch modules (`models/PS.py`, `models/PS_parts.py`, `models/vit_decoder.py`,
`models/MLP.py`, `utils/misc.py`) at their sizes, with random weights; the composition against
a reference that follows their `tools/helper.py` (`network_forward_test`, one exemplar).

Their files are read from $FINEDIVING_REPO (a checkout or git directory of
github.com/xujinglin/FineDiving), else from the local mirror (`tests.helpers.authors_module`);
without them the parity tests are skipped, the hand computations still run.
"""

import sys
import types

import numpy as np
import pytest

from aqa_tf.metrics import procedure as steps_data
from aqa_tf.models.layers import procedure
from tests.helpers import authors_module

REPO, ENV = "xujinglin/FineDiving", "FINEDIVING_REPO"
SKIP = "the hand computations still run"


def _relative(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


# ---------------------------------------------------------------- hand computations ----

def test_segment_iou_and_aiou_equal_a_hand_computation():
    target = [10, 20]
    # Overlap 5 of a union 15; the same segment; disjoint; inside (6 of 10).
    predicted = np.array([[15, 25], [10, 20], [30, 40], [12, 18]])
    np.testing.assert_allclose(steps_data.segment_iou(target, predicted),
                               [1 / 3, 1.0, 0.0, 0.6], rtol=1e-12)
    assert steps_data.aiou([target] * 4, predicted) == {0.5: 0.5, 0.75: 0.25}
    # Two queries with two voters each: IoUs averaged per query first, (1 + 1/3) / 2 = 2/3
    # and (1 + 0.6) / 2 = 0.8 (thresholding each voter would give 3/4 and 1/2 instead).
    voters = np.array([[[10, 20], [15, 25]], [[10, 20], [12, 18]]])
    assert steps_data.aiou([target, target], voters) == {0.5: 1.0, 0.75: 0.5}
    with pytest.raises(ValueError, match="do not fit"):
        steps_data.aiou([target] * 3, predicted)


def _numpy_bce(frames, probs):
    """Their `label_12_pad` and torch's BCELoss (logs clamped at -100), in NumPy (float64)."""
    target = np.zeros_like(probs, np.float64)
    for b, row in enumerate(np.asarray(frames).astype(int)):
        for i, t in enumerate(row):
            target[b, t, i] = 1.0
    p = np.asarray(probs, np.float64)
    with np.errstate(divide="ignore"):
        log_p, log_q = np.maximum(np.log(p), -100), np.maximum(np.log(1 - p), -100)
    return float(np.mean(-(target * log_p + (1 - target) * log_q)))


def test_transition_loss_equals_a_hand_computation():
    import tensorflow as tf

    from aqa_tf.models.losses import TransitionLoss
    loss = TransitionLoss()
    probs = np.array([[[0.9, 0.2], [0.1, 0.7], [0.5, 0.5]]], np.float32)
    # Transitions at frames 0 and 1: column 0 scores -log 0.9, -log 0.9, -log 0.5; column 1
    # -log 0.8, -log 0.7, -log 0.5; the mean of the six.
    expected = -np.log([0.9, 0.9, 0.5, 0.8, 0.7, 0.5]).mean()
    np.testing.assert_allclose(float(loss(np.array([[0.0, 1.0]]), probs)), expected, rtol=1e-6)
    # Saturated probabilities: every term is torch's clamp, 100, and the gradient is finite.
    saturated = tf.constant([[[1.0, 0.0], [0.0, 1.0]]])
    with tf.GradientTape() as tape:
        tape.watch(saturated)
        value = loss(tf.constant([[1, 0]]), saturated)
    assert float(value) == pytest.approx(100.0)
    assert np.isfinite(tape.gradient(value, saturated).numpy()).all()
    rng = np.random.default_rng(0)
    probs = rng.uniform(0, 1, (4, 96, 2)).astype(np.float32)
    frames = np.stack([rng.integers(1, 48, 4), rng.integers(48, 96, 4)], 1).astype(np.float32)
    np.testing.assert_allclose(float(loss(frames, probs)), _numpy_bce(frames, probs),
                               rtol=1e-5)


def test_step_pool_repeats_one_frame_steps_and_clamps_degenerate_transitions():
    pool = procedure.StepPool(fix_size=5)
    sequence = np.arange(2 * 10 * 3, dtype=np.float32).reshape(2, 10, 3)
    # (0, 0) becomes (1, 2): steps [0, 1) and [1, 2) of one frame each, repeated; [2, 10) at
    # frames 2, 3.75, 5.5, 7.25, 9. (4, 9): [0, 4) at 0, .75, 1.5, 2.25, 3; [9, 10) repeated.
    pooled = np.asarray(pool(sequence, np.array([[0, 0], [4, 9]])))
    assert pooled.shape == (2, 15, 3)
    frame = pooled[..., 0] / 3 - np.array([[0], [10]])
    np.testing.assert_allclose(frame[0], [0] * 5 + [1] * 5 + [2, 3.75, 5.5, 7.25, 9], atol=1e-5)
    np.testing.assert_allclose(frame[1], [0, .75, 1.5, 2.25, 3, 4, 5, 6, 7, 8] + [9] * 5,
                               atol=1e-5)
    # ed <= st and ed past the end: ed = st + 1, then st and ed inside [1, T - 1].
    clamped = np.asarray(pool(sequence, np.array([[6.7, 3.0], [12, 40]])))
    np.testing.assert_allclose(clamped, np.asarray(pool(sequence, np.array([[6, 7], [8, 9]]))))


def _their_read_out(probs):
    """The loop of their `tools/helper.py` that reads the transitions out of `transits_pred`."""
    import torch
    probs = torch.from_numpy(probs)
    num = round(probs.shape[1] / probs.shape[-1])
    found = torch.zeros(probs.shape[0], probs.shape[-1])
    for bs in range(probs.shape[0]):
        for i in range(probs.shape[-1]):
            found[bs, i] = probs[bs, i * num: (i + 1) * num, i].argmax(0).cpu().item() + i * num
    return found.numpy()


def test_transition_frames_equal_their_loop():
    pytest.importorskip("torch", reason="their loop runs on torch tensors")
    rng = np.random.default_rng(1)
    for frames in (96, 7):  # 7: num = round(3.5) = 4, the second window is cut at the end
        probs = rng.uniform(0, 1, (3, frames, 2)).astype(np.float32)
        probs[0, 2:4, 0] = 2.0  # a tie: the first maximum, as torch's argmax
        ours = np.asarray(procedure.transition_frames(probs))
        assert ours.dtype == np.int32
        np.testing.assert_array_equal(ours, _their_read_out(probs))
    assert ours[0, 0] == 2


def test_read_out_and_pooling_convert_to_builtin_tflite_ops():
    import tensorflow as tf
    pool = procedure.StepPool(fix_size=5)

    class ReadOut(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([2, 96, 2], tf.float32),
                                      tf.TensorSpec([2, 96, 64], tf.float32)])
        def __call__(self, probs, sequence):
            frames = procedure.transition_frames(probs)
            return {"frames": frames, "pooled": pool(sequence, frames)}

    module = ReadOut()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.__call__.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    blob = converter.convert()  # fails if an op needs Flex (TF Select) or a custom op
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_content=blob)
    runner = interpreter.get_signature_runner()
    rng = np.random.default_rng(2)
    probs = rng.uniform(0, 1, (2, 96, 2)).astype(np.float32)
    sequence = rng.standard_normal((2, 96, 64)).astype(np.float32)
    got = runner(probs=probs, sequence=sequence)
    expected = module(probs, sequence)
    np.testing.assert_array_equal(got["frames"], expected["frames"].numpy())
    np.testing.assert_allclose(got["pooled"], expected["pooled"].numpy(), atol=1e-5)


# ------------------------------------------------ a small TSA: config, symbolic batch ----

def _small_parts():
    """TSA at toy sizes: 3 clips of 64 numbers (4-d step features), 8 frames, 2 per step."""
    return (procedure.StepSegmenter(frames=8, widths=(4, 4, 8, 8), hidden=(8, 8)),
            procedure.StepPool(fix_size=2),
            procedure.StepDecoder(dim=4, num_heads=2, num_layers=2, mlp_ratio=2.0),
            procedure.DeltaRegressor(hidden=(8, 4)))


def _small_inputs(rng, n=2):
    return [rng.standard_normal(shape).astype(np.float32)
            for shape in ((n, 3, 64), (n, 3, 64), (n, 3, 2, 2, 2, 64), (n, 3, 2, 2, 2, 64))]


def test_a_functional_tsa_with_a_symbolic_batch_saves_and_loads(tmp_path):
    import keras
    inputs = [keras.Input((3, 64)), keras.Input((3, 64)), keras.Input((3, 2, 2, 2, 64)),
              keras.Input((3, 2, 2, 2, 64))]
    parts = _small_parts()
    model = keras.Model(inputs, procedure.relative_delta(*parts, *inputs))
    data = _small_inputs(np.random.default_rng(3), n=3)
    before = model(data)
    assert before["delta"].shape == (3,) and before["query_probs"].shape == (3, 8, 2)
    eager = procedure.relative_delta(*parts, *data)  # the same layers, called eagerly
    for name, value in eager.items():
        np.testing.assert_allclose(np.asarray(before[name]), np.asarray(value), rtol=1e-5,
                                   atol=1e-6, err_msg=name)
    path = str(tmp_path / "tsa.keras")
    model.save(path)
    after = keras.models.load_model(path)(data)
    for name, value in before.items():
        np.testing.assert_allclose(np.asarray(after[name]), np.asarray(value), rtol=1e-6,
                                   err_msg=name)
    for layer in _small_parts():
        assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()


def _state_dicts(segmenter, decoder, regressor, prefix=""):
    """The authors' state dicts of our layers' current weights (the converter's map, inverted:
    its kernel conversions are their own inverses)."""
    names = {"psnet_model": procedure._segmenter_names(segmenter),
             "decoder": procedure._decoder_names(decoder),
             "regressor_delta": procedure._regressor_names(regressor)}
    return {part: {prefix + key: (convert(np.asarray(v)) if convert else np.asarray(v))
                   for key, v, convert in pairs} for part, pairs in names.items()}


def test_the_conversion_round_trips_and_refuses_a_missing_key():
    rng = np.random.default_rng(4)
    source, target = _small_parts(), _small_parts()
    data = _small_inputs(rng)
    expected = procedure.relative_delta(*source, *data)["delta"]
    procedure.relative_delta(*target, *data)  # builds the layers
    segmenter, _, decoder, regressor = target
    state = _state_dicts(source[0], source[2], source[3], prefix="module.")
    procedure.procedure_weights_from_torch(segmenter, decoder, regressor, state)
    np.testing.assert_allclose(np.asarray(procedure.relative_delta(*target, *data)["delta"]),
                               np.asarray(expected), rtol=1e-6)

    before = [np.asarray(w) for w in segmenter.weights]
    del state["psnet_model"]["module.down2.mpconv.1.conv.3.weight"]
    with pytest.raises(ValueError) as error:
        procedure.procedure_weights_from_torch(segmenter, decoder, regressor, state)
    assert str(error.value) == ("the TSA state dicts do not fit the layers: missing key "
                                "psnet_model['down2.mpconv.1.conv.3.weight']")
    for w, b in zip(segmenter.weights, before):  # nothing assigned
        np.testing.assert_array_equal(np.asarray(w), b)
    state["decoder"]["module.model.0.attn.proj.bias"] = np.zeros(5, np.float32)
    state["regressor_delta"]["module.layer4.weight"] = np.zeros((1, 1), np.float32)
    with pytest.raises(ValueError, match=r"missing key .* \(and 2 more problem\(s\)\)"):
        procedure.procedure_weights_from_torch(segmenter, decoder, regressor, state)


# ------------------------------------------------------ the authors' PyTorch modules ----

@pytest.fixture(scope="module")
def authors(tmp_path_factory):
    """Their modules. `PS.py` imports `models.PS_parts`, `vit_decoder.py` timm's DropPath
    (used only with drop_path > 0, never in TSA) and `utils/misc.py` OpenCV (unused by the
    functions tested): stand-ins in `sys.modules` while they load."""
    torch = pytest.importorskip("torch", reason="torch builds the PyTorch references")
    load = lambda path: authors_module(tmp_path_factory, REPO, path, ENV, SKIP)
    found = {"parts": load("models/PS_parts.py")}
    timm_layers = types.ModuleType("timm.models.layers")
    timm_layers.DropPath = None
    timm_layers.trunc_normal_ = torch.nn.init.trunc_normal_
    cv2 = types.ModuleType("cv2")
    cv2.cv2 = cv2
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "models.PS_parts", found["parts"])
        patch.setitem(sys.modules, "timm.models.layers", timm_layers)
        patch.setitem(sys.modules, "cv2", cv2)
        patch.setitem(sys.modules, "cv2.cv2", cv2)
        for name, path in (("ps", "models/PS.py"), ("vit", "models/vit_decoder.py"),
                           ("mlp", "models/MLP.py"), ("misc", "utils/misc.py")):
            found[name] = load(path)
    return found


@pytest.fixture(scope="module")
def converted(authors):
    """Their `PSNet(n_channels=9)`, `decoder_fuser(64, 8, 3)`, `MLP_score(64, 1)` (sizes of
    `tools/builder.py`) with random weights and BatchNorm statistics, in eval mode, and our
    layers with their weights (converted from DataParallel-style `module.` keys)."""
    from tests.models.backbones.torch_reference import randomise
    theirs = (randomise(authors["ps"].PSNet(n_channels=9), seed=10),
              randomise(authors["vit"].decoder_fuser(dim=64, num_heads=8, num_layers=3), 11),
              randomise(authors["mlp"].MLP_score(64, 1), seed=12))
    ours = (procedure.StepSegmenter(), procedure.StepDecoder(64, 8, 3),
            procedure.DeltaRegressor())
    ours[0](np.zeros((1, 9, 1024), np.float32))
    ours[1](np.zeros((1, 5, 64), np.float32), np.zeros((1, 80, 64), np.float32))
    ours[2](np.zeros((1, 5, 64), np.float32))
    states = {part: {f"module.{k}": v for k, v in module.state_dict().items()}
              for part, module in zip(("psnet_model", "decoder", "regressor_delta"), theirs)}
    procedure.procedure_weights_from_torch(*ours, states)
    return theirs, ours


def test_segmenter_decoder_and_regressor_match_their_modules(converted):
    import torch
    (psnet, fuser, mlp), (segmenter, decoder, regressor) = converted
    torch.manual_seed(0)
    clips, query, memory = torch.randn(2, 9, 1024), torch.randn(2, 5, 64), torch.randn(2, 80, 64)
    with torch.no_grad():
        x5, probs = psnet(clips)
        fused = fuser(query, memory)
        delta = mlp(fused)
    steps, our_probs = segmenter(clips.numpy())
    errors = {"PSNet steps": _relative(steps, x5), "PSNet probs": _relative(our_probs, probs),
              "decoder": _relative(decoder(query.numpy(), memory.numpy()), fused),
              "MLP_score": _relative(regressor(fused.numpy()), delta)}
    print("relative errors:", {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) <= 1e-4, errors


def test_step_pool_matches_their_seg_pool(authors):
    import torch
    misc = authors["misc"]
    cuts = [(1, 48), (30, 60), (47, 95), (1, 2), (20, 21)]
    rng = np.random.default_rng(5)
    sequence = rng.standard_normal((len(cuts), 96, 64)).astype(np.float32)
    maps = rng.standard_normal((len(cuts), 96, 4, 4, 64)).astype(np.float32)
    pool = procedure.StepPool(fix_size=5)
    pooled = np.asarray(pool(sequence, np.array(cuts, np.float32)))
    pooled_maps = np.asarray(pool(maps.reshape(len(cuts), 96, 16, 64), np.array(cuts)))
    errors = []
    for b, (st, ed) in enumerate(cuts):
        # Theirs are channels-first: [1, C, T] and [1, C, T, H, W].
        theirs = misc.seg_pool_1d(torch.from_numpy(sequence[b].T[None]), st, ed, 5)
        errors.append(_relative(pooled[b], theirs[0].numpy().T))
        theirs = misc.seg_pool_3d(torch.from_numpy(maps[b].transpose(3, 0, 1, 2)[None]), st,
                                  ed, 5)
        errors.append(_relative(pooled_maps[b],
                                theirs[0].numpy().transpose(1, 2, 3, 0).reshape(15, 16, 64)))
    print(f"seg_pool relative error {max(errors):.1e}")
    assert max(errors) <= 1e-4


def _their_composition(authors, psnet, fuser, mlp, com_feature_12, com_feamap_12,
                       transitions=None, fix_size=5, step_num=3):
    """Their `network_forward_test` (`tools/helper.py`) for one exemplar, from the I3D outputs
    to `delta` (query - exemplar, then exemplar - query) and the predicted transitions, step by
    step as there (`transitions`: cut there instead, as their training's first epochs)."""
    import torch
    misc = authors["misc"]
    half = com_feature_12.shape[2] // 2
    with torch.no_grad():
        fea_1, fea_2 = com_feature_12[:, :, :half], com_feature_12[:, :, half:]
        map_1, map_2 = com_feamap_12[:, :, :half], com_feamap_12[:, :, half:]
        N, T, C, T_t, H_t, W_t = map_1.size()
        map_1, map_2 = map_1.mean(-3).reshape(-1, T, C), map_2.mean(-3).reshape(-1, T, C)
        u_fea_96, transits_pred = psnet(torch.cat((fea_1, fea_2), 0))
        u_feamap_96, _ = psnet(torch.cat((map_1, map_2), 0))
        u_feamap_96 = u_feamap_96.reshape(2 * N, u_feamap_96.shape[1], u_feamap_96.shape[2],
                                          H_t, W_t)
        read_out = torch.from_numpy(_their_read_out(transits_pred.numpy()))
        cut = read_out if transitions is None else torch.from_numpy(transitions)
        segs, segs_map = [], []
        for half_fea, half_map, rows in ((u_fea_96[:N], u_feamap_96[:N], cut[:N]),
                                         (u_fea_96[N:], u_feamap_96[N:], cut[N:])):
            half_fea, half_map = half_fea.transpose(1, 2), half_map.transpose(1, 2)
            one, three = [], []
            for bs in range(N):
                st, ed = int(rows[bs][0].item()), int(rows[bs][1].item())
                st, ed = (1 if st == 0 else st), (1 if ed == 0 else ed)
                one.append(misc.seg_pool_1d(half_fea[bs].unsqueeze(0), st, ed, fix_size))
                three.append(misc.seg_pool_3d(half_map[bs].unsqueeze(0), st, ed, fix_size))
            segs.append(torch.cat(one, 0).transpose(1, 2))
            m = torch.cat(three, 0)
            m = m.reshape(m.shape[0], m.shape[1], m.shape[2], -1).transpose(2, 3)
            segs_map.append(torch.cat([m[:, :, :, i] for i in range(m.shape[-1])], 2)
                            .transpose(1, 2))
        span = fix_size * H_t * W_t
        dec_12 = torch.cat([fuser(segs[0][:, i * fix_size:(i + 1) * fix_size],
                                  segs_map[1][:, i * span:(i + 1) * span])
                            for i in range(step_num)], 1)
        dec_21 = torch.cat([fuser(segs[1][:, i * fix_size:(i + 1) * fix_size],
                                  segs_map[0][:, i * span:(i + 1) * span])
                            for i in range(step_num)], 1)
        delta = mlp(torch.cat((dec_12, dec_21), 0)).mean(1)
    return delta[:N, 0].numpy(), delta[N:, 0].numpy(), read_out.numpy(), transits_pred.numpy()


@pytest.mark.parametrize("given", [False, True], ids=["predicted", "given_transitions"])
def test_tsa_composition_matches_their_network_forward(authors, converted, given):
    import torch
    (psnet, fuser, mlp), (segmenter, decoder, regressor) = converted
    torch.manual_seed(1)
    n = 2
    # Their I3D backbone's outputs (`models/Backbone.py`): 9 clips, query then exemplar along
    # the channels; maps [N, 9, 2 * 1024, T_t=2, H=4, W=4].
    com_feature_12 = torch.randn(n, 9, 2048)
    com_feamap_12 = torch.randn(n, 9, 2048, 2, 4, 4)
    transitions = (np.array([[0, 60], [12, 95], [40, 50], [3, 4]], np.float32) if given
                   else None)
    delta, reverse, read_out, probs = _their_composition(
        authors, psnet, fuser, mlp, com_feature_12, com_feamap_12, transitions)

    features, maps = com_feature_12.numpy(), com_feamap_12.numpy().transpose(0, 1, 3, 4, 5, 2)
    ours = procedure.relative_delta(
        segmenter, procedure.StepPool(5), decoder, regressor, features[..., :1024],
        features[..., 1024:], maps[..., :1024], maps[..., 1024:],
        query_transitions=None if transitions is None else transitions[:n],
        exemplar_transitions=None if transitions is None else transitions[n:])
    found = np.concatenate([ours["query_transitions"], ours["exemplar_transitions"]])
    np.testing.assert_array_equal(found, read_out)
    errors = {"delta": _relative(ours["delta"], delta),
              "reverse_delta": _relative(ours["reverse_delta"], reverse),
              "probs": _relative(np.concatenate([ours["query_probs"],
                                                 ours["exemplar_probs"]]), probs)}
    cut = transitions if given else read_out
    print(f"TSA composition ({'given' if given else 'predicted'} transitions "
          f"{cut.astype(int).tolist()}), relative errors:",
          {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) <= 1e-4, errors


def test_transition_loss_matches_torch_bce(authors):
    import torch

    from aqa_tf.models.losses import TransitionLoss
    rng = np.random.default_rng(6)
    probs = rng.uniform(0, 1, (4, 96, 2)).astype(np.float32)
    probs[0, :3, 0] = [0.0, 1.0, 1.0]  # torch's clamps at -100
    labels = np.stack([rng.integers(1, 48, 4), rng.integers(48, 96, 4)], 1).astype(np.float32)
    labels[0, 0] = 1  # the target 1 at a probability 1
    pad = torch.zeros(probs.shape)  # their label_12_pad (tools/helper.py)
    for bs in range(probs.shape[0]):
        pad[bs, int(labels[bs, 0]), 0] = 1
        pad[bs, int(labels[bs, -1]), -1] = 1
    theirs = float(torch.nn.BCELoss()(torch.from_numpy(probs), pad))
    ours = float(TransitionLoss()(labels, probs))
    print(f"TransitionLoss {ours:.6f}, torch BCELoss {theirs:.6f}")
    assert ours == pytest.approx(theirs, rel=1e-5)


def test_aiou_matches_their_segment_iou_and_cal_tiou(authors):
    misc = authors["misc"]
    rng = np.random.default_rng(7)
    n, voters = 20, 3
    targets = np.stack([rng.integers(1, 48, n), rng.integers(48, 96, n)], 1).astype(float)
    predictions = targets[:, None] + rng.integers(-15, 16, (n, voters, 2))
    # Their training AIoU: each sample thresholded; their test: a query's voters averaged.
    ious = [misc.segment_iou(t, p, None) for t, p in zip(targets, predictions[:, 0])]
    np.testing.assert_allclose(steps_data.segment_iou(targets, predictions[:, 0]), ious)
    counts = misc.cal_tiou(ious, np.array([0.5, 0.75]))
    assert steps_data.aiou(targets, predictions[:, 0]) == {0.5: counts[0] / n,
                                                          0.75: counts[1] / n}
    correct = np.zeros(2)
    for t, rows in zip(targets, predictions):
        results = [misc.segment_iou(t, p, None) for p in rows]
        correct += misc.cal_tiou([sum(results) / len(results)], np.array([0.5, 0.75]))
    assert steps_data.aiou(targets, predictions) == {0.5: correct[0] / n, 0.75: correct[1] / n}
