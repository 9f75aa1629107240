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
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - ss_res / np.where(constant_columns(y_true), np.nan, ss_tot)


def constant_columns(y_true) -> np.ndarray:
    """(columns,) bool: the columns of (N, columns) ``y_true`` with no spread beyond the rounding of
    their mean (Σ(y − ȳ)² ≤ N (1e-12 max|y|)²), whose R² is undefined."""
    y = np.asarray(y_true, float)
    if not y.size:
        return np.ones(y.shape[1:], bool)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    return ~(ss_tot > len(y) * (1e-12 * np.abs(y).max(0)) ** 2)


def check_scorable(y_true, names, what: str) -> None:
    """Before an R² is computed over (N, columns) true values: one :class:`FcinvError` when N < 2 (R² is
    undefined for one value: the grid or evaluation came out all NaN without a word), a
    :class:`FcinvWarning` naming the columns that are constant (their R² is NaN)."""
    import warnings

    from .errors import FcinvError, FcinvWarning

    y = np.asarray(y_true, float)
    if len(y) < 2:
        raise FcinvError(f"{what} needs at least 2 test spectra (R² is undefined for one), got {len(y)}")
    flat = [str(n) for n, c in zip(names, constant_columns(y)) if c]
    if flat:
        one = len(flat) == 1
        warnings.warn(
            FcinvWarning(
                f"{', '.join(flat)} {'is' if one else 'are'} the same in every test spectrum: "
                f"{'its' if one else 'their'} R² is undefined (NaN)"
            ),
            stacklevel=3,
        )
