"""Anomaly Lens"""

__version__ = "0.1"
