"""One predictor: a trained model with the artefacts made from it, served the same way by
``inference``, the ONNX parity check and the MLflow model.

Pre-processing (the image cache at the model's size and views, its input CLAHE) and
post-processing (temperatures, thresholds, the OOD flag, abstention, masks and boxes, the
one-class detector's scores and maps) travel with the model, so every place that predicts
gives the same table. No Kedro.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import mlflow
import numpy as np
import pandas as pd
import torch
from pydantic import Field, PositiveInt

from anomaly_lens.ml.anomaly.detector import AnomalyDetector
from anomaly_lens.ml.data.batch import Batch
from anomaly_lens.ml.data.boxes import find_components
from anomaly_lens.ml.data.cache import (
    ImageCache,
    MultiViewDataset,
    build_image_cache,
    from_square,
)
from anomaly_lens.ml.data.imaging import encode_png
from anomaly_lens.ml.evaluation.calibration import Calibrator
from anomaly_lens.ml.evaluation.ood import OODScorer, pixels_of
from anomaly_lens.ml.evaluation.predictions import (
    Predictions,
    mask_classes,
    per_sample_table,
    predict,
    prediction_table,
    probability_columns,
)
from anomaly_lens.ml.evaluation.tta import TestTimeAugmentation
from anomaly_lens.ml.models.bundle import ModelBundle, load_model
from anomaly_lens.ml.serving.identity import (
    REMADE_BY,
    StaleArtefactError,
    mismatch,
    model_identity,
    require_made_from,
)
from anomaly_lens.ml.serving.onnx_graph import (
    ProbabilityModel,
    averaged_onnx_probabilities,
    export_onnx,
    onnx_metadata,
    onnx_session,
)
from anomaly_lens.ml.training.datasets import build_loaders, model_datasets
from anomaly_lens.ml.training.settings import Settings

logger = logging.getLogger(__name__)

NOT_CALIBRATED = (
    "no calibrator (run the calibration pipeline): probabilities are the model's own "
    "(temperature 1), decisions at inference.threshold"
)
NO_DETECTOR = (
    "no out-of-distribution detector (run the ood pipeline): ood_score is empty, no row is flagged"
)
NO_ANOMALY_DETECTOR = (
    "no one-class detector (run the anomaly pipeline): anomaly_score is empty, no row is anomalous"
)


class ServingSettings(Settings):
    """The ``inference`` parameter block: how the predictor batches and decides.
    ``input_dir`` is read by the catalog (given on the command line), not by the predictor."""

    input_dir: str | None = None
    engine: Literal["torch", "onnxruntime"] = "torch"  # onnxruntime: the exported graph
    batch_size: PositiveInt = 32
    tta: TestTimeAugmentation = "hflip"
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)  # where no calibrator gives one
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    mask_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    min_box_area: PositiveInt = 4


@dataclass(frozen=True)
class DecisionRule:
    """How probabilities become decisions, and when a prediction abstains.

    Multi-label: a class is predicted where its probability reaches ``threshold``; the
    confidence is that of the least certain class, ``min_k max(p_k, 1 - p_k)``.
    Multi-class: the most probable class; the confidence is its probability. A prediction
    abstains when its confidence is under ``min_confidence`` or it is out of distribution.
    """

    threshold: float | tuple[float, ...] = 0.5  # one for all classes, or one per class
    min_confidence: float = 0.0

    def apply(
        self, probs: np.ndarray, label_type: str, out_of_distribution: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decisions (0/1 per class), confidence and abstain flag per row."""
        if label_type == "multiclass":
            decisions = np.eye(probs.shape[1], dtype=np.uint8)[probs.argmax(1)]
            confidence = probs.max(1)
        else:
            decisions = (probs >= np.asarray(self.threshold)).astype(np.uint8)
            confidence = np.maximum(probs, 1 - probs).min(1)
        abstain = confidence < self.min_confidence
        if out_of_distribution is not None:
            abstain |= out_of_distribution
        return decisions, confidence, abstain


def predicted_objects(
    dataset: MultiViewDataset,
    seg_probs: torch.Tensor,
    mask_classes: list[str],
    threshold: float = 0.5,
    min_area: int = 1,
    resize: str = "stretch",
) -> tuple[list[str], dict[str, bytes]]:
    """Boxes (a JSON list per item) and mask PNGs (``<item>/<class>``) of predicted masks.

    Masks are thresholded at ``threshold``, mapped back (``from_square``: the image's box
    in the square, nearest) to the item's first present view's original pixels, and split into 8-connected components of at least ``min_area``
    pixels (the ``bbox`` pipeline's ``find_components``); boxes are in that view's pixels.
    """
    boxes, pngs = [], {}
    masks = (seg_probs >= threshold).numpy()
    for k, (position, views) in enumerate(dataset.items):
        present = [j for j in views if dataset.cache.view_mask[position, j]]
        height, width = (int(x) for x in dataset.cache.view_shapes[position, present[0]])
        found = []
        for c, name in enumerate(mask_classes):
            if not masks[k, c].any():
                continue
            full = from_square(masks[k, c].astype(np.uint8), height, width, resize)
            pngs[f"{dataset.item_id(k)}/{name}"] = encode_png(full * 255)
            components, _ = find_components(full, min_area)
            found += [
                {
                    "class": name,
                    "x0": o.x0,
                    "y0": o.y0,
                    "x1": o.x1,
                    "y1": o.y1,
                    "pixel_count": o.pixel_count,
                }
                for o in components
            ]
        boxes.append(json.dumps(found))
    return boxes, pngs


def _calibrator_for(identity: str, calibrator: Mapping | None) -> tuple[Calibrator | None, str]:
    if calibrator is None:
        return None, NOT_CALIBRATED
    fitted = Calibrator(**calibrator)
    stale = mismatch("calibrator", fitted.model_id, identity)
    return (None, f"not applied: {stale}") if stale else (fitted, "")


def _detector_for(identity: str, detector: OODScorer | None) -> tuple[OODScorer | None, str]:
    if detector is None:
        return None, NO_DETECTOR
    made_from = getattr(detector, "model_id", None)  # detectors saved before identities
    stale = mismatch("OOD detector", made_from, identity)
    return (None, f"not applied: {stale}") if stale else (detector, "")


def _anomaly_detector_for(
    bundle: ModelBundle, detector: AnomalyDetector | None
) -> tuple[AnomalyDetector | None, str]:
    """The one-class detector learnt from the model's own train images (and thresholded on
    its validation images), or why not: it is made from the split, not from the weights."""
    if detector is None:
        return None, NO_ANOMALY_DETECTOR
    if bundle.split_id is not None and detector.split_id == bundle.split_id:
        return detector, ""
    learnt = bundle.split_id or "not recorded (saved before models recorded their split)"
    return None, (
        f"not applied: the one-class detector learnt the train images of split "
        f"{detector.split_id}, the model those of split {learnt}: run "
        f"`{REMADE_BY['one-class detector']}`"
    )


@dataclass
class Predictor:
    """A model bundle with its own calibrator, OOD and one-class detectors, and the decision
    settings.

    Build it with ``Predictor.of``: artefacts made from another model (the one-class
    detector: from another split) are left out, and ``calibration_note``/``detector_note``/
    ``anomaly_note`` say why ("" where applied).
    """

    bundle: ModelBundle
    calibrator: Calibrator | None
    detector: OODScorer | None
    settings: ServingSettings
    identity: str
    calibration_note: str = ""
    detector_note: str = ""
    anomaly: AnomalyDetector | None = None  # predictors pickled before it: None
    anomaly_note: str = NO_ANOMALY_DETECTOR
    _network: torch.nn.Module | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(
        cls,
        bundle: ModelBundle,
        calibrator: Mapping | None,
        detector: OODScorer | None,
        settings: ServingSettings,
        anomaly_detector: AnomalyDetector | None = None,
    ) -> Predictor:
        identity = model_identity(bundle)
        fitted, calibration_note = _calibrator_for(identity, calibrator)
        detector, detector_note = _detector_for(identity, detector)
        anomaly, anomaly_note = _anomaly_detector_for(bundle, anomaly_detector)
        for note in (calibration_note, detector_note, anomaly_note):
            if note.startswith("not applied"):
                logger.warning(note)
        return cls(
            bundle, fitted, detector, settings, identity, calibration_note, detector_note,
            anomaly, anomaly_note,
        )  # fmt: skip

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_network": None}  # weights travel in the bundle only

    @property
    def network(self) -> torch.nn.Module:
        if self._network is None:
            self._network = load_model(self.bundle)
            if self._network.classifier is None:
                raise ValueError("A segmentation-only model predicts no classes")
        return self._network

    @property
    def label_classes(self) -> list[str]:
        """The classes that have a label column and a mask: all but ``normal``."""
        return mask_classes(self.bundle.classes)

    @property
    def temperature(self) -> float | list[float]:
        """The calibrator's temperatures; 1 without one."""
        return self.calibrator.temperature if self.calibrator else 1.0

    @property
    def rule(self) -> DecisionRule:
        """The calibrator's per-class thresholds where it has them, else ``threshold``."""
        found = self.calibrator.thresholds if self.calibrator else None
        return DecisionRule(
            tuple(found) if found else self.settings.threshold, self.settings.min_confidence
        )

    def describe(self) -> dict:
        """The model, each artefact applied (with the model it was made from) or why not,
        and the rules, as the inference report gives them."""
        bundle, fitted, detector = self.bundle, self.calibrator, self.detector
        multiclass = bundle.label_type == "multiclass"
        return {
            "model": {
                "identity": self.identity,
                **{k: getattr(bundle, k) for k in ("trained_at", "mlflow_run_id", "classes")},
                **{k: getattr(bundle, k) for k in ("label_type", "views", "per_view")},
            },
            "calibration": self.calibration_note
            or {k: getattr(fitted, k) for k in ("model_id", "temperature", "thresholds")},
            "out_of_distribution": self.detector_note
            or {"model_id": detector.model_id, "detector": detector.name,
                "threshold": detector.threshold},
            "one_class_detector": self.anomaly_note
            or {k: getattr(self.anomaly, k)
                for k in ("method", "backbone", "split_id", "threshold", "threshold_rule")},
            "decision_rule": "the most probable class" if multiclass
            else f"each class with probability >= its threshold {list(np.atleast_1d(self.rule.threshold))}",
            "abstain_rule": f"confidence < {self.settings.min_confidence}, or out of distribution",
            "tta": self.settings.tta,
            "engine": self.settings.engine,
        }  # fmt: skip

    def onnx_graph(self, example: Batch) -> bytes:
        """The model, resize and the calibrator's temperatures (1 without one) as one ONNX
        graph (``ProbabilityModel``), recording the model it was made from."""
        wrapped = ProbabilityModel(self.network, self.bundle.image_size, self.temperature)
        metadata = {
            "classes": self.bundle.classes,
            "temperature": self.temperature,
            "model_id": self.identity,
        }
        return export_onnx(wrapped, example.images, example.view_mask, metadata)

    def prepare(
        self,
        samples: pd.DataFrame,
        manifest: pd.DataFrame,
        masks: pd.DataFrame,
        read: Callable[[str], bytes],
    ) -> ImageCache:
        """The images of paired ``samples`` as the model reads them (``build_image_cache``
        at its views and size); classes the samples do not carry get label 0."""
        frame = samples.copy()
        for name in self.label_classes:
            if f"label_{name}" not in frame:
                frame[f"label_{name}"] = 0
        return build_image_cache(
            frame,
            manifest,
            masks,
            read,
            views=self.bundle.views,
            classes=self.label_classes,
            image_size=self.bundle.image_size,
            resize=self.bundle.resize,
        )

    def predict_images(
        self,
        samples: pd.DataFrame,
        manifest: pd.DataFrame,
        masks: pd.DataFrame,
        read: Callable[[str], bytes],
        onnx_model: bytes | None = None,
        progress=lambda batches: batches,
    ) -> tuple[pd.DataFrame, dict[str, bytes], dict[str, np.ndarray]]:
        """New paired samples end to end, as ``inference`` and the served model predict
        them: ``predict``'s table and mask PNGs, with the one-class detector's
        ``anomaly_score`` and ``anomalous`` (its validation threshold) per photo and sample,
        and each photo's anomaly map by ``item_id`` (``sample/view``)."""
        cache = self.prepare(samples, manifest, masks, read)
        table, pngs = self.predict(cache, onnx_model, progress)
        if self.anomaly is None:
            flags = pd.array([pd.NA] * len(table), dtype="boolean")
            return table.assign(anomaly_score=np.nan, anomalous=flags), pngs, {}
        found, maps = self.anomaly.score_samples(
            samples, manifest, masks, read, self.settings.batch_size
        )
        scored = ["level", "item_id", "anomaly_score", "anomalous"]
        table = table.merge(found[scored], on=["level", "item_id"], how="left")
        return table.assign(anomalous=table["anomalous"].astype("boolean")), pngs, maps

    def predict(
        self,
        cache: ImageCache,
        onnx_model: bytes | None = None,
        progress=lambda batches: batches,
        ids: list[str] | None = None,
    ) -> tuple[pd.DataFrame, dict[str, bytes]]:
        """The prediction table (``level`` ``sample``, and ``photo`` rows for a per-view
        model) and mask PNGs (``<item>/<class>``) of the samples ``ids`` of ``cache`` (all
        by default)."""
        ids = list(cache.sample_ids) if ids is None else ids
        dataset = model_datasets(cache, {"p": ids}, self.bundle)["p"]
        loader = build_loaders({"p": dataset}, self.settings.batch_size, 0, False, 0)["p"]
        plain, seg = None, None
        if self.settings.engine == "onnxruntime":  # the graph has no mask or feature output
            probs, targets = self._onnx_probabilities(onnx_model, progress(loader))
            plain = predict(self.network, loader, tta="none") if self.detector else None
        else:
            plain = predict(self.network, progress(loader), self.settings.tta)
            probs, targets, seg = plain.probs, plain.targets, plain.seg_probs
            if self.calibrator is not None:
                probs = torch.from_numpy(self.calibrator.apply(probs.numpy()))
        classes = self.bundle.classes
        table = prediction_table("p", dataset, probs, targets, classes).drop(columns="split")
        table = self._ood_columns(plain, table, loader)
        pngs: dict[str, bytes] = {}
        if seg is not None:
            table["boxes"], pngs = predicted_objects(
                dataset,
                seg,
                self.label_classes,
                self.settings.mask_threshold,
                self.settings.min_box_area,
                self.bundle.resize,
            )
        return self._decided(self._levels(table)), pngs

    def _onnx_probabilities(self, onnx_model: bytes | None, batches) -> tuple[torch.Tensor, ...]:
        """Probabilities (the graph folds in the calibrator's temperatures) and targets."""
        if onnx_model is None:
            raise ValueError(
                "inference.engine=onnxruntime reads the exported model: run "
                "`kedro run --pipelines=export` first"
            )
        exported = onnx_metadata(onnx_model)
        require_made_from("ONNX graph", exported.get("model_id"), self.identity)
        if exported.get("temperature") != self.temperature:
            raise StaleArtefactError(
                f"The ONNX graph folds in the temperatures {exported.get('temperature')}, the "
                f"calibrator applied now has {self.temperature}: run "
                f"`{REMADE_BY['ONNX graph']}`"
            )
        session, label_type = onnx_session(onnx_model), self.bundle.label_type
        probs, targets = [], []
        for batch in batches:
            found = averaged_onnx_probabilities(
                session, batch.images, batch.view_mask, self.settings.tta, label_type
            )
            probs.append(torch.from_numpy(found))
            targets.append(batch.labels)
        return torch.cat(probs), torch.cat(targets)

    def _ood_columns(self, plain: Predictions | None, table: pd.DataFrame, loader) -> pd.DataFrame:
        """``ood_score`` and ``out_of_distribution`` per item (empty without a detector),
        from the logits and features of the items as they are (or their images, for a
        detector that reads them)."""
        if self.detector is None:
            flags = pd.array([pd.NA] * len(table), dtype="boolean")
            return table.assign(ood_score=np.nan, out_of_distribution=flags)
        pixels = None
        if self.detector.reads_images:
            batches = list(loader)
            pixels = pixels_of(
                torch.cat([b.images for b in batches]), torch.cat([b.view_mask for b in batches])
            )
        scores, flags = self.detector.flag(plain.logits, plain.features, pixels)
        return table.assign(ood_score=scores, out_of_distribution=pd.array(flags, dtype="boolean"))

    def _levels(self, table: pd.DataFrame) -> pd.DataFrame:
        """A per-view model's photos and its samples (mean probabilities, highest OOD)."""
        if not self.bundle.per_view:
            return table.assign(level="sample")
        samples = per_sample_table(
            table, self.bundle.classes, highest=["ood_score", "out_of_distribution"]
        )
        samples.insert(1, "item_id", samples["sample_id"])
        photos, samples = table.assign(level="photo"), samples.assign(level="sample")
        return pd.concat([photos, samples], ignore_index=True)

    def _decided(self, table: pd.DataFrame) -> pd.DataFrame:
        """Decisions per class, confidence and abstain beside the probabilities."""
        classes = self.bundle.classes
        probs = table[probability_columns("prob", classes)].to_numpy(np.float64)
        flagged = table["out_of_distribution"].fillna(False).to_numpy(bool)
        decisions, confidence, abstain = self.rule.apply(probs, self.bundle.label_type, flagged)
        table[probability_columns("pred", classes)] = decisions
        table["predicted"] = [
            ";".join(c for c, d in zip(classes, row, strict=True) if d) for row in decisions
        ]
        return table.assign(
            confidence=confidence,
            abstain=abstain,
            model_trained_at=self.bundle.trained_at,
            model_run_id=self.bundle.mlflow_run_id,
            model_id=self.identity,
        )


class ServedModel(mlflow.pyfunc.PythonModel):
    """The predictor as an MLflow pyfunc: a table of image paths in, ``predictions.parquet``'s
    columns out (sample level, one row per input row, in its order).

    ``model_input`` has one column per view the model reads (``co2``, ``ch4``; a per-view
    model: ``image``), each cell a path (empty where the view is missing), and optionally
    ``sample_id``. Images are prepared as ``inference`` prepares them.
    """

    def __init__(self, predictor: Predictor):
        self.predictor = predictor

    @property
    def columns(self) -> list[str]:
        """The input table's columns: the model's views (``image`` for a per-view model)."""
        bundle = self.predictor.bundle
        return ["image"] if bundle.per_view else list(bundle.views)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        missing = [c for c in self.columns if c not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks the view columns {missing}")
        views = self.predictor.bundle.views[: len(self.columns)]  # a per-view model: slot 0
        ids = model_input.get("sample_id", pd.Series(range(len(model_input)))).astype(str)
        paths = model_input[self.columns].to_numpy(object)
        samples = pd.DataFrame({"sample_id": ids.to_numpy()})
        contents = {}
        for slot, view in enumerate(views):
            present = pd.notna(paths[:, slot])
            samples[f"image_{view}"] = np.where(present, ids + f"/{view}", None)
            for sample, path in zip(ids[present], paths[present, slot], strict=True):
                contents[f"{sample}/{view}"] = Path(path).read_bytes()
        manifest = pd.DataFrame(
            {
                "image_id": list(contents),
                "partition_id": list(contents),
                "sha256": [hashlib.sha256(c).hexdigest() for c in contents.values()],
                "labels": [[] for _ in contents],
            }
        )
        masks = pd.DataFrame(columns=["image_id", "class", "encoded_pixels"])
        table, _, _ = self.predictor.predict_images(samples, manifest, masks, contents.__getitem__)
        table = table[table["level"] == "sample"].set_index("sample_id").loc[ids.to_numpy()]
        return table.drop(
            columns=probability_columns("target", self.predictor.bundle.classes)
        ).reset_index()
