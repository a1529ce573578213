"""Anomaly Lens' machine-learning library, one sub-package per stage of a model's life.

- ``data``: reading, checking, pairing and splitting images; the image cache and its datasets
- ``models``: the networks (registries of encoders, fusions, heads), pretrained weights,
  the saved bundle
- ``training``: the training core every pipeline that fits a model calls; Lightning;
  resume; losses; tuning
- ``evaluation``: predictions and scores with intervals; calibration; OOD detectors;
  cross-validation; baselines
- ``explanation``: attributions (Captum) and their scores against masks (Quantus)
- ``serving``: the predictor that inference, export and the MLflow model share; ONNX;
  which model an artefact was made from

Nothing in this package imports Kedro, so it can be used and tested on its own; the
pipelines in ``anomaly_lens.pipelines`` are thin glue over it.
"""
