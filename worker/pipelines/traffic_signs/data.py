"""GTSRB data: reading the folder layout, checking an upload, and the chapter's preprocessing.

Two layouts are read, found anywhere inside the given folder (an unzipped upload usually has a
`GTSRB/Final_Training/Images/` prefix):
- training: class folders named by the zero-padded class id (`00000` .. `00042`), each holding
  images (.ppm, .png, .jpg, .jpeg) and optionally `GT-000NN.csv` (`;`-separated: Filename; Width;
  Height; Roi.X1; Roi.Y1; Roi.X2; Roi.Y2; ClassId);
- test: a folder of images with the labelled `GT-final_test.csv` (same columns).
Any subset of the 43 classes is accepted. Samples come in class order, as the book reads them, so
the first sample is of the lowest class.

Preprocessing is the book's, in one function shared by training and prediction: RGB scaled to
0..1, CIELAB's L channel (0..100, not normalised further), resized to 32x32 with skimage
(`mode='reflect'`), float32 NHWC with one channel.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from worker.pipelines.traffic_signs.labels import N_CLASSES
from worker.pipelines.traffic_signs.synthetic import build_synthetic_signs

__all__ = [
    "Sample", "GtsrbListing", "GtsrbArrays", "list_gtsrb", "inspect_gtsrb", "load_gtsrb",
    "load_samples", "read_image", "preprocess", "preprocess_bytes", "build_synthetic_signs",
]  # fmt: skip

IMAGE_SIZE = (32, 32)  # book: RESIZED_IMAGE
COLOR_MODES = ("lab_l", "yuv_y")
# skimage's default for anti-aliasing when downsampling changed across versions (the book's 0.13
# had none); pinned so training and prediction agree, and on so that large photos do not alias.
ANTI_ALIASING = True
# Larger images are shrunk with Pillow before the colour conversion: GTSRB images are at most about
# 250 px (unaffected), while a phone photo would make rgb2lab take seconds.
MAX_DECODE_SIDE = 256
IMAGE_SUFFIXES = (".ppm", ".png", ".jpg", ".jpeg")
TEST_CSV = "GT-final_test.csv"
ROI_COLUMNS = ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2")
CSV_COLUMNS = ("Filename", "Width", "Height", *ROI_COLUMNS, "ClassId")
_CLASS_FOLDER = re.compile(r"\d{5}")
# What Pillow raises for files it cannot decode, depending on the format and how they are broken.
_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)

ColorMode = Literal["lab_l", "yuv_y"]
Roi = tuple[int, int, int, int]


@dataclass(frozen=True)
class Sample:
    path: Path
    name: str  # relative to the listed folder, for messages
    class_id: int
    roi: Roi | None  # x1, y1, x2, y2 with x2, y2 exclusive; None without a GT csv row


@dataclass(frozen=True)
class GtsrbListing:
    layout: Literal["training", "test"]
    images_dir: str  # relative to the listed folder
    samples: list[Sample]


@dataclass(frozen=True)
class GtsrbArrays:
    images: np.ndarray  # (N, 32, 32, 1) float32
    labels: np.ndarray  # (N,) int64 class ids


# Listing ---------------------------------------------------------------------------------------


def list_gtsrb(folder: Path) -> GtsrbListing:
    """Every sample in `folder`, in class order; ValueError naming the folder or file that is wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder.name}: not a folder")
    class_dirs = sorted(
        path
        for path in folder.rglob("*")
        if path.is_dir() and _CLASS_FOLDER.fullmatch(path.name) and _visible(path, folder)
    )
    if class_dirs:
        return _list_training(folder, class_dirs)
    test_csvs = sorted(path for path in folder.rglob(TEST_CSV) if _visible(path, folder))
    if len(test_csvs) > 1:
        raise ValueError(f"more than one {TEST_CSV}: {_name(test_csvs[0], folder)} and {_name(test_csvs[1], folder)}")
    if test_csvs:
        return _list_test(folder, test_csvs[0])
    raise ValueError(f"no class folders named 00000..{N_CLASSES - 1:05d} and no {TEST_CSV} found")


def _list_training(root: Path, class_dirs: list[Path]) -> GtsrbListing:
    parents = sorted({path.parent for path in class_dirs})
    if len(parents) > 1:
        first, second = _name(parents[0], root), _name(parents[1], root)
        raise ValueError(f"class folders found in more than one place: {first} and {second}")
    samples: list[Sample] = []
    for class_dir in class_dirs:
        class_id = int(class_dir.name)
        if class_id >= N_CLASSES:
            raise ValueError(f"{_name(class_dir, root)}: class id {class_id} is out of range 0..{N_CLASSES - 1}")
        images = sorted(
            path
            for path in class_dir.iterdir()
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and _visible(path, root)
        )
        if not images:
            raise ValueError(f"{_name(class_dir, root)}: no images ({', '.join(IMAGE_SUFFIXES)})")
        rows: dict[str, tuple[Roi, int]] = {}
        for csv_path in sorted(class_dir.glob("GT-*.csv")):
            rows.update(_read_gt_csv(csv_path, root))
        for image in images:
            roi, csv_class = rows.get(image.name, (None, class_id))
            if csv_class != class_id:
                message = f"the GT csv says ClassId {csv_class}, the folder says {class_id}"
                raise ValueError(f"{_name(image, root)}: {message}")
            samples.append(Sample(image, _name(image, root), class_id, roi))
    return GtsrbListing("training", _name(parents[0], root), samples)


def _list_test(root: Path, csv_path: Path) -> GtsrbListing:
    samples = []
    for filename, (roi, class_id) in _read_gt_csv(csv_path, root).items():
        image = csv_path.parent / filename
        if not image.is_file():
            raise ValueError(f"{_name(csv_path, root)}: lists {filename}, which is missing")
        if not 0 <= class_id < N_CLASSES:
            raise ValueError(f"{_name(image, root)}: class id {class_id} is out of range 0..{N_CLASSES - 1}")
        samples.append(Sample(image, _name(image, root), class_id, roi))
    samples.sort(key=lambda sample: (sample.class_id, sample.name))
    return GtsrbListing("test", _name(csv_path.parent, root), samples)


def _read_gt_csv(path: Path, root: Path) -> dict[str, tuple[Roi, int]]:
    """Filename -> (ROI, ClassId) from a GTSRB ground-truth csv."""
    name = _name(path, root)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=";")
        missing = [column for column in CSV_COLUMNS if column not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{name}: missing column(s) {', '.join(missing)} (expected {';'.join(CSV_COLUMNS)})")
        rows = {}
        for line, row in enumerate(reader, start=2):
            try:
                roi = tuple(int(row[column]) for column in ROI_COLUMNS)
                rows[row["Filename"]] = (roi, int(row["ClassId"]))
            except (TypeError, ValueError):
                raise ValueError(f"{name}: line {line}: Roi.* and ClassId must be integers") from None
    return rows


def _visible(path: Path, root: Path) -> bool:
    # Zips made on macOS carry __MACOSX/ and ._* copies that are not images.
    return not any(part.startswith((".", "__MACOSX")) for part in path.relative_to(root).parts)


def _name(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() or "."


# Checking an upload ----------------------------------------------------------------------------


def inspect_gtsrb(folder: Path) -> dict:
    """Statistics of a GTSRB upload (classes, images per class, sizes); ValueError if unusable.

    Every image is decoded, so an unreadable file is reported before a run trips over it.
    """
    listing = list_gtsrb(folder)
    widths, heights = [], []
    for sample in listing.samples:
        try:
            with Image.open(sample.path) as image:
                image.load()
                widths.append(image.width)
                heights.append(image.height)
        except _IMAGE_ERRORS:
            raise ValueError(f"{sample.name}: not a readable image") from None
    counts = Counter(sample.class_id for sample in listing.samples)
    return {
        "layout": listing.layout,
        "images_dir": listing.images_dir,
        "classes": len(counts),
        "class_ids": sorted(counts),
        "images": len(listing.samples),
        "images_per_class": {str(class_id): counts[class_id] for class_id in sorted(counts)},
        "min_images_per_class": min(counts.values()),
        "max_images_per_class": max(counts.values()),
        "width": {"min": min(widths), "max": max(widths)},
        "height": {"min": min(heights), "max": max(heights)},
        "images_with_roi": sum(sample.roi is not None for sample in listing.samples),
    }


# Preprocessing ---------------------------------------------------------------------------------


def read_image(source: Path | bytes, *, name: str = "file", roi: Roi | None = None) -> np.ndarray:
    """An image file (path or bytes, any format Pillow reads) as RGB uint8 (H, W, 3), cropped to `roi`."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.load()
            image = ImageOps.exif_transpose(image).convert("RGB")  # phone photos carry a rotation
    except _IMAGE_ERRORS:
        raise ValueError(f"{name}: not an image Pillow can read") from None
    if roi is not None:
        image = _crop(image, roi)
    if max(image.size) > MAX_DECODE_SIDE:
        image.thumbnail((MAX_DECODE_SIDE, MAX_DECODE_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(image)


def preprocess(rgb: np.ndarray, *, color_mode: ColorMode = "lab_l") -> np.ndarray:
    """The book's preprocessing of one RGB uint8 image: a (32, 32) float32 luminance image."""
    from skimage.color import rgb2lab, rgb2yuv
    from skimage.transform import resize

    scaled = rgb.astype(np.float32) / 255.0
    if color_mode == "lab_l":
        channel = rgb2lab(scaled)[:, :, 0]  # L in 0..100
    elif color_mode == "yuv_y":
        # The book's alternative. Y is 0..1; scaled to L's 0..100 so the network sees the same range.
        channel = rgb2yuv(scaled)[:, :, 0] * 100.0
    else:
        raise ValueError(f"color_mode: expected one of {', '.join(COLOR_MODES)}, got {color_mode!r}")
    return resize(channel, IMAGE_SIZE, mode="reflect", anti_aliasing=ANTI_ALIASING).astype(np.float32)


def preprocess_bytes(data: bytes, *, color_mode: ColorMode = "lab_l", name: str = "file") -> np.ndarray:
    """Image file bytes to the model's input for one image: (32, 32, 1) float32."""
    return preprocess(read_image(data, name=name), color_mode=color_mode)[:, :, np.newaxis]


def load_samples(samples: Iterable[Sample], *, color_mode: ColorMode = "lab_l", roi_crop: bool = False) -> np.ndarray:
    """Preprocess samples into a (N, 32, 32, 1) float32 batch, cropping to their ROI if asked."""
    images = []
    for sample in samples:
        rgb = read_image(sample.path, name=sample.name, roi=sample.roi if roi_crop else None)
        images.append(preprocess(rgb, color_mode=color_mode))
    if not images:
        return np.zeros((0, *IMAGE_SIZE, 1), dtype=np.float32)
    return np.stack(images)[:, :, :, np.newaxis]


def _crop(image: Image.Image, roi: Roi) -> Image.Image:
    x1, y1, x2, y2 = max(0, roi[0]), max(0, roi[1]), min(image.width, roi[2]), min(image.height, roi[3])
    if x2 - x1 < 2 or y2 - y1 < 2:  # a broken ROI: keep the whole image rather than fail the run
        return image
    return image.crop((x1, y1, x2, y2))


def load_gtsrb(folder: Path, *, color_mode: ColorMode = "lab_l", roi_crop: bool = False) -> GtsrbArrays:
    """All of a GTSRB folder, preprocessed: images (N, 32, 32, 1) float32 and class ids (N,)."""
    samples = list_gtsrb(folder).samples
    labels = np.array([sample.class_id for sample in samples], dtype=np.int64)
    return GtsrbArrays(load_samples(samples, color_mode=color_mode, roi_crop=roi_crop), labels)
