r"""Converts published PyTorch checkpoints into Keras weights for our models.

Backbone checkpoints (the output is the backbone's weights, for `--init_weights`):

  python -m aqa_tf.weights.convert --source=resnet --backbone=resnet3d_34 \
      --checkpoint=r3d34_K_200ep.pth --out=weights/resnet3d_34_kinetics.weights.h5
  python -m aqa_tf.weights.convert --source=c3d --checkpoint=c3d.pickle \
      --out=weights/c3d_sports1m.weights.h5

  resnet: 3D-ResNets-PyTorch checkpoints (`r3d{18,34,50,101}_K_200ep.pth`,
    `r2p1d{18,34,50}_K_200ep.pth`): a dict with `state_dict` (keys possibly prefixed `module.`);
    use --backbone=resnet3d_N or r2plus1d_N. The source's `fc.*` classifier is not used.
  torchvision: torchvision VideoResNet naming (`stem.0.weight`, `layer1.0.conv1.0.0.weight`,
    ...), the IG-65M R(2+1)D-34 8- and 32-frame checkpoints; use --backbone=r2plus1d_34_ig65m.
  c3d: the Sports-1M C3D state dict `c3d.pickle` (`conv1.weight` ... `conv5b.bias`, `fc6-8.*`);
    the convolutions go into the backbone (and fc6 with --backbone_fc6=4096). With
    --backbone=mscadc, the MSCADC body's keys (`conv1.*`, `bn1.*`, ...): the authors' UCF-101
    C3D-small start.
  s3d: Kyle Min's S3D Kinetics-400 weights `S3D_kinetics400.pt` (keys `base.0.conv_s.weight`,
    `base.5.branch1.1.conv_t.weight`, ..., `fc.0.*`; paper 000); use --backbone=s3d. The
    Kinetics classifier `fc.*` is not used.

Whole-model checkpoints (the output is the whole model's weights, for `aqa_tf.evaluate
--checkpoint=...` or fine-tuning with `--init_weights`):

  python -m aqa_tf.weights.convert --source=mtl_aqa --flagfile=configs/mtl_aqa_c3d_avg_mtl.cfg \
      --checkpoint=DIR --checkpoint_epoch=99 --out=weights/c3d_avg_mtl_authors.weights.h5

  mtl_aqa: the MTL-AQA authors' training checkpoints, one state dict per part, saved as
    `<part>_<epoch>.pth` in one folder (the `--flagfile` of the matching experiment says which
    model to build). C3D-AVG: `model_CNN` (C3D keys), `model_my_fc6` (`fc.*`),
    `model_score_regressor` (`fc_final_score.*`), `model_dive_classifier` (`fc_position.*`,
    `fc_armstand.*`, `fc_rot_type.*`, `fc_ss_no.*`, `fc_tw_no.*`). MSCADC: `model_CNN` (the
    body), `model_score_regressor` and `model_position_classifier` (the context-net heads).
    `model_caption` (S2VT: `rnn1.*_l<k>`, `rnn2.*_l<k>`, `embedding.weight`, `out.*`; MSCADC's
    also holds its context-net head) is loaded into the caption head (GRU gates reordered from
    PyTorch's r, z, n), or reported as not used by a model without one.

The model is built from the same flags as training (`--flagfile`, `--backbone`, `--clip_length`,
`--crop_size`, `--backbone_fc6`, ...). torch is needed only here: `pip install -r
requirements-torch.txt`. A checkpoint that does not fit fails with the list of missing keys,
unexpected keys and shape mismatches.
"""

import os
import re
from typing import Dict

import numpy as np
from absl import app
from absl import flags

from aqa_tf.weights import mapping

SOURCES = ("resnet", "torchvision", "c3d", "s3d", "mtl_aqa")
BACKBONE_SOURCES = ("resnet", "torchvision", "c3d", "s3d")

# The authors' part names -> what they hold (C3D-AVG and MSCADC training scripts).
MTL_AQA_PARTS = {
    "c3d": {"model_CNN": "backbone", "model_my_fc6": "fc6",
            "model_score_regressor": "score", "model_dive_classifier": "dive",
            "model_caption": "caption"},
    "mscadc": {"model_CNN": "backbone", "model_score_regressor": "score",
               "model_position_classifier": "dive", "model_caption": "caption"},
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


def read_torch_checkpoint(path: str) -> Dict[str, np.ndarray]:
    """State dict of a PyTorch checkpoint file as numpy arrays (CPU, prefixes removed)."""
    try:
        import torch
    except ImportError as error:
        raise ImportError("converting PyTorch checkpoints needs torch: "
                          "pip install -r requirements-torch.txt") from error
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # Old pickles (c3d.pickle) may need the full unpickler.
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict (or a dict with 'state_dict'), got "
                         f"{type(obj).__name__}")
    return mapping.strip_prefixes(
        {k: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
         for k, v in obj.items()})


def convert_into(backbone, state_dict: Dict[str, np.ndarray], source: str) -> Dict:
    """Loads `state_dict` (from `source`) into a built backbone; returns the load report."""
    if source == "resnet":
        return mapping.load_into(backbone, state_dict, mapping.resnet_module_of_layer,
                                 ignore_unused=("fc.",))
    if source == "torchvision":
        return mapping.load_into(backbone, state_dict, mapping.torchvision_module_of_layer,
                                 ignore_unused=("fc.",))
    if source == "c3d":
        return mapping.load_into(backbone, state_dict, lambda name: name,
                                 ignore_unused=("fc6.", "fc7.", "fc8.", "fc."))
    if source == "s3d":
        return mapping.load_into(backbone, state_dict, mapping.s3d_module_of_layer,
                                 ignore_unused=("fc.",))
    raise ValueError(f"unknown source {source!r}; expected one of {BACKBONE_SOURCES}")


def _caption_module(name: str) -> str:
    """`captioner/rnn1_l0` -> `model_caption.rnn1`, `captioner/out` -> `model_caption.out`."""
    sub = name.split("/", 1)[1]
    return "model_caption." + re.sub(r"_l\d+$", "", sub)


def mtl_aqa_module_of_layer(backbone: str):
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


def read_mtl_aqa_parts(folder: str, backbone: str, epoch=None) -> Dict[str, np.ndarray]:
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


def convert_mtl_aqa(model, state_dict: Dict[str, np.ndarray], backbone: str) -> Dict:
    """Loads the authors' merged state dict (`read_mtl_aqa_parts`) into a whole model built by
    `build_aqa_model`. Parts of heads the model does not have (e.g. the caption model before
    the caption head exists) are reported as ignored."""
    ignore = []
    if "caption" not in model.output:
        ignore.append("model_caption.")
    if "position" not in model.output:
        ignore += ["model_dive_classifier.", "model_position_classifier."]
    return mapping.load_into(model, state_dict, mtl_aqa_module_of_layer(backbone),
                             ignore_unused=tuple(ignore))


def define_flags():
    from aqa_tf import flag_defs
    flag_defs.define_flags()  # the model is described by the training flags
    flags.DEFINE_enum("source", None, list(SOURCES), "Checkpoint family.")
    flags.DEFINE_string("checkpoint", None, "PyTorch checkpoint file (mtl_aqa: the folder of "
                        "<part>_<epoch>.pth files).")
    flags.DEFINE_integer("checkpoint_epoch", None, "mtl_aqa: the epoch in the part file names "
                         "(unset: <part>.pth).")
    flags.DEFINE_string("out", None, "Output Keras weights file (.weights.h5).")
    flags.mark_flags_as_required(["source", "checkpoint", "out"])


def main(argv):
    del argv
    from aqa_tf import flag_defs
    from aqa_tf.models import aqa_model
    from aqa_tf.models.backbones import build_backbone
    FLAGS = flags.FLAGS
    data_config = flag_defs.data_config_from_flags()
    model_config = flag_defs.model_config_from_flags()
    if FLAGS.source == "mtl_aqa":
        target = aqa_model.build_aqa_model(model_config, data_config)
        state_dict = read_mtl_aqa_parts(FLAGS.checkpoint, model_config.backbone,
                                        FLAGS.checkpoint_epoch)
        report = convert_mtl_aqa(target, state_dict, model_config.backbone)
    else:
        options = {"fc6_units": model_config.backbone_fc6} if model_config.backbone_fc6 else {}
        target = build_backbone(model_config.backbone, clip_length=data_config.clip_length,
                                image_size=data_config.crop_size, name=model_config.backbone,
                                **options)
        report = convert_into(target, read_torch_checkpoint(FLAGS.checkpoint), FLAGS.source)
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    target.save_weights(FLAGS.out)
    print(f"{FLAGS.checkpoint}: {len(report['loaded'])} tensors -> {FLAGS.out} "
          f"({'whole model' if FLAGS.source == 'mtl_aqa' else 'backbone'} {target.name})")
    if report["ignored"]:
        print(f"not used by {target.name}: " + ", ".join(report["ignored"]))


if __name__ == "__main__":
    define_flags()
    app.run(main)
