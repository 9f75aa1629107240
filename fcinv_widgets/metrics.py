"""The one R² of the package (training progress, evaluation, noise grid)."""

from __future__ import annotations

import numpy as np


def r2_score(y_true, y_pred) -> np.ndarray:
    """R² per column: 1 − Σ(y − ŷ)² / Σ(y − ȳ)².

    A constant target column (Σ(y − ȳ)² = 0) has no defined R²: NaN (printed as ``null`` in JSON),
    never a huge negative number or a silent 1.
    """
    y_true = np.asarray(y_true, float)
    y_pred = np.asarray(y_pred, float)
    ss_res = ((y_true - y_pred) ** 2).sum(0)
    ss_tot = ((y_true - y_true.mean(0)) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, np.nan)
