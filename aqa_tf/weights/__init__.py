"""Importing published PyTorch weights into the Keras backbones
(`python -m aqa_tf.weights.convert`)."""
