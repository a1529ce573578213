"""Small folders of a user's own data, one builder per raw layout."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from anomaly_lens.ml.data import synthetic

# Two defect shapes on a textured background; every sample has its own texture.
DEFECTS = ("Blowhole", "Crack")


def draw(rng: np.random.Generator, defect: str | None, size: int = 64):
    """A grey image and its 0/255 defect mask (all zero for a normal image)."""
    yy, xx = np.mgrid[:size, :size]
    texture = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma=3)
    image = 110 + 400 * texture + 4 * rng.standard_normal((size, size))
    mask = np.zeros((size, size), dtype=bool)
    cy, cx = rng.integers(size // 4, 3 * size // 4, size=2)
    if defect == "Blowhole":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= (size // 8) ** 2
        image[mask] = 20
    elif defect == "Crack":
        mask = (np.abs(yy - cy) <= 1) & (np.abs(xx - cx) <= size // 3)
        image[mask] = 240
    return np.clip(image, 0, 255).astype(np.uint8), (mask * 255).astype(np.uint8)


def _labels(n: int) -> list[str | None]:
    """Half normal, the rest spread over the defect types."""
    return [None if i % 2 == 0 else DEFECTS[(i // 2) % len(DEFECTS)] for i in range(n)]


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def rle_folder(root: Path) -> None:
    """The demo's layout: ``images/<view>/<sample>.png`` plus ``annotations.csv``."""
    data = synthetic.generate(synthetic.SyntheticConfig(n_specimens=8, image_size=48))
    for image_id, pixels in data.images.items():
        _save(root / "images" / f"{image_id}.png", pixels)
    data.annotations.to_csv(root / "annotations.csv", index=False)


def class_folders(root: Path, tiles: int = 24) -> None:
    """Magnetic Tile naming: ``MT_<Class>/Imgs/exp<k>_num_<n>.jpg`` + ``.png`` masks."""
    rng = np.random.default_rng(0)
    number = 1000
    for defect in _labels(tiles):
        folder = root / f"MT_{defect or 'Free'}" / "Imgs"
        for view in (1, 2):
            image, mask = draw(rng, defect)
            _save(folder / f"exp{view}_num_{number}.jpg", image)
            _save(folder / f"exp{view}_num_{number}.png", mask)
            number += 20
        number += 1000


RESHOT = "reshot_of_part0_0"


def voc_folder(root: Path, images: int = 40) -> None:
    """``images/<part>_<i>.jpg`` and ``annotations/<part>_<i>.xml`` (Pascal VOC boxes).

    One more image, ``RESHOT``, is ``part0_0`` shot again (a little noise).
    """
    rng = np.random.default_rng(1)
    for i, defect in enumerate(_labels(images)):
        stem = f"part{i // 2}_{i}"
        image, mask = draw(rng, defect)
        _save(root / "images" / f"{stem}.jpg", image)
        objects = ""
        if defect:
            ys, xs = np.nonzero(mask)
            objects = (
                f"<object><name>{defect}</name><bndbox><xmin>{xs.min() + 1}</xmin>"
                f"<ymin>{ys.min() + 1}</ymin><xmax>{xs.max() + 1}</xmax>"
                f"<ymax>{ys.max() + 1}</ymax></bndbox></object>"
            )
        xml = (
            f"<annotation><filename>{stem}.jpg</filename><size><width>{image.shape[1]}"
            f"</width><height>{image.shape[0]}</height><depth>1</depth></size>"
            f"{objects}</annotation>"
        )
        path = root / "annotations" / f"{stem}.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(xml)
        if i == 0:  # the same part shot again: it must not land in another split
            reshot = np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
            _save(root / "images" / f"{RESHOT}.jpg", reshot)
            path.with_stem(RESHOT).write_text(xml.replace(stem, RESHOT))


def manifest_csv_folder(root: Path, images: int = 40) -> None:
    """``images/`` with masks beside the images, listed in ``manifest.csv``."""
    rng = np.random.default_rng(2)
    rows = ["path,labels,mask_path,group"]
    for i, defect in enumerate(_labels(images)):
        image, mask = draw(rng, defect)
        _save(root / "images" / "photos" / f"img{i}.png", image)
        mask_path = ""
        if defect:
            _save(root / "images" / "masks" / f"img{i}.png", mask)
            mask_path = f"masks/img{i}.png"
        rows.append(f"photos/img{i}.png,{defect or ''},{mask_path},part{i // 2}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")


def folders_folder(root: Path, images: int = 40) -> None:
    """``<class>/<stem>.png`` (``good``: defect-free), masks in ``masks/<class>/``, and
    ``labels.csv`` naming each image's part (``group``)."""
    rng = np.random.default_rng(3)
    rows = ["path,labels,group"]
    for i, defect in enumerate(_labels(images)):
        image, mask = draw(rng, defect)
        folder = defect or "good"
        _save(root / folder / f"img{i}.png", image)
        if defect:
            _save(root / "masks" / folder / f"img{i}.png", mask)
        rows.append(f"{folder}/img{i}.png,{defect or ''},part{i // 2}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


def mvtec_folder(root: Path, images: int = 40) -> None:
    """MVTec AD: ``train/good``, ``test/<type>`` and ``test/good``, ``ground_truth``."""
    rng = np.random.default_rng(4)
    for i, defect in enumerate(_labels(images)):
        image, mask = draw(rng, defect)
        part = "train" if defect is None and i % 4 == 0 else "test"
        _save(root / part / (defect or "good") / f"{i:03d}.png", image)
        if defect:
            _save(root / "ground_truth" / defect / f"{i:03d}_mask.png", mask)


BUILDERS = {
    "synthetic": rle_folder,
    "class_folders": class_folders,
    "voc": voc_folder,
    "manifest_csv": manifest_csv_folder,
    "folders": folders_folder,
    "mvtec": mvtec_folder,
}


def fingerprint(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with the sha256 of its bytes."""
    return {
        str(path.relative_to(root)): (
            "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        )
        for path in sorted(root.rglob("*"))
    }
