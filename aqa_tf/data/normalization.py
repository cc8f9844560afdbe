"""Frame normalisations (`--normalization`): per-channel (mean, std) applied to frames scaled
to [0, 1], registered by name in `registry.NORMALIZATIONS`."""

from aqa_tf.registry import NORMALIZATIONS

# The MTL-AQA authors' C3D pipeline: ImageNet statistics on [0, 1] RGB frames.
NORMALIZATIONS.register("imagenet", ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
# Kinetics statistics (3D-ResNets-PyTorch, on [0, 1] frames).
NORMALIZATIONS.register("kinetics", ((0.4345, 0.4051, 0.3775), (0.2768, 0.2713, 0.2737)))
# torchvision video models and the IG-65M R(2+1)D checkpoints (on [0, 1] frames).
NORMALIZATIONS.register("torchvision_video",
                        ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)))
# Map [0, 1] to [-1, 1] (S3D / Inception style).
NORMALIZATIONS.register("symmetric", ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
NORMALIZATIONS.register("none", ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))
