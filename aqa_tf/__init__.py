"""aqa-tf: Action Quality Assessment models, data pipelines and tools for Keras 3 / TensorFlow."""

import os

# TensorFlow turns its oneDNN CPU kernels on by default only where the CPU has AVX-512 VNNI/BF16 or
# AMX; elsewhere its Conv3D falls back to far slower kernels. Measured on a 2-core AMD EPYC Zen 3
# (AVX2, no AVX-512), `python -m aqa_tf.benchmark --flagfile configs/quickstart.cfg`: training
# 3.65 -> 17.35 samples/s, inference 20.3 -> 93.5 samples/s with oneDNN on. It takes effect only
# if TensorFlow is imported after this package; a value the user set is kept
# (TF_ENABLE_ONEDNN_OPTS=0 turns it off).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
