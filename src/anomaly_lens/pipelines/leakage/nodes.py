"""Nodes of the ``leakage`` pipeline: the same cross-validation with a random, leaky
grouping, and the gap it opens."""

from __future__ import annotations

from anomaly_lens.parameters import CvParams, parse_block

COMPARED = ("model", "image_size", "per_view", "folds", "validation", "classes", "train")


def random_grouping(cv: dict) -> dict:
    """The ``cv`` settings with every item on its own: photos of one tile (or specimen)
    fall into different folds, as in a photo-level random split."""
    return parse_block(CvParams, cv).model_copy(update={"group_by": "none"}).model_dump()


def _differences(grouped: object, leaky: object, name: str) -> list[str]:
    """The names of the settings that differ between two (nested) parameter blocks."""
    if isinstance(grouped, dict) and isinstance(leaky, dict):
        keys = sorted(set(grouped) | set(leaky))
        return [d for k in keys for d in _differences(grouped.get(k), leaky.get(k), f"{name}.{k}")]
    return [] if grouped == leaky else [name]


def _gap(grouped: dict, leaky: dict, key: str) -> dict:
    grouped_f1, random_f1 = grouped[key]["macro_f1"], leaky[key]["macro_f1"]
    return {
        "grouped_macro_f1": grouped_f1,
        "grouped_macro_f1_ci95": grouped[key]["macro_f1_ci95"],
        "random_macro_f1": random_f1,
        "random_macro_f1_ci95": leaky[key]["macro_f1_ci95"],
        "gap": random_f1 - grouped_f1,
    }


def report_leakage(cv_metrics: dict, leaky_cv_metrics: dict) -> dict:
    """``leakage_report``: out-of-fold macro-F1 of the same model under grouped and random
    folds, and the gap (random minus grouped), for the network and the feature baseline.

    Refuses to compare runs whose model, image size, folds, validation, classes or training
    settings (all but where and how they ran: ``PLACEMENT_AND_DISPLAY``) differ, e.g. a
    ``cv_metrics`` saved by an earlier run with other parameters, or by a version that did
    not record its settings.
    """
    differing = [
        d for k in COMPARED for d in _differences(cv_metrics.get(k), leaky_cv_metrics.get(k), k)
    ]
    if differing:
        raise ValueError(
            f"cv_metrics and leaky.cv_metrics differ in {differing}: run "
            "`kedro run --pipelines=cv,leakage` so both use the same parameters"
        )
    if cv_metrics["group_by"] != "unit" or leaky_cv_metrics["group_by"] != "none":
        raise ValueError("cv_metrics must be grouped by unit and leaky.cv_metrics by none")
    report = {
        "folds": cv_metrics["folds"],
        "model": cv_metrics["model"],
        "image_size": cv_metrics["image_size"],
        "items": cv_metrics["items"],
        "grouped_units": cv_metrics["units"],
        "network": _gap(cv_metrics, leaky_cv_metrics, "oof"),
        "baseline": {
            "model": cv_metrics["baseline"]["model"],
            **_gap(cv_metrics["baseline"], leaky_cv_metrics["baseline"], "oof"),
        },
    }
    report["grouped_macro_f1"] = report["network"]["grouped_macro_f1"]
    report["random_macro_f1"] = report["network"]["random_macro_f1"]
    report["gap"] = report["network"]["gap"]
    return report
