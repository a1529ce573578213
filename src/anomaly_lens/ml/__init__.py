"""Anomaly Lens' machine-learning library: data, models, losses, metrics, attribution.

Nothing in this package imports Kedro, so it can be used and tested on its own; the
pipelines in ``anomaly_lens.pipelines`` are thin glue over it.
"""
