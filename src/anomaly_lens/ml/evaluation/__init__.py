"""Predicting and scoring: metrics with intervals, calibration, OOD detectors, cross-validation, baselines."""
