"""Deepfake Lab: image decoding, face finding and deepfake detection.

Kept import-free on purpose: ``import detector`` must stay cheap (no
TensorFlow), so import the submodules you need, e.g. ``detector.images``.
"""
