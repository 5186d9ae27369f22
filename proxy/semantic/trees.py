"""A boosted tree ensemble, evaluated in numpy: the verifier's model at run time.

Trained with scikit-learn's ``HistGradientBoostingClassifier`` by ``bench/train_verifier.py``
and exported as flat arrays (one row per tree, padded), so serving needs neither scikit-learn
nor a Python loop over trees: every tree advances one level per numpy step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Trees:
    feature: npt.NDArray[np.intp]
    """(trees, nodes): the feature a node splits on."""
    threshold: npt.NDArray[np.float64]
    """A row goes left when its feature is <= this."""
    left: npt.NDArray[np.intp]
    right: npt.NDArray[np.intp]
    leaf: npt.NDArray[np.bool_]
    value: npt.NDArray[np.float64]
    """A leaf's contribution to the raw score."""
    baseline: float
    depth: int

    def score(self, row: npt.NDArray[np.float32]) -> float:
        """The model's probability that the pair means the same."""
        trees = np.arange(self.feature.shape[0])
        node = np.zeros(trees.size, dtype=np.intp)
        x = row.astype(np.float64)
        for _ in range(self.depth):
            go_left = x[self.feature[trees, node]] <= self.threshold[trees, node]
            step = np.where(go_left, self.left[trees, node], self.right[trees, node])
            node = np.where(self.leaf[trees, node], node, step)
        raw = self.baseline + float(self.value[trees, node].sum())
        return 1.0 / (1.0 + math.exp(-raw))
