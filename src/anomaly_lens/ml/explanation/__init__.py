"""Attributions (Captum) and their scores against masks (Quantus)."""
