"""Keras models: CTR backbones and the code quantizers."""
