"""A user's own data: every README layout runs end to end and its folder stays as it was."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.io.core import DatasetError
from omegaconf import OmegaConf

from tests.conftest import PROJECT_ROOT
from tests.user_folders import BUILDERS, DEFECTS, RESHOT, fingerprint

USER_ENVS = ("rle", "mtd", "voc", "manifest_csv", "folders", "mvtec")

# Training kept to seconds; merged over each env's own train parameters.
SMALL_TRAINING = {
    "train": {
        "image_size": 32,
        "bootstrap_rounds": 10,
        "baseline_trees": 20,
        "trainer": {"max_epochs": 1, "batch_size": 8, "progress_bar": False},
    }
}


def readme_commands() -> dict[str, str]:
    """Layout -> the command of its row in the README's "Your own data" table."""
    section = PROJECT_ROOT.joinpath("README.md").read_text().split("## Your own data")[1]
    rows = re.findall(r"^\| `(\w+)` +\| `([^`]+)`", section, flags=re.MULTILINE)
    return dict(rows)


# The binary models of the main command (one per type) kept as short.
# Short binary models, few OOD items, two cheap attributions.
SMALL_REST = {
    "binary": {"common": {"trainer": {"max_epochs": 1}}},
    "ood": {"max_items": 8},
    "xai": {"max_samples": 4, "attribution": {"methods": ["saliency", "grad_cam"]}},
}


def make_training_small(project: Path, env: str) -> None:
    """Merge the small settings into the env, each block into the file that has it (a key
    may live in one file of an env only)."""
    files = sorted((project / "conf" / env).glob("parameters*.yml"))
    rest = SMALL_REST
    if env == "mtd":  # one binary model, not one per configured class (the folder has two)
        one_type = {"binary": {"types": [DEFECTS[-1]]}}
        rest = OmegaConf.to_container(OmegaConf.merge(rest, one_type))
    for key, small in {**SMALL_TRAINING, **rest}.items():
        holder = [f for f in files if key in (OmegaConf.load(f) or {})]
        path = holder[0] if holder else project / "conf" / env / f"parameters_{key}.yml"
        current = OmegaConf.load(path) if path.exists() else OmegaConf.create()
        path.write_text(OmegaConf.to_yaml(OmegaConf.merge(current, {key: small})))


def _voc_images(folder: Path, new: Path) -> Path:
    shutil.copytree(folder / "images", new / "images")
    return new


def _manifest_images(folder: Path, new: Path) -> Path:
    shutil.copytree(folder / "images" / "photos", new / "images" / "photos")
    return new


def _flat_images(folder: Path, new: Path) -> Path:
    """Every image of the class folders in one folder without subfolders: no labels."""
    new.mkdir()
    skipped = ("masks", "ground_truth")
    for path in folder.rglob("*.png"):
        if not set(path.relative_to(folder).parts) & set(skipped):
            shutil.copyfile(path, new / "_".join(path.relative_to(folder).parts))
    return new


# Layout -> a folder of new images in that layout, without annotations (the training
# folder's images, copied).
NEW_IMAGES = {
    "voc": _voc_images,
    "manifest_csv": _manifest_images,
    "folders": _flat_images,
    "mvtec": _flat_images,
}


def _predicts_new_images(project: Path, env: str, dataset: str, new: Path) -> None:
    """``inference`` in the env reads the new folder in the env's layout (not the demo's),
    predicts every image and leaves the folder as it was."""
    before, n_images = fingerprint(new), sum(1 for p in new.rglob("*") if p.is_file())
    kedro = str(Path(sys.executable).with_name("kedro"))
    command = [kedro, "run", f"--env={env}", "--pipelines=inference"]
    command.append(f"--params=inference.input_dir={new}")
    result = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    predictions = pd.read_parquet(
        next((project / "data/07_model_output" / dataset / "predictions.parquet").glob("*/*"))
    )
    assert len(predictions) == n_images and predictions["prob_" + DEFECTS[0]].notna().all()
    assert not any(c.startswith("target_") for c in predictions.columns)  # no labels given
    assert fingerprint(new) == before


def test_readme_shows_one_command_per_layout():
    commands = readme_commands()
    assert set(commands) == set(BUILDERS)
    for command in commands.values():
        assert "--pipelines" not in command and "PATH" in command


@pytest.mark.slow
@pytest.mark.parametrize("layout", sorted(BUILDERS))
def test_readme_command_trains_on_the_folder_and_leaves_it_as_it_was(layout, project, tmp_path):
    folder = tmp_path / "my data"
    BUILDERS[layout](folder)
    before = fingerprint(folder)
    command = shlex.split(readme_commands()[layout].replace("PATH", shlex.quote(str(folder))))
    env = re.search(r"--env=(\w+)", " ".join(command)).group(1)
    make_training_small(project, env)
    command[0] = str(Path(sys.executable).with_name("kedro"))
    result = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    assert fingerprint(folder) == before
    assert not (project / "data" / "01_raw" / "demo").exists()  # nothing was generated
    dataset = yaml.safe_load((project / "conf" / env / "globals.yml").read_text())["dataset"]
    reports = project / "data" / "08_reporting" / dataset
    metrics = json.loads(next((reports / "evaluation_metrics.json").glob("*/*")).read_text())
    assert metrics["test"]["n_samples"] > 0
    if env == "mtd":  # per-view models (and binary.types): compared per tile and per photo
        comparison = json.loads(next((reports / "binary_comparison.json").glob("*/*")).read_text())
        assert comparison["test_samples"] == metrics["test"]["per_sample"]["n_samples"]
        assert comparison["per_item"]["test_items"] == metrics["test"]["n_samples"]
    if layout in NEW_IMAGES:  # new images in the same layout, without labels
        _predicts_new_images(project, env, dataset, NEW_IMAGES[layout](folder, tmp_path / "new"))
    if layout == "voc":  # a re-shot image joins its original's group, and nothing else does
        splits = pd.read_parquet(
            next((project / "data/05_model_input/voc/splits.parquet").glob("*/*"))
        )
        unit_of = splits.set_index("sample_id")["unit_id"]
        assert unit_of[RESHOT] == unit_of["part0_0"]
        assert splits["unit_id"].nunique() == len(splits) - 1


@pytest.mark.parametrize("env", USER_ENVS)
def test_user_data_entries_are_read_only(env, project, tmp_path):
    with KedroSession.create(project_path=project, env=env) as session:
        catalog = session.load_context().catalog
    for entry in ("raw_images", "raw_annotations"):
        with pytest.raises(DatasetError, match=f"'{entry}' is read-only"):
            catalog.save(entry, {})


def test_no_pipeline_writes_the_raw_entries(project):
    with KedroSession.create(project_path=project, env="voc") as session:
        session.load_context()
        outputs = set().union(*(p.all_outputs() for p in pipelines.values()))
    assert not {"raw_images", "raw_annotations"} & outputs


def test_default_run_generates_only_on_the_demo_env(project):
    def default_pipeline(env):
        with KedroSession.create(project_path=project, env=env) as session:
            session.load_context()
            return pipelines["__default__"]

    demo = default_pipeline(None)
    assert "generate_raw_dataset" in {n.name for n in demo.nodes}
    assert {"demo_images", "demo_annotations"} <= demo.all_inputs()
    assert "raw_images" not in demo.all_inputs()
    for env in USER_ENVS:
        own = default_pipeline(env)
        assert "generate_raw_dataset" not in {n.name for n in own.nodes}
        assert {"raw_images", "raw_annotations"} <= own.inputs()
        assert own.nodes[0].name == "collect_records"
    # and back: a later session on the demo env gets the generating pipeline again
    assert "generate_raw_dataset" in {n.name for n in default_pipeline(None).nodes}


@pytest.mark.slow
def test_synthetic_pipeline_by_name_writes_only_its_own_folder(project, tmp_path):
    folder = tmp_path / "tiles"
    BUILDERS["class_folders"](folder, tiles=4)
    before = fingerprint(folder)
    runtime = {"raw_dir": str(folder), "synthetic": {"n_specimens": 2, "image_size": 32}}
    with KedroSession.create(project_path=project, env="mtd", runtime_params=runtime) as session:
        session.run(pipeline_names=["synthetic", "ingestion"])
    assert fingerprint(folder) == before
    assert len(list((project / "data/01_raw/demo/images").rglob("*.png"))) > 0
    manifest = pd.read_parquet(
        next((project / "data/02_intermediate/magnetic_tile/manifest.parquet").glob("*/*"))
    )
    assert len(manifest) == 8  # the user's 4 tiles x 2 views, none of the generated images
