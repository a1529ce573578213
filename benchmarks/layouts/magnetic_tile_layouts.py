"""Magnetic Tile rearranged into the `folders` and `mvtec` layouts (copies in a folder of
your choosing; the data set's own folder is only read), to run each layout's README
command on real pixels:

    python benchmarks/layouts/magnetic_tile_layouts.py ../shared/datasets/magnetic_tile /tmp/mt
    kedro run --env=folders --params=raw_dir=/tmp/mt/folders
    kedro run --env=mvtec --params=raw_dir=/tmp/mt/mvtec

`folders`: `<Class>/<stem>.jpg` (`good` for MT_Free), masks in `masks/<Class>/<stem>.png`,
and `labels.csv` naming each photo's tile (`group`, recovered from the capture numbers
like `--env=mtd` does) so that no tile spans two splits. `mvtec`: `train/good` holds
60 % of the defect-free tiles, `test/<Class>` and `test/good` the rest, masks in
`ground_truth/<Class>/<stem>_mask.png`; the layout has no part ids, as in MVTec AD.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly_lens.ml.data.pairing import recover_tiles

NAME = re.compile(r"MT_(?P<cls>[^/]+)/Imgs/(?P<view>exp\d+)_num_(?P<num>\d+)\.jpg$")


def photos(source: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(source.rglob("*.jpg")):
        found = NAME.search(path.relative_to(source).as_posix())
        rows.append({"path": path, **found.groupdict()})
    frame = pd.DataFrame(rows)
    frame["tile"] = recover_tiles(frame, "cls", "view", "num", max_gap=300)
    frame["tile"] = frame["tile"].fillna(frame["cls"] + "/" + frame["num"])  # exp0: own tile
    return frame


def copy(image: Path, target: Path, mask_target: Path | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(image, target)
    if mask_target is not None:
        mask_target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image.with_suffix(".png"), mask_target)


def folders(frame: pd.DataFrame, root: Path) -> None:
    rows = []
    for row in frame.itertuples():
        cls = "good" if row.cls == "Free" else row.cls
        stem = Path(row.path).stem
        mask = None if cls == "good" else root / "masks" / cls / f"{stem}.png"
        copy(row.path, root / cls / f"{stem}.jpg", mask)
        rows.append({"path": f"{cls}/{stem}.jpg", "labels": "" if cls == "good" else cls})
        rows[-1]["group"] = row.tile
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)


def mvtec(frame: pd.DataFrame, root: Path, seed: int = 0) -> None:
    free = sorted(frame.loc[frame["cls"] == "Free", "tile"].unique())
    rng = np.random.default_rng(seed)
    train_tiles = set(rng.permutation(free)[: int(0.6 * len(free))])
    for row in frame.itertuples():
        stem = Path(row.path).stem
        if row.cls == "Free":
            part = "train" if row.tile in train_tiles else "test"
            copy(row.path, root / part / "good" / f"{stem}.jpg", None)
        else:
            mask = root / "ground_truth" / row.cls / f"{stem}_mask.png"
            copy(row.path, root / "test" / row.cls / f"{stem}.jpg", mask)


if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    table = photos(source)
    folders(table, target / "folders")
    mvtec(table, target / "mvtec")
    print(f"{len(table)} photos, {table['tile'].nunique()} tiles -> {target}/folders, mvtec")
