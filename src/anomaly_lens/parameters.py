"""Typed parameter blocks of every pipeline, and readable errors for bad values.

Each top-level block of ``conf/*/parameters*.yml`` has a schema here (``train``'s is the
library's ``TrainSettings``). Nodes parse their block once with ``parse_block``; the
project hook checks every block with ``check_parameters`` before a run starts, so a bad
value or a misspelt key stops the run before any work, with messages such as
``train.image_size: expected an integer or one of 'auto', got 'abc'``. No Kedro imports.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from anomaly_lens.ml.anomaly.settings import AnomalyParams
from anomaly_lens.ml.data.layouts import LAYOUTS
from anomaly_lens.ml.data.splitting import check_ratios
from anomaly_lens.ml.data.synthetic import SyntheticConfig
from anomaly_lens.ml.evaluation.crossval import VALIDATIONS
from anomaly_lens.ml.evaluation.ood import DETECTORS
from anomaly_lens.ml.explanation.attribution import AttributionSettings
from anomaly_lens.ml.explanation.settings import XaiParams
from anomaly_lens.ml.models.pretrained import WEIGHT_PACKAGES
from anomaly_lens.ml.serving.predictor import ServingSettings
from anomaly_lens.ml.training.binary import OTHER_ANOMALIES, merged
from anomaly_lens.ml.training.losses import SOFTMAX_LOSSES
from anomaly_lens.ml.training.settings import Settings, TrainSettings
from anomaly_lens.ml.training.tuning import Dimension, PrunerSettings, StudySettings


class ParameterError(ValueError):
    """Parameters that do not fit their schema; one line per problem."""


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(f"not a regular expression ({error}): {pattern!r}") from None
    return pattern


class VocParams(Settings):
    label_source: Literal["objects", "filename_prefix", "both"] = "objects"
    prefix_pattern: str = r"(?P<label>.+?)_\d+$"

    _pattern = field_validator("prefix_pattern")(_regex)


class IngestionParams(Settings):
    """The ``ingestion`` block: layout, quarantine rules, file-name pattern."""

    layout: Literal[LAYOUTS] = "synthetic"
    classes: list[str] = []
    on_error: Literal["quarantine", "fail"] = "quarantine"
    mask_threshold: int = Field(default=128, ge=1, le=255)
    strict_binary_masks: bool = False
    max_image_pixels: PositiveInt = 40_000_000
    min_image_side: PositiveInt = 16
    duplicate_label_conflict: Literal["quarantine", "keep_first"] = "quarantine"
    follow_links_outside_raw_dir: bool = False
    filename_pattern: str = r"(?P<view>[^/]+)/(?P<specimen_id>S\d+)_(?P<condition>[^/]+)"
    normal_class: str | list[str] | None = None
    label_separator: str = Field(default=";", min_length=1)
    voc: VocParams = VocParams()

    _pattern = field_validator("filename_pattern")(_regex)


class TileParams(Settings):
    folder: str
    number: str
    max_gap: PositiveInt


class PairingParams(Settings):
    """The ``pairing`` block: which manifest columns make a sample and its group."""

    key: list[str] = Field(default=["specimen_id", "condition"], min_length=1)
    group: str | list[str] = "specimen_id"
    views: list[str] = Field(default=["co2", "ch4"], min_length=1)
    keep: list[str] = []
    tiles: TileParams | None = None


class ColumnValues(Settings):
    """The samples whose manifest ``column`` holds one of ``values``."""

    column: str
    values: list[str | int | float] = Field(min_length=1)


class SplitParams(Settings):
    """The ``split`` block: shares, seeds, near-duplicate joining, held-out domain (the
    folds of cross-validation are the ``cv`` block's)."""

    ratios: list[float] = [0.7, 0.15, 0.15]
    seed: int = 42
    candidates: PositiveInt = 50
    near_duplicate_bits: int = Field(default=12, ge=-1, le=256)
    holdout: ColumnValues | None = None
    given_test: ColumnValues | None = None  # e.g. {column: mvtec_split, values: [test]}

    @field_validator("ratios")
    @classmethod
    def _shares(cls, ratios: list[float]) -> list[float]:
        return list(check_ratios(ratios))


class AnomalyTypeParams(Settings):
    views: list[str] = Field(min_length=1)
    rare: bool = False


class SyntheticParams(Settings):
    """The ``synthetic`` block; checked by building the generator's ``SyntheticConfig``."""

    seed: int = 42
    n_specimens: PositiveInt = 150
    conditions: list[str] = Field(default=["c0", "c1", "c2", "c3"], min_length=1)
    views: list[str] = Field(default=["co2", "ch4"], min_length=1)
    image_size: PositiveInt = 128
    normal_fraction: float = 0.4
    rare_fraction: float = Field(default=0.03, ge=0.0, le=1.0)
    missing_view_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    anomaly_types: dict[str, AnomalyTypeParams] = {
        "plume": AnomalyTypeParams(views=["co2"]),
        "streak": AnomalyTypeParams(views=["co2", "ch4"]),
        "hotspot": AnomalyTypeParams(views=["ch4"]),
        "crack": AnomalyTypeParams(views=["co2", "ch4"], rare=True),
    }

    @model_validator(mode="after")
    def _generator_accepts(self) -> SyntheticParams:
        self.to_config()
        return self

    def to_config(self) -> SyntheticConfig:
        return SyntheticConfig.from_params(self.model_dump())


class BboxParams(Settings):
    """The ``bbox`` block."""

    min_area: NonNegativeInt = 10
    merge_distance: NonNegativeInt = 0
    previews_per_class: NonNegativeInt = 4


class NestedParams(Settings):
    """``cv.nested``: the grid of frozen-feature logistic regressions chosen by inner folds."""

    backbones: list[Literal[tuple(WEIGHT_PACKAGES)]] = Field(
        default=["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"],
        min_length=1,
    )
    c: list[PositiveFloat] = Field(default=[0.01, 0.1, 1.0], min_length=1)


class CvParams(Settings):
    """The ``cv`` block."""

    validation: Literal[VALIDATIONS] = "next_fold"  # before `folds`, which depends on it
    folds: int = 5
    group_by: Literal["unit", "none"] = "unit"
    seed: int = 42
    candidates: PositiveInt = 20
    baseline_backbone: Literal[tuple(WEIGHT_PACKAGES)] = "tf_efficientnet_lite0"
    nested: NestedParams = NestedParams()

    @field_validator("folds")
    @classmethod
    def _room_to_train(cls, folds: int, info: ValidationInfo) -> int:
        # A round tests one fold, early-stops on the next (unless `none`), trains on the rest.
        if info.data.get("validation", "next_fold") == "none":
            least, parts = 2, "one to test, the rest to train"
        else:
            least, parts = 3, "one to test, one for early stopping, the rest to train"
        if folds < least:
            raise ValueError(f"expected at least {least} ({parts}), got {folds}")
        return folds


class CalibrationParams(Settings):
    """The ``calibration`` block."""

    per_class_temperature: bool = True
    threshold_rule: Literal["f1", "precision", "recall"] = "f1"
    threshold_targets: dict[str, float] = {}


class DriftParams(Settings):
    """``ood.drift``: how new images are measured against the training images."""

    backbone: Literal[tuple(WEIGHT_PACKAGES)] = "tf_efficientnet_lite0"
    max_images: PositiveInt = 300
    quantile: float = Field(default=0.99, gt=0.5, lt=1.0)
    resamples: PositiveInt = 30


class OODParams(Settings):
    """The ``ood`` block."""

    detector: Literal[(*DETECTORS, "auto")] = "auto"  # auto: the best on validation-side sets
    kept: float = Field(default=0.95, gt=0.5, lt=1.0)
    max_items: PositiveInt = 200
    neighbours: PositiveInt = 50
    seed: int = 42
    drift: DriftParams = DriftParams()


class ExportParams(Settings):
    """The ``export`` block: the ONNX parity check."""

    check_samples: PositiveInt = 32
    tolerance: float = Field(default=1e-4, gt=0.0)


class SubviewParams(Settings):
    """The ``subview`` block: attribution-guided crops."""

    top_mass: float = Field(default=0.1, gt=0.0, le=1.0)
    margin: NonNegativeInt = 4
    max_train_samples: PositiveInt = 200
    attribution: AttributionSettings = AttributionSettings(
        methods=["integrated_gradients"], n_steps=16
    )


class BinaryParams(Settings):
    """The ``binary`` block: one binary model per anomaly type (``train_binary``)."""

    types: list[str] = []
    other_anomalies: Literal[OTHER_ANOMALIES] = "negative"
    common: dict[str, Any] = {"trainer": {"max_epochs": 8, "patience": 4}}
    per_type: dict[str, dict[str, Any]] = {}


def binary_train_settings(train: Mapping[str, Any], binary: BinaryParams, anomaly_type: str):
    """The ``train`` block with ``binary.common`` and ``binary.per_type[anomaly_type]`` merged
    in, as one-class (sigmoid) ``TrainSettings``; problems named by their ``binary`` path.
    A softmax loss inherited from ``train`` (``ce``) becomes ``bce``, its one-output form."""
    own = merged(binary.common, binary.per_type.get(anomaly_type, {}))
    values = merged(train, own, {"label_type": "multilabel"})
    inherited = values.get("loss", {}).get("classification")
    if inherited in SOFTMAX_LOSSES and "classification" not in own.get("loss", {}):
        # train's softmax cross-entropy, in its one-output form (the same loss for 2 classes)
        values["loss"] = {**values["loss"], "classification": "bce"}
    try:
        return TrainSettings.model_validate(values)
    except ValidationError as error:
        lines = describe(f"binary.per_type.{anomaly_type} (over train)", TrainSettings, error)
        raise ParameterError("Invalid parameters:\n  " + "\n  ".join(lines)) from None


class TuneParams(Settings):
    """The ``tune`` block."""

    target: str = "main"
    study_name: str | None = None
    storage: str = "sqlite:///data/06_models/tuning.db"
    n_trials: PositiveInt = 12
    direction: Literal["maximize", "minimize"] = "maximize"
    seed: int = 42
    heartbeat_seconds: PositiveInt = 60
    pruner: PrunerSettings = PrunerSettings()
    search_space: dict[str, Dimension] = {
        "optimizer.lr": Dimension(type="float", low=3e-4, high=1e-2, log=True),
        "optimizer.weight_decay": Dimension(type="float", low=1e-6, high=1e-2, log=True),
        "model.fusion": Dimension(type="categorical", choices=["late", "early", "multiscale"]),
        "loss.classification": Dimension(type="categorical", choices=["bce", "focal"]),
        "augmentation.preset": Dimension(type="categorical", choices=["none", "light", "medium"]),
        "model.dropout": Dimension(type="float", low=0.0, high=0.5),
    }
    trial_overrides: dict[str, Any] = {
        "trainer": {"max_epochs": 10, "patience": 4, "progress_bar": False}
    }

    @field_validator("target")
    @classmethod
    def _target(cls, target: str) -> str:
        if target != "main" and not target.startswith("binary."):
            raise ValueError(f"expected 'main' or 'binary.<type>', got {target!r}")
        return target

    def study(self) -> StudySettings:
        """The library's settings; the study is named after the target by default."""
        values = self.model_dump(exclude={"target"})
        values["study_name"] = self.study_name or self.target
        return StudySettings.model_validate(values)


Block = TypeVar("Block", bound=BaseModel)

BLOCKS: dict[str, type[BaseModel]] = {
    "synthetic": SyntheticParams,
    "ingestion": IngestionParams,
    "bbox": BboxParams,
    "pairing": PairingParams,
    "split": SplitParams,
    "train": TrainSettings,
    "cv": CvParams,
    "calibration": CalibrationParams,
    "ood": OODParams,
    "anomaly": AnomalyParams,
    "inference": ServingSettings,
    "export": ExportParams,
    "xai": XaiParams,
    "subview": SubviewParams,
    "binary": BinaryParams,
    "tune": TuneParams,
}


def parse_block(schema: type[Block], values: Mapping[str, Any] | BaseModel | None) -> Block:
    """The block ``values`` as ``schema`` (one of ``BLOCKS``; a block that is already typed
    passes through), or a ``ParameterError`` naming every bad key and value."""
    name = next(k for k, v in BLOCKS.items() if v is schema)
    if isinstance(values, schema):
        return values
    try:
        return schema.model_validate(dict(values or {}))
    except ValidationError as error:
        raise ParameterError(
            "Invalid parameters:\n  " + "\n  ".join(describe(name, schema, error))
        ) from None


def check_parameters(parameters: Mapping[str, Any]) -> None:
    """Parse every known block present; one ``ParameterError`` lists all problems."""
    problems = []
    for name, schema in BLOCKS.items():
        if name not in parameters:
            continue
        try:
            schema.model_validate(dict(parameters[name] or {}))
        except ValidationError as error:
            problems += describe(name, schema, error)
    if not problems and "binary" in parameters:
        binary = BinaryParams.model_validate(dict(parameters["binary"] or {}))
        for anomaly_type in sorted(set(binary.per_type) | {"*"}):
            try:
                binary_train_settings(parameters.get("train") or {}, binary, anomaly_type)
            except ParameterError as error:
                problems += str(error).splitlines()[1:]
    if problems:
        raise ParameterError("Invalid parameters:\n  " + "\n  ".join(problems))


_EXPECTED = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def describe(block: str, schema: type[BaseModel], error: ValidationError) -> list[str]:
    """One line per problem: ``<block>.<key path>: expected ..., got <value>``.

    The alternatives of a value that may take several types (``2`` or ``'auto'``) are
    joined into one line; an unknown key names the closest valid one.
    """
    expected: dict[str, list[str]] = {}
    given: dict[str, Any] = {}
    lines = []
    for item in error.errors():
        path, container = _walk(schema, item["loc"])
        name = ".".join([block, *map(str, path)])
        kind = item["type"]
        if kind == "extra_forbidden":
            lines.append(f"{name}: unknown key{_closest(path[-1], container, block, path)}")
        elif kind == "missing":
            lines.append(f"{name}: missing")
        elif kind == "value_error":
            lines.append(f"{name}: {item['msg'].removeprefix('Value error, ')}")
        else:
            if kind == "literal_error":
                wanted = f"one of {item['ctx']['expected']}"
            else:
                wanted = _EXPECTED.get(kind) or _bound(item["msg"])
            expected.setdefault(name, []).append(wanted)
            given[name] = item["input"]
    lines += [
        f"{name}: expected {' or '.join(w)}, got {given[name]!r}" for name, w in expected.items()
    ]
    return lines


def _bound(message: str) -> str:
    """Pydantic's ``Input should be greater than 0`` as ``a value greater than 0``."""
    wanted = message.removeprefix("Input should be ")
    return f"a value {wanted}" if wanted.startswith(("greater", "less")) else wanted


def _closest(key: str, container: type[BaseModel] | None, block: str, path: list) -> str:
    if container is None:
        return ""
    valid = list(container.model_fields)
    prefix = ".".join([block, *map(str, path[:-1])])
    match = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
    if match:
        return f"; did you mean {prefix}.{match[0]}?"
    return f"; valid keys of {prefix}: {', '.join(valid)}"


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``Model`` or ``Model | None``)."""
    candidates = [annotation]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        candidates = typing.get_args(annotation)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _walk(schema: type[BaseModel], loc: tuple) -> tuple[list, type[BaseModel] | None]:
    """The parameter path of an error location (union-branch tags dropped) and the model
    whose field (or unknown key) the path ends at."""
    path: list = []
    annotation: Any = schema
    container = None
    for part in loc:
        model = _model_in(annotation)
        if model is not None:
            container = model
            path.append(part)
            field = model.model_fields.get(part)
            if field is None:  # an unknown key
                break
            annotation = field.annotation
        elif typing.get_origin(annotation) in (dict, list):
            path.append(part)
            annotation = typing.get_args(annotation)[-1]
        else:  # a union branch's tag, e.g. 'int' or "literal['auto']"
            break
    return path, container
