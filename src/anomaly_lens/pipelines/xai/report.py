"""The ``xai_report``: one self-contained HTML page (figures embedded as PNG) that opens
offline. How to read each part: docs/xai.md."""

from __future__ import annotations

import base64
import html
import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from anomaly_lens.ml.explanation.quality import (
    LOCALISATION,
    attribution_shares,
    cluster_maps,
    side_by_side,
)

IG = "integrated_gradients"
STYLE = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
.pass{color:#176117;font-weight:600}.fail{color:#a11;font-weight:600}
img{max-width:100%}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
.note{color:#555;font-size:13px}
"""


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    return frame.to_html(float_format=lambda x: f"{x:.{digits}f}", na_rep="–", border=0)


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _checks_table(checks: list[dict]) -> str:
    if not checks:
        return (
            '<p class="note">No ground truth of which view shows which type '
            "(metadata <code>visible_in_views</code>), so only the random-baseline checks "
            "apply; none had a mask to score.</p>"
        )
    cells = "".join(
        f"<tr><td>{html.escape(c['check'])}</td><td>{c['method']}</td><td>{c['class']}</td>"
        f"<td>{_fmt(c['value'])}</td><td>{_fmt(c['bound'])}</td>"
        f"<td class={'pass' if c['passed'] else 'fail'}>"
        f"{'pass' if c['passed'] else 'FAIL'}</td></tr>"
        for c in checks
    )
    head = "<tr><th>check</th><th>method</th><th>class</th><th>value</th><th>bound</th><th></th>"
    return f"<table>{head}</tr>{cells}</table>"


def quality_frame(metrics: dict) -> pd.DataFrame:
    """One row per method and class: each score with its random baseline."""
    records = []
    for method, per_class in metrics["quality"].items():
        for name, entry in per_class.items():
            record = {"method": method, "class": name, "n": entry["n_positive"]}
            for metric in [*LOCALISATION, "deletion_auc"]:
                record[metric] = entry[metric]
                record[f"{metric} (random)"] = entry[f"{metric}_random"]
            records.append(record)
    return pd.DataFrame(records).set_index(["method", "class"])


def _view_share_frame(metrics: dict) -> pd.DataFrame:
    records = [
        {"method": method, "class": name, **shares}
        for method, per_class in metrics["view_share"].items()
        for name, shares in per_class.items()
    ]
    return pd.DataFrame(records).set_index(["method", "class"]) if records else pd.DataFrame()


def _mask_outline(ax, mask: np.ndarray) -> None:
    if mask.any():
        ax.contour(mask, levels=[0.5], colors="lime", linewidths=0.8)


def _overlays(bundle: dict, indices: list[int], methods: list[str]) -> Figure:
    """Per explained image and view: the image with the mask contour, then each method's
    heatmap over it."""
    n_views = bundle["images"].shape[1]
    columns = n_views * (1 + len(methods))
    fig, axes = plt.subplots(
        len(indices), columns, figsize=(1.6 * columns, 1.7 * len(indices)), squeeze=False
    )
    rows = bundle["rows"]
    for r, i in enumerate(indices):
        for v in range(n_views):
            view = bundle["slot_views"][i][v]
            image, mask = bundle["images"][i, v], bundle["masks"][i, v]
            base = v * (1 + len(methods))
            axes[r, base].imshow(image, cmap="gray", vmin=0, vmax=1)
            _mask_outline(axes[r, base], mask)
            axes[r, base].set_title(
                f"{rows.at[i, 'item_id']} · {view}\n{rows.at[i, 'class']} "
                f"p={rows.at[i, 'prob']:.2f} ({rows.at[i, 'reason']})",
                fontsize=6,
            )
            for m, method in enumerate(methods, start=1):
                ax = axes[r, base + m]
                ax.imshow(image, cmap="gray", vmin=0, vmax=1)
                if bundle["view_mask"][i, v]:
                    heat = np.abs(bundle["maps"][method][i, v])
                    top = np.abs(bundle["maps"][method][i]).max()
                    ax.imshow(heat, cmap="inferno", alpha=0.6, vmin=0, vmax=top if top else 1)
                _mask_outline(ax, mask)
                ax.set_title(f"{method} · {view}", fontsize=6)
    for ax in axes.flat:
        ax.axis("off")
    return fig


def _mean_maps(bundle: dict) -> Figure | None:
    """Mean Integrated-Gradients share map per class (rows) and view (columns)."""
    if IG not in bundle["maps"]:
        return None
    rows = bundle["rows"]
    positive = rows["target"].to_numpy() > 0
    shares = attribution_shares(bundle["maps"][IG])
    classes = [c for c in pd.unique(rows["class"]) if (positive & (rows["class"] == c)).any()]
    if not classes:
        return None
    names = bundle["slot_views"][0] if not bundle["model"]["per_view"] else ["photo"]
    fig, axes = plt.subplots(
        len(classes), len(names), figsize=(2.2 * len(names), 2.0 * len(classes)), squeeze=False
    )
    for r, name in enumerate(classes):
        keep = positive & (rows["class"] == name).to_numpy()
        mean = shares[keep].mean(0)
        for v, view in enumerate(names):
            axes[r, v].imshow(mean[v], cmap="inferno")
            axes[r, v].set_title(f"{name} · {view} (n={keep.sum()})", fontsize=8)
            axes[r, v].axis("off")
    return fig


def _profiles(metrics: dict) -> Figure | None:
    """Attribution share per intensity bin and per distance band, against pixel share."""
    per_class = {k: v for k, v in metrics["per_class"].items() if "distance_profile" in v}
    if not per_class:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.2))
    bins = metrics["intensity_bins"]
    centres = (np.arange(bins) + 0.5) / bins
    for name, entry in per_class.items():
        (line,) = left.plot(centres, entry["intensity_profile"]["attribution"], label=name)
        left.plot(centres, entry["intensity_profile"]["pixels"], "--", color=line.get_color())
        right.plot(metrics["distance_bands"], entry["distance_profile"]["attribution"], "o-")
        right.plot(
            metrics["distance_bands"],
            entry["distance_profile"]["pixels"],
            "--",
            color=line.get_color(),
        )
    left.set(
        xlabel="pixel intensity", ylabel="share", title="attribution (solid) vs pixels (dashed)"
    )
    right.set(xlabel="distance to the defect", title="attribution (solid) vs pixels (dashed)")
    left.legend(fontsize=7)
    return fig


def _deletion(bundle: dict) -> Figure:
    positive = bundle["rows"]["target"].to_numpy() > 0
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for method, curves in bundle["deletion"].items():
        if positive.any():
            steps = np.linspace(0, 1, curves.shape[1])
            style = "k--" if method == "random" else "-"
            ax.plot(steps, curves[positive].mean(0), style, label=method)
    ax.set(xlabel="share of pixels deleted (most attributed first)", ylabel="confidence")
    ax.legend(fontsize=7)
    return fig


def _attention(bundle: dict, indices: list[int]) -> Figure | None:
    attention = bundle["attention"]
    if attention is None:
        return None
    n_views = attention.shape[1]
    fig, axes = plt.subplots(
        len(indices), 2 * n_views, figsize=(3.2 * n_views, 1.6 * len(indices)), squeeze=False
    )
    for r, i in enumerate(indices):
        for v in range(n_views):
            axes[r, 2 * v].imshow(bundle["images"][i, v], cmap="gray", vmin=0, vmax=1)
            axes[r, 2 * v].set_title(f"{bundle['rows'].at[i, 'item_id']} · {v}", fontsize=6)
            axes[r, 2 * v + 1].imshow(attention[i, v], cmap="viridis")
            axes[r, 2 * v + 1].set_title("attention received", fontsize=6)
    for ax in axes.flat:
        ax.axis("off")
    return fig


def _clusters(bundle: dict, clusters: int, side: int, seed: int) -> str:
    """K-means on the downsampled Integrated-Gradients maps: a gallery per cluster and the
    cluster x class table."""
    if IG not in bundle["maps"] or len(bundle["rows"]) < 2:
        return '<p class="note">Too few maps to cluster.</p>'
    maps = bundle["maps"][IG]
    labels = cluster_maps(maps, clusters, side, seed)
    rows = bundle["rows"].assign(cluster=labels)
    table = pd.crosstab(rows["cluster"], rows["class"])
    shown = 6
    k = labels.max() + 1
    fig, axes = plt.subplots(k, shown, figsize=(2.2 * shown, 1.4 * k), squeeze=False)
    images = side_by_side(bundle["images"])[:, 0]
    heat = side_by_side(attribution_shares(maps))[:, 0]
    for c in range(k):
        members = np.flatnonzero(labels == c)[:shown]
        for j in range(shown):
            ax = axes[c, j]
            ax.axis("off")
            if j < len(members):
                i = members[j]
                ax.imshow(images[i], cmap="gray", vmin=0, vmax=1)
                ax.imshow(heat[i], cmap="inferno", alpha=0.6)
                ax.set_title(f"cluster {c} · {rows.at[i, 'class']}", fontsize=6)
    return _png(fig) + "<h3>Cluster × class</h3>" + _table(table, 0)


def _subview(report: dict | None) -> str:
    if not report:
        return (
            '<p class="note">No sub-view run yet: <code>kedro run --pipelines=subview</code> '
            "trains on attribution-guided crops and compares.</p>"
        )
    frame = pd.DataFrame(report["comparison"]).T
    return (
        f"<p>Regions of interest: {html.escape(str(report['regions']))}</p>"
        + _table(frame)
        + f'<p class="note">{html.escape(report["verdict"])}</p>'
    )


def _anomaly_overlays(bundle: dict, anomaly: dict, indices: list[int]) -> Figure:
    """Per explained image and view: the image with the mask contour and the one-class
    detector's map over it, on one scale (the threshold at the middle)."""
    n_views = bundle["images"].shape[1]
    fig, axes = plt.subplots(
        len(indices), n_views, figsize=(1.8 * n_views, 1.7 * len(indices)), squeeze=False
    )
    top = 2 * anomaly["threshold"]
    for r, i in enumerate(indices):
        for v in range(n_views):
            ax = axes[r, v]
            ax.imshow(bundle["images"][i, v], cmap="gray", vmin=0, vmax=1)
            if bundle["view_mask"][i, v]:
                ax.imshow(anomaly["maps"][i, v], cmap="jet", alpha=0.45, vmin=0, vmax=top)
            _mask_outline(ax, bundle["masks"][i, v])
            ax.set_title(
                f"{bundle['rows'].at[i, 'item_id']} · {bundle['slot_views'][i][v]}", fontsize=6
            )
    for ax in axes.flat:
        ax.axis("off")
    return fig


def _anomaly_section(bundle: dict, anomaly: dict, shown: list[int]) -> list[str]:
    """The one-class detector's maps beside the attributions: their localisation scores
    (the same metrics and random baseline) and overlays of the same images."""
    if not anomaly.get("applied"):
        return [f"<p class='note'>Not applied: {html.escape(anomaly.get('reason', ''))}</p>"]
    records = [
        {"class": name, "n": entry["n_positive"],
         **{k: entry[k] for k in entry if k != "n_positive"}}
        for name, entry in anomaly["quality"].items()
    ]  # fmt: skip
    return [
        f"<p class='note'>{html.escape(anomaly['method'])}, learnt from normal train images "
        "only (no class, no mask): where it finds the defect without being told what one "
        "is. Scores as in the quality table above, random baseline beside.</p>",
        _table(pd.DataFrame(records).set_index("class")),
        _png(_anomaly_overlays(bundle, anomaly, shown)),
    ]


def render(
    bundle: dict, metrics: dict, subview: dict | None, settings, anomaly: dict | None = None
) -> str:
    """The whole report as one HTML string."""
    model = metrics["model"]
    rows = bundle["rows"]
    order = rows.sort_values(["class", "reason"], kind="stable").index
    shown = list(order[: settings.overlays])
    methods = [m for m in (IG, "grad_cam") if m in bundle["maps"]]
    seconds = pd.DataFrame({"seconds per image": metrics["seconds_per_image"]})
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Anomaly Lens · XAI report"
        f"</title><style>{STYLE}</style></head><body>",
        "<h1>Explanations</h1>",
        f"<p>Model: {html.escape(model['backbone'])}, fusion {model['fusion']}, "
        f"task {model['task']} (explained head: {model['head']}), views "
        f"{', '.join(model['views'])}{' (each photo alone)' if model['per_view'] else ''}; "
        f"trained {model['trained_at']}. {metrics['n_decisions']} decisions of the "
        f"{metrics['split']} split, {metrics['n_explained_images']} images explained. "
        "How to read each figure: docs/xai.md.</p>",
        "<h2>Ground-truth checks</h2>",
        _checks_table(metrics["checks"]),
        "<h2>Explanation quality against the masks</h2>",
        '<p class="note">Images whose class is present; higher is better except deletion '
        "AUC (lower: deleting the most attributed pixels first lowers the confidence "
        "sooner). Each score has the random-attribution baseline beside it.</p>",
        _table(quality_frame(metrics)),
        "<h2>Which view drives each decision</h2>",
        _table(_view_share_frame(metrics)),
        "<h2>Deletion curves</h2>",
        _png(_deletion(bundle)),
        "<h2>Integrated-Gradients profiles per class</h2>",
    ]
    for figure in (_mean_maps(bundle), _profiles(metrics)):
        if figure is not None:
            parts.append(_png(figure))
    parts += ["<h2>Overlays</h2>", _png(_overlays(bundle, shown, methods))]
    parts += ["<h2>One-class anomaly maps</h2>", *_anomaly_section(bundle, anomaly or {}, shown)]
    attention = _attention(bundle, shown[:6])
    if attention is not None:
        parts += ["<h2>Cross-attention</h2>", _png(attention)]
    parts += [
        "<h2>Clusters of attribution maps</h2>",
        _clusters(bundle, settings.clusters, settings.cluster_side, settings.seed),
        "<h2>Sub-view training</h2>",
        _subview(subview),
        "<h2>Cost</h2>",
        _table(seconds, 4),
        "</body></html>",
    ]
    return "\n".join(parts)
