"""Backbones; importing this package registers all of them in `registry.BACKBONES`."""

from aqa_tf.models.backbones import c3d  # noqa: F401
from aqa_tf.models.backbones import i3d  # noqa: F401
from aqa_tf.models.backbones import mscadc  # noqa: F401
from aqa_tf.models.backbones import r2plus1d  # noqa: F401
from aqa_tf.models.backbones import resnet3d  # noqa: F401
from aqa_tf.models.backbones import s3d  # noqa: F401
from aqa_tf.models.backbones.base import build_backbone, known_backbones, register_backbone  # noqa: F401
