"""Parameter blocks are typed: every env parses, bad values and typos are named before a run."""

from __future__ import annotations

import mlflow
import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.session import KedroSession

from anomaly_lens.context import anchored
from anomaly_lens.ml.training.settings import TrainSettings
from anomaly_lens.parameters import BLOCKS, ParameterError, check_parameters, parse_block
from anomaly_lens.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT, base_parameters

ENVS = sorted(p.name for p in (PROJECT_ROOT / "conf").iterdir() if p.is_dir() and p.name != "base")


@pytest.mark.parametrize("env", ENVS)
def test_every_env_parses(env):
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)
    parameters = loader["parameters"]
    check_parameters(parameters)
    assert set(BLOCKS) <= set(parameters)


def test_schema_defaults_are_the_documented_base_values():
    """The typed defaults (used when the library is called without Kedro) are the values
    conf/base documents; only the data-set-specific checkpoint folder and study storage
    differ."""
    base = base_parameters()
    for name, schema in BLOCKS.items():
        parsed, default = parse_block(schema, base[name]).model_dump(), schema().model_dump()
        if name == "train":
            parsed["trainer"].pop("checkpoint_dir"), default["trainer"].pop("checkpoint_dir")
        if name == "tune":  # per data set: the env's dataset name is in the path
            parsed.pop("storage"), default.pop("storage")
        assert parsed == default, name


def problems(block: str, **changes) -> str:
    values = base_parameters()[block]
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = values
        for parent in parents:
            target = target[parent]
        target[key] = value
    with pytest.raises(ParameterError) as error:
        parse_block(BLOCKS[block], values)
    return str(error.value)


@pytest.mark.parametrize(
    ("block", "changes", "message"),
    [
        (
            "train",
            {"image_size": "abc"},
            "train.image_size: expected an integer or one of 'auto', got 'abc'",
        ),
        (
            "train",
            {"image_sise": 96},
            "train.image_sise: unknown key; did you mean train.image_size?",
        ),
        (
            "train",
            {"trainer__max_epcohs": 3},
            "train.trainer.max_epcohs: unknown key; did you mean train.trainer.max_epochs?",
        ),
        ("train", {"per_view": "perhaps"}, "train.per_view: expected true or false, got 'perhaps'"),
        (
            "train",
            {"optimizer__lr": 0},
            "train.optimizer.lr: expected a value greater than 0, got 0",
        ),
        (
            "train",
            {"model__fusion": "lat"},
            "train.model.fusion: expected one of ['cross_attention',",
        ),
        ("train", {"model__backbone": "resnet19"}, "'resnet19' is not a timm model"),
        ("train", {"trainer__devices": "x"}, "expected an integer or one of 'auto', got 'x'"),
        ("split", {"ratios": [0.5, 0.5]}, "split.ratios: expected three shares summing to 1"),
        ("split", {"folds": 5}, "split.folds: unknown key; valid keys of split: ratios"),
        ("ingestion", {"layout": "tiff"}, "ingestion.layout: expected one of 'class_folders'"),
        ("ingestion", {"filename_pattern": "(?P<x"}, "not a regular expression"),
        ("pairing", {"group": 3}, "pairing.group: expected a string or a list, got 3"),
        ("cv", {"baseline_backbone": "resnet18"}, "cv.baseline_backbone: expected one of"),
        ("cv", {"folds": 2}, "cv.folds: expected at least 3 (one to test, one for early"),
        (
            "cv",
            {"folds": 1, "validation": "none"},
            "cv.folds: expected at least 2 (one to test, the rest to train), got 1",
        ),
        (
            "synthetic",
            {"anomaly_types__plume__rar": True},
            "synthetic.anomaly_types.plume.rar: unknown key; did you mean "
            "synthetic.anomaly_types.plume.rare?",
        ),
        ("synthetic", {"image_size": 16}, "synthetic: image_size must be at least 32 pixels"),
    ],
)
def test_a_bad_value_is_named_with_what_was_expected(block, changes, message):
    assert message in problems(block, **changes)


def test_a_key_without_a_close_match_lists_the_valid_ones():
    assert (
        "train.qqq: unknown key; valid keys of train: image_size, max_image_size, views,"
        in problems("train", qqq=1)
    )


def test_all_problems_of_all_blocks_are_reported_together():
    parameters = base_parameters()
    parameters["train"]["image_size"] = "abc"
    parameters["split"]["seed"] = "x"
    with pytest.raises(ParameterError) as error:
        check_parameters(parameters)
    assert "train.image_size" in str(error.value) and "split.seed" in str(error.value)


def test_typed_settings_are_frozen():
    with pytest.raises(ValueError, match="frozen"):
        TrainSettings().image_size = 32


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"train": {"image_size": "abc"}},
            "train.image_size: expected an integer or one of 'auto', got 'abc'",
        ),
        ({"train": {"image_sise": 96}}, "did you mean train.image_size?"),
    ],
)
def test_a_run_with_bad_parameters_stops_before_any_node(project, params, message):
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        with pytest.raises(ParameterError, match=message):
            session.run(pipeline_names=["__default__"])
    assert not (project / "data").exists()  # not even the synthetic data was written
    assert mlflow.active_run() is None  # no tracking run was opened (and left open)


def test_the_folders_the_project_writes_are_anchored_at_the_project(project):
    """A session started from another working directory (here the repository's) writes its
    checkpoints and tuning database into its own project, as its catalog does."""
    with KedroSession.create(project_path=project) as session:
        params = session.load_context().params
    models = (project / "data/06_models/synthetic").as_posix()
    assert params["train"]["trainer"]["checkpoint_dir"] == f"{models}/checkpoints"
    assert params["tune"]["storage"] == f"sqlite:///{models}/tuning.db"
    kept = {
        "a": {"checkpoint_dir": "/abs/ckpt"},
        "b": {"storage": "postgresql://host/db"},
        "c": {"storage": "sqlite:///:memory:"},
        "d": {"path": "relative/kept"},
    }
    assert anchored(kept, project) == kept
