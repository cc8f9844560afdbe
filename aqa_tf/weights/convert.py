r"""Converts published PyTorch checkpoints into Keras weights for our backbones.

  python -m aqa_tf.weights.convert --source=resnet --backbone=resnet3d_34 \
      --checkpoint=r3d34_K_200ep.pth --out=weights/resnet3d_34_kinetics.weights.h5
  python -m aqa_tf.weights.convert --source=c3d --checkpoint=c3d.pickle \
      --out=weights/c3d_sports1m.weights.h5

Sources:
  resnet: 3D-ResNets-PyTorch checkpoints (`r3d{18,34,50,101}_K_200ep.pth`,
    `r2p1d{18,34,50}_K_200ep.pth`): a dict with `state_dict` (keys possibly prefixed `module.`);
    use --backbone=resnet3d_N or r2plus1d_N. The source's `fc.*` classifier is not used.
  torchvision: torchvision VideoResNet naming (`stem.0.weight`, `layer1.0.conv1.0.0.weight`,
    ...), the IG-65M R(2+1)D-34 8- and 32-frame checkpoints; use --backbone=r2plus1d_34_ig65m.
  c3d: the Sports-1M C3D state dict `c3d.pickle` (`conv1.weight` ... `conv5b.bias`, `fc6-8.*`);
    the convolutions go into the backbone (fc6-8 are reported as not used by the backbone).

The output is a Keras weights file of the backbone (`backbone.save_weights`), loaded by
`python -m aqa_tf.train --init_weights=PATH`. torch is needed only here: `pip install -r
requirements-torch.txt`. A checkpoint that does not fit the backbone fails with the list of
missing keys, unexpected keys and shape mismatches.
"""

import os
from typing import Dict

import numpy as np
from absl import app
from absl import flags

from aqa_tf.weights import mapping

SOURCES = ("resnet", "torchvision", "c3d")


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
                                 ignore_unused=("fc6.", "fc7.", "fc8."))
    raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")


def define_flags():
    flags.DEFINE_enum("source", None, list(SOURCES), "Checkpoint family.")
    flags.DEFINE_string("checkpoint", None, "PyTorch checkpoint file.")
    flags.DEFINE_string("backbone", "c3d", "Registry name of the backbone to fill.")
    flags.DEFINE_integer("clip_length", 16, "Clip length the backbone is built for.")
    flags.DEFINE_integer("image_size", 112, "Input size the backbone is built for.")
    flags.DEFINE_integer("backbone_fc6", 0, "C3D: build the backbone with fc6 of this width "
                         "(4096) and import fc6 too (paper 003's C3D-LSTM).")
    flags.DEFINE_string("out", None, "Output Keras weights file (.weights.h5).")
    flags.mark_flags_as_required(["source", "checkpoint", "out"])


def main(argv):
    del argv
    from aqa_tf.models.backbones import build_backbone
    FLAGS = flags.FLAGS
    options = {"fc6_units": FLAGS.backbone_fc6} if FLAGS.backbone_fc6 else {}
    backbone = build_backbone(FLAGS.backbone, clip_length=FLAGS.clip_length,
                              image_size=FLAGS.image_size, name=FLAGS.backbone, **options)
    report = convert_into(backbone, read_torch_checkpoint(FLAGS.checkpoint), FLAGS.source)
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    backbone.save_weights(FLAGS.out)
    print(f"{FLAGS.checkpoint}: {len(report['loaded'])} tensors -> {FLAGS.out}")
    if report["ignored"]:
        print("not used by the backbone: " + ", ".join(report["ignored"]))


if __name__ == "__main__":
    define_flags()
    app.run(main)
