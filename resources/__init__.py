"""Data files shipped with quantpress (icons, styles, calibration and evaluation texts)."""
