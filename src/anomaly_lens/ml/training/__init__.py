"""Fitting a model: its task and datasets, the Lightning module and loop, resume, tuning."""
