"""Per-scan inference (the paper's Fig. 4): FC predictions for every single-orientation scan,
compared with the prediction from the full data set.

:class:`ScanInference` is the result object the :class:`~fcinv_widgets.OrientationScatter`
widget shows. Arrays are NumPy; FCs in eV/Å²; spectra on the model's (q, E) grid, NaN where a
scan measured nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ScanInference:
    """Predictions for single scans at sample angles ``angles_deg``.

    names        (8,) parameter names, e.g. "FC0 (1NN xx)"
    angles_deg   (n,) sample rotation ω of each scan, degrees
    mean, std    (n, 8) per-scan FC mean and spread over latent samples (eV/Å²; std 0 for a ResNet)
    full_mean    (8,) prediction from the full data set (union of all scans)
    full_std     (8,)
    reference    (8,) reference FCs (e.g. first-principles values) or None
    mse          (n,) mean over FCs of ((mean − full_mean) / domain width)², dimensionless
    inputs       (n, nq, nE) float32 scan spectra, NaN = not covered
    recon        (n, nq, nE) float32 decoder reconstructions (zeros for a ResNet)
    coverage     (n,) fraction of covered pixels of each scan
    """

    names: list
    angles_deg: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    full_mean: np.ndarray
    full_std: np.ndarray
    reference: np.ndarray | None
    mse: np.ndarray
    inputs: np.ndarray
    recon: np.ndarray
    coverage: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def order(self) -> np.ndarray:
        """Scan indices from best (lowest MSE) to worst."""
        return np.argsort(self.mse, kind="stable")

    def best_median_worst(self) -> tuple:
        o = self.order
        return int(o[0]), int(o[len(o) // 2]), int(o[-1])
