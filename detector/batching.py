"""Batched prediction on in-memory pixels, through the same input path as training.

Model layer: training, the experts' assembly, the probes and the novelty reference all score
uint8 pixels the same way (`data.make_dataset`), and none of them has to import the training
loop to do it.
"""
from __future__ import annotations

import numpy as np

from detector import data


def predict_outputs(model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The model's outputs on uint8 pixels, through the same input path as training."""
    return model.predict(data.make_dataset(x, np.zeros(len(x)), batch_size=batch_size)
                         .map(lambda im, _y: im), verbose=0)


def predict_pixels(model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Raw P(fake) of the whole model on uint8 pixels (what serving computes)."""
    return predict_outputs(model, x, batch_size).reshape(-1).astype("float64")
