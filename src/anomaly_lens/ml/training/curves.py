"""Training curves of a fit's history: losses and validation macro-F1 per epoch."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure


def plot_training_curves(history: pd.DataFrame) -> Figure:
    """Losses and validation macro-F1 per epoch."""
    fig = Figure(figsize=(10, 4), layout="tight")
    left, right = fig.subplots(1, 2)
    for column in [c for c in history.columns if c.endswith("loss") and "step" not in c]:
        left.plot(history["epoch"], history[column], label=column)
    left.set(xlabel="epoch", title="loss")
    left.legend(fontsize="small")
    if "val_macro_f1" in history:
        right.plot(history["epoch"], history["val_macro_f1"], marker="o")
    right.set(xlabel="epoch", title="validation macro-F1", ylim=(0, 1.02))
    return fig
