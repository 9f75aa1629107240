"""Shared by the S(Q,E) benchmarks: true force-constant sets to simulate measurements from
(:func:`fcinv_widgets.analysis.trust_calibration.draw_truths`, which ``fcinv trust-calibrate`` uses too)."""

from fcinv_widgets.analysis.trust_calibration import draw_truths

__all__ = ["draw_truths"]
