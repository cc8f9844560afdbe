"""Task heads of the AQA models, one file each, registered by name in `registry.HEADS`:

  score             the judges' score (paper 001), difficulty x execution (paper 002)
  per_action_score  the score normalised per action (paper 003), chosen by the score head
  distribution      usdl and musdl: score distributions, overall or per judge (Tang et al.,
                    CVPR 2020), in place of the score head
  dive              the five sub-action classifiers (paper 001)
  caption           S2VT commentary (papers 000 and 001)
  core              CoRe: the score relative to exemplars, group-aware regression tree (Yu et
                    al., ICCV 2021), in place of the score head
  tsa               TSA: the dive's steps found, compared step by step with exemplars (Xu et
                    al., CVPR 2022, FineDiving), in place of the score head
  mscadc            MSCADC's context-net heads (paper 001, Table 3), which the score, dive and
                    caption heads use on spatial backbones

`base.Head` says what a head declares; `build_heads` makes those a configuration asks for.
"""

import dataclasses
from typing import Dict

from aqa_tf.config import DataConfig, ModelConfig
from aqa_tf.models.heads.base import Head
from aqa_tf.registry import HEADS


def build_heads(model_config: ModelConfig, data_config: DataConfig) -> Dict[str, Head]:
    """The heads of `--heads`, by name, in the configuration's order."""
    return {name: HEADS.get(name, "heads").create(model_config, data_config)
            for name in model_config.heads}


def pin_options(model_config: ModelConfig, data_config: DataConfig) -> ModelConfig:
    """`model_config` with the options its heads derive from the training data set
    (`Head.pinned_options`, e.g. CoRe's groups)."""
    pinned = {}
    for name in model_config.heads:
        pinned.update(HEADS.get(name, "heads").pinned_options(model_config, data_config))
    return dataclasses.replace(model_config, **pinned) if pinned else model_config
