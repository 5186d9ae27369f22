"""A boosted tree ensemble, evaluated in numpy: the verifier's model at run time.

Trained with scikit-learn's ``HistGradientBoostingClassifier`` by ``bench/train_verifier.py``
and exported as arrays (one row per tree, padded), so serving needs neither scikit-learn nor a
Python loop over trees: every tree advances one level per numpy step. At load the arrays are
flattened, child indices made absolute and each leaf made its own child, so that a step is
three gathers and a choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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
    _root: npt.NDArray[np.intp] = field(init=False, repr=False)
    _feature: npt.NDArray[np.intp] = field(init=False, repr=False)
    _threshold: npt.NDArray[np.float64] = field(init=False, repr=False)
    _left: npt.NDArray[np.intp] = field(init=False, repr=False)
    _right: npt.NDArray[np.intp] = field(init=False, repr=False)
    _value: npt.NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        trees, width = self.feature.shape
        offset = (np.arange(trees, dtype=np.intp) * width)[:, None]
        itself = offset + np.arange(width, dtype=np.intp)
        flat = {
            "_root": offset.ravel(),
            "_feature": np.where(self.leaf, 0, self.feature).ravel(),
            "_threshold": self.threshold.ravel(),
            "_left": np.where(self.leaf, itself, self.left + offset).ravel(),
            "_right": np.where(self.leaf, itself, self.right + offset).ravel(),
            "_value": self.value.ravel(),
        }
        for name, array in flat.items():
            object.__setattr__(self, name, array)

    def score(self, row: npt.NDArray[np.float32]) -> float:
        """The model's probability that the pair means the same."""
        node = self._root
        x = row.astype(np.float64)
        for _ in range(self.depth):
            go_left = x[self._feature[node]] <= self._threshold[node]
            node = np.where(go_left, self._left[node], self._right[node])
        raw = self.baseline + float(self._value[node].sum())
        return 1.0 / (1.0 + math.exp(-raw))
