"""Weight import parity: PyTorch modules with the published key names and random weights ->
state dict file -> converter -> Keras backbone; outputs equal in eval mode (BN running stats)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is needed to build the PyTorch references")

from aqa_tf.models.backbones import build_backbone  # noqa: E402
from keras.ops import log_softmax as tf_log_softmax  # noqa: E402
from aqa_tf.weights import mapping, sources  # noqa: E402
from tests.models.backbones import torch_reference  # noqa: E402
from tests.helpers import run_module  # noqa: E402


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
    reference = torch_reference.randomise(
        torch_reference.ResNet(int(depth), factorised=kind == "r2plus1d"), seed=int(depth))
    state = dict(reference.state_dict())
    state["fc.weight"] = torch.zeros(400, 2048 if int(depth) >= 50 else 512)  # the classifier
    state["fc.bias"] = torch.zeros(400)
    path = str(tmp_path / f"{name}.pth")
    _save(state, path, wrap=True)

    backbone = build_backbone(name, clip_length=8, image_size=48)
    report = sources.convert_into(backbone, sources.read_torch_checkpoint(path), "resnet")
    assert report["ignored"] == ["fc.bias", "fc.weight"]
    clip = np.random.default_rng(0).standard_normal((2, 8, 48, 48, 3)).astype("float32")
    _compare(reference, backbone, clip)


def test_ig65m_torchvision_checkpoint_converts_with_parity(tmp_path):
    reference = torch_reference.randomise(torch_reference.TorchvisionR2Plus1D(), seed=65)
    state = dict(reference.state_dict())
    assert "layer1.0.conv1.0.3.weight" in state and "stem.3.weight" in state
    state["fc.weight"], state["fc.bias"] = torch.zeros(359, 512), torch.zeros(359)
    path = str(tmp_path / "r2plus1d_34_clip32_ig65m.pth")
    _save(state, path, wrap=False)
    backbone = build_backbone("r2plus1d_34_ig65m", clip_length=8, image_size=48)
    report = sources.convert_into(backbone, sources.read_torch_checkpoint(path), "torchvision")
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
    reference = torch_reference.randomise(_C3D(), seed=3)
    path = str(tmp_path / "c3d.pickle")
    _save(dict(reference.state_dict()), path, wrap=False)
    backbone = build_backbone("c3d")
    report = sources.convert_into(backbone, sources.read_torch_checkpoint(path), "c3d")
    assert len(report["loaded"]) == 16
    assert report["ignored"] == ["fc6.bias", "fc6.weight", "fc7.bias", "fc7.weight",
                                 "fc8.bias", "fc8.weight"]
    clip = np.random.default_rng(1).uniform(-1, 1, (1, 16, 112, 112, 3)).astype("float32")
    _compare(reference, backbone, clip)

    # With fc6 in the backbone (paper 003's C3D-LSTM reads fc6 features), fc6 is imported too.
    with_fc6 = build_backbone("c3d", fc6_units=4096)
    report = sources.convert_into(with_fc6, sources.read_torch_checkpoint(path), "c3d")
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
        sources.convert_into(backbone, state, "resnet")
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


def _assert_outputs_match(got, expected, label):
    """Every output within 1e-4 of the reference, relative to the output scale."""
    for name, value in expected.items():
        scale = float(np.abs(value).max())
        err = float(np.abs(np.asarray(got[name]) - value).max())
        print(f"{label} {name}: max abs diff {err:.3g} (output scale {scale:.3g})")
        assert err <= 1e-4 * scale


def _save_parts(folder, parts, epoch):
    for part, module in parts.items():
        state = module if isinstance(module, dict) else dict(module.state_dict())
        torch.save(state, str(folder / f"{part}_{epoch}.pth"))


class _S2VT(torch.nn.Module):
    """The authors' S2VT caption model (their key names: rnn1, rnn2, embedding, out), run with
    teacher forcing step by step as their training loop does; returns log-probabilities."""

    def __init__(self, vocab, dim_vid, hidden=32, word=16, layers=2):
        super().__init__()
        self.rnn1 = torch.nn.GRU(dim_vid, hidden, layers, batch_first=True, dropout=0.5)
        self.rnn2 = torch.nn.GRU(hidden + word, hidden, layers, batch_first=True, dropout=0.5)
        self.embedding = torch.nn.Embedding(vocab, word)
        self.out = torch.nn.Linear(hidden, vocab)
        self.dim_vid, self.word = dim_vid, word

    def forward(self, feats, tokens):
        batch, clips, _ = feats.shape
        out1, state1 = self.rnn1(feats)
        _, state2 = self.rnn2(torch.cat([out1, torch.zeros(batch, clips, self.word)], 2))
        log_probs = []
        for i in range(tokens.shape[1]):
            out1, state1 = self.rnn1(torch.zeros(batch, 1, self.dim_vid), state1)
            words = self.embedding(tokens[:, i:i + 1])
            out2, state2 = self.rnn2(torch.cat([out1, words], 2), state2)
            log_probs.append(torch.log_softmax(self.out(out2[:, 0]), -1))
        return torch.stack(log_probs, 1)

    def greedy(self, feats, steps):
        """Greedy decoding as the authors' sampler: from `<sos>` (1), each step feeds the
        argmax word of the previous one; token ids `[batch, steps]`."""
        batch, clips, _ = feats.shape
        out1, state1 = self.rnn1(feats)
        _, state2 = self.rnn2(torch.cat([out1, torch.zeros(batch, clips, self.word)], 2))
        word, ids = torch.ones(batch, 1, dtype=torch.long), []
        for _ in range(steps):
            out1, state1 = self.rnn1(torch.zeros(batch, 1, self.dim_vid), state1)
            out2, state2 = self.rnn2(torch.cat([out1, self.embedding(word)], 2), state2)
            word = self.out(out2[:, 0]).argmax(-1, keepdim=True)
            ids.append(word[:, 0])
        return torch.stack(ids, 1)


def _authors_c3d_avg_parts(folder, s2vt, epoch=99):
    """The authors' C3D-AVG-MTL part files (random weights) with `s2vt` as `model_caption`;
    returns the PyTorch modules."""
    cnn = torch_reference.randomise(_C3D(), seed=11)
    fc6 = torch.nn.Module()
    fc6.fc = torch.nn.Linear(8192, 4096)
    regressor = torch.nn.Module()
    regressor.fc_final_score = torch.nn.Linear(4096, 1)
    classifier = torch.nn.Module()
    for name, count in torch_reference.MTL_AQA_CLASSES.items():
        setattr(classifier, MTL_AQA_CLASSIFIER_KEYS[name], torch.nn.Linear(4096, count))
    for i, module in enumerate((fc6, regressor, classifier)):
        torch_reference.randomise(module, seed=20 + i)
    # The authors' C3D_altered ends at pool5: its state dict has no fc layers.
    cnn_state = {k: v for k, v in cnn.state_dict().items() if not k.startswith("fc")}
    _save_parts(folder, {"model_CNN": cnn_state, "model_my_fc6": fc6,
                         "model_score_regressor": regressor, "model_dive_classifier": classifier,
                         "model_caption": s2vt}, epoch=epoch)
    return cnn, fc6, regressor, classifier


MTL_AQA_CLASSIFIER_KEYS = {"position": "fc_position", "armstand": "fc_armstand",
                           "rotation_type": "fc_rot_type", "somersaults": "fc_ss_no",
                           "twists": "fc_tw_no"}


def test_mtl_aqa_c3d_avg_checkpoints_convert_with_parity(tmp_path):
    from aqa_tf.config import DataConfig, ModelConfig
    from aqa_tf.models.aqa_model import build_aqa_model
    s2vt = torch_reference.randomise(_S2VT(20, 8192), seed=24)
    cnn, fc6, regressor, classifier = _authors_c3d_avg_parts(tmp_path, s2vt)
    suffixes = MTL_AQA_CLASSIFIER_KEYS
    state = sources.read_mtl_aqa_parts(str(tmp_path), "c3d", epoch=99)

    # Without a caption head the caption model is reported as not used.
    data = DataConfig(sample_length=32, num_frames=32, clip_length=16, crop_size=112,
                      max_caption_words=6)
    no_caption = build_aqa_model(ModelConfig(heads=("score", "dive")), data)
    report = sources.convert_mtl_aqa(no_caption, state, "c3d")
    assert len(report["loaded"]) == 16 + 2 + 2 + 10
    assert report["ignored"] and all(k.startswith("model_caption.") for k in report["ignored"])

    model = build_aqa_model(ModelConfig(heads=("score", "dive", "caption"), vocab_size=20,
                                        caption_hidden=32, caption_embedding=16), data)
    report = sources.convert_mtl_aqa(model, state, "c3d")
    assert report["ignored"] == [] and len(report["loaded"]) == 30 + 16 + 3

    video = np.random.default_rng(4).uniform(-1, 1, (1, 2, 16, 112, 112, 3)).astype("float32")
    tokens = np.array([[1, 5, 9, 3, 0, 0, 0]], np.int32)
    with torch.no_grad():
        clips = torch.from_numpy(np.transpose(video[0], (0, 4, 1, 2, 3)))
        clip_features = cnn(clips)
        # S2VT reads the per-clip pool5 features, before the averaging.
        caption = s2vt(clip_features[None], torch.from_numpy(tokens).long())
        pooled = clip_features.mean(0, keepdim=True)        # C3D-AVG: average over clips
        hidden = torch.relu(fc6.fc(pooled))                 # my_fc6 (dropout: eval)
        expected = {"score": regressor.fc_final_score(hidden)[:, 0].numpy() * 17.0}
        for name, attr in suffixes.items():
            expected[name] = getattr(classifier, attr)(hidden).numpy()
    got = dict(model({"video": video, "caption_tokens": tokens}, training=False))
    got["caption"] = np.asarray(tf_log_softmax(got["caption"]))
    expected["caption"] = caption.numpy()
    _assert_outputs_match(got, expected, "c3d-avg")


def test_mtl_aqa_mscadc_checkpoints_convert_with_parity(tmp_path):
    from aqa_tf.config import DataConfig, ModelConfig
    from aqa_tf.models.aqa_model import build_aqa_model
    body = torch_reference.randomise(torch_reference.MSCADCBody(), seed=31)
    head_fs = torch_reference.randomise(torch_reference.MSCADCHead({"": 1}), seed=32)
    head_cls = torch_reference.randomise(torch_reference.mscadc_classifier(), seed=33)
    _save_parts(tmp_path, {"model_CNN": body, "model_score_regressor": head_fs,
                           "model_position_classifier": head_cls}, epoch=4)
    data = DataConfig(sample_length=16, num_frames=16, clip_length=16, crop_size=64)
    model = build_aqa_model(ModelConfig(backbone="mscadc", heads=("score", "dive")), data)
    report = sources.convert_mtl_aqa(model, sources.read_mtl_aqa_parts(str(tmp_path), "mscadc",
                                                                         epoch=4), "mscadc")
    assert report["ignored"] == []
    video = np.random.default_rng(5).uniform(-1, 1, (2, 1, 16, 64, 64, 3)).astype("float32")
    with torch.no_grad():
        features = body(torch.from_numpy(np.transpose(video[:, 0], (0, 4, 1, 2, 3))))
        expected = {"score": head_fs(features)[""][:, 0].numpy() * 17.0}
        logits = head_cls(features)
        for name, suffix in torch_reference.MSCADC_CLASS_SUFFIXES.items():
            expected[name] = logits[suffix].numpy()
    got = model({"video": video}, training=False)
    _assert_outputs_match(got, expected, "mscadc")


def test_mtl_aqa_missing_parts_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_CNN_3.pth"):
        sources.read_mtl_aqa_parts(str(tmp_path), "c3d", epoch=3)
    with pytest.raises(ValueError, match="C3D-AVG"):
        sources.read_mtl_aqa_parts(str(tmp_path), "resnet3d_34", epoch=3)


def test_cli_converts_the_mscadc_body(tmp_path):
    """`python -m aqa_tf.weights.convert` reads the model from the training flags."""
    body = torch_reference.randomise(torch_reference.MSCADCBody(), seed=41)
    state = dict(body.state_dict())
    state["fc8.weight"] = torch.zeros(101, 10)  # a classifier the body does not use
    torch.save(state, str(tmp_path / "c3d_small.pth"))
    out = tmp_path / "mscadc_body.weights.h5"
    result = run_module(
        "aqa_tf.weights.convert", "--source=c3d", "--backbone=mscadc",
        "--crop_size=64", "--num_frames=16", "--sample_length=16",
        f"--checkpoint={tmp_path / 'c3d_small.pth'}", f"--out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "48 tensors" in result.stdout and "fc8.weight" in result.stdout
    backbone = build_backbone("mscadc", clip_length=16, image_size=64)
    backbone.load_weights(str(out))
    clip = np.random.default_rng(6).uniform(-1, 1, (1, 16, 64, 64, 3)).astype("float32")

    class _ChannelsLast(torch.nn.Module):  # the body returns a feature map
        def forward(self, x):
            return body(x).permute(0, 2, 3, 4, 1)

    _compare(_ChannelsLast(), backbone, clip)


@pytest.mark.parametrize("clip_length", [16, 32])
def test_s3d_kinetics_checkpoint_converts_with_parity(clip_length, tmp_path):
    reference = torch_reference.randomise(torch_reference.S3D(), seed=51)
    path = str(tmp_path / "S3D_kinetics400.pt")
    _save({f"module.{k}": v for k, v in reference.state_dict().items()}, path, wrap=False)
    backbone = build_backbone("s3d", clip_length=clip_length, image_size=64)
    report = sources.convert_into(backbone, sources.read_torch_checkpoint(path), "s3d")
    assert report["ignored"] == ["fc.0.bias", "fc.0.weight"]

    class _Features(torch.nn.Module):
        def forward(self, x):
            return reference.features(x)

    clip = np.random.default_rng(7).uniform(-1, 1, (1, clip_length, 64, 64, 3)).astype("float32")
    _compare(_Features(), backbone, clip)
    assert mapping.s3d_module_of_layer("base_5_branch1_1_conv_s") == "base.5.branch1.1.conv_s"
    assert mapping.s3d_module_of_layer("base_15_branch3_1_bn") == "base.15.branch3.1.bn"


def test_training_starts_from_a_pytorch_checkpoint_converted_on_the_fly(tmp_path):
    """`--init_weights=r3d18.pth --init_weights_source=resnet`: the backbone of the whole model
    gets what the converter gives."""
    from aqa_tf.config import DataConfig, ModelConfig
    from aqa_tf.models import aqa_model
    reference = torch_reference.randomise(torch_reference.ResNet(18), seed=18)
    path = str(tmp_path / "r3d18.pth")
    _save(dict(reference.state_dict()), path, wrap=True)
    data = DataConfig(sample_length=8, num_frames=8, clip_length=8, crop_size=48)
    model = aqa_model.build_aqa_model(
        ModelConfig(backbone="resnet3d_18", fc_units=0, heads=("score",)), data)
    report = sources.load_initial_weights(model, path, "resnet", "resnet3d_18")
    assert len(report["loaded"]) == len(aqa_model.backbone_of(model).weights)
    clip = np.random.default_rng(0).standard_normal((2, 8, 48, 48, 3)).astype("float32")
    _compare(reference, aqa_model.backbone_of(model), clip)


def test_the_authors_5779_word_s2vt_converts_and_captions_as_pytorch(tmp_path):
    """The released S2VT has 5779 words (the authors' opts.py) while vocab.json has 5781: the
    converter says how to build it, converts it with --caption_vocab_size, names the words it
    can never produce, and its greedy captions equal the PyTorch model's."""
    import sys
    from tests.conftest import mtl_aqa_annotations
    from aqa_tf.config import DataConfig, ModelConfig
    from aqa_tf.models import aqa_model
    vocab_file = f"{mtl_aqa_annotations()}/vocab.json"
    s2vt = torch_reference.randomise(_S2VT(5779, 8192), seed=25)
    _authors_c3d_avg_parts(tmp_path, s2vt, epoch=7)
    out = tmp_path / "authors.weights.h5"
    model_flags = ["--backbone=c3d", "--heads=score,dive,caption", f"--vocab_file={vocab_file}",
                   "--caption_hidden=32", "--caption_embedding=16", "--num_frames=32",
                   "--sample_length=32", "--max_caption_words=12"]
    command = [sys.executable, "-m", "aqa_tf.weights.convert", "--source=mtl_aqa",
               f"--checkpoint={tmp_path}", "--checkpoint_epoch=7", f"--out={out}"] + model_flags
    refused = run_module(*command[2:])
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "--caption_vocab_size=5779" in refused.stderr and "Traceback" not in refused.stderr
    converted = run_module(*command[2:], "--caption_vocab_size=5779")
    assert converted.returncode == 0, converted.stderr[-2000:]
    assert "5779 'lien', 5780 'questions'" in converted.stdout, converted.stdout

    data = DataConfig(sample_length=32, num_frames=32, clip_length=16, crop_size=112,
                      max_caption_words=12)
    model = aqa_model.build_aqa_model(
        ModelConfig(heads=("score", "dive", "caption"), vocab_size=5779, caption_hidden=32,
                    caption_embedding=16), data)
    model.load_weights(str(out))
    generator = aqa_model.CaptionGenerator(model, data.max_caption_words)
    video = np.random.default_rng(8).uniform(-1, 1, (2, 2, 16, 112, 112, 3)).astype("float32")
    got = np.asarray(generator(video))
    clip_features = np.asarray(generator.features({"video": video}, training=False))
    with torch.no_grad():
        expected = s2vt.greedy(torch.from_numpy(clip_features.copy()), got.shape[1]).numpy()
    # Our captions end at their first <eos> (and always end with one): compare up to it.
    expected[:, -1] = 0
    expected[np.cumsum(expected == 0, axis=1) > 0] = 0
    print("greedy ids", got.tolist())
    np.testing.assert_array_equal(got, expected)
    assert got.max() < 5779 and len(set(got[got > 0].tolist())) > 3
