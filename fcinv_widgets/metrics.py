"""The one R² of the package (training progress, evaluation, noise grid)."""

from __future__ import annotations

import numpy as np


def r2_score(y_true, y_pred) -> np.ndarray:
    """R² per column: 1 − Σ(y − ŷ)² / Σ(y − ȳ)².

    A constant target column (Σ(y − ȳ)² = 0) has no defined R²: NaN (printed as ``null`` in JSON),
    never a huge negative number or a silent 1. "Constant" allows for the rounding of ȳ: a column of
    one repeated value left Σ(y − ȳ)² ≈ 1e-30 and an R² of −1e30.
    """
    y_true = np.asarray(y_true, float)
    y_pred = np.asarray(y_pred, float)
    ss_res = ((y_true - y_pred) ** 2).sum(0)
    ss_tot = ((y_true - y_true.mean(0)) ** 2).sum(0)
    n = max(len(y_true), 1)
    scale = np.abs(y_true).max(0) if y_true.size else np.zeros(y_true.shape[1:])
    spread = ss_tot > n * (1e-12 * scale) ** 2  # beyond the rounding of a constant column's mean
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - ss_res / np.where(spread & (ss_tot > 0), ss_tot, np.nan)
