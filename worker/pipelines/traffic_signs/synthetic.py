"""The built-in offline dataset `synthetic_signs`: GTSRB-like traffic signs drawn with Pillow.

GTSRB cannot be downloaded at run time, so the default dataset is generated: all 43 classes, drawn
as the real sign shapes (red-ring speed limits with their numbers, red warning triangles with a
pictogram, blue mandatory discs with arrows, stop octagon, yield, priority diamond, grey "end of"
signs, ...), then photographed badly the way GTSRB's frames are: perspective, scale, position,
dark or washed-out lighting, blur, low resolution, noise, background clutter from the photos that
ship with scikit-image and scikit-learn, a pole, a neighbouring sign, partial occlusion.

The files are written in the GTSRB training layout (`Final_Training/Images/000NN/*.ppm` and
`GT-000NN.csv` with each sign's ROI), so the real loader reads them. The same (seed,
images_per_class, generator version) always gives byte-identical files; each class draws from its
own random stream, so classes do not depend on each other. The clean sign drawings are in signs.py.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from worker.pipelines.traffic_signs.labels import N_CLASSES
from worker.pipelines.traffic_signs.signs import VARIANTS, template

# Bump whenever the drawing changes: it is part of the cache key, so old caches are never reused.
GENERATOR_VERSION = 1
DATASET_FILE = "dataset.json"
MANIFEST_FILE = "MANIFEST.sha256"
IMAGES_SUBDIR = Path("Final_Training") / "Images"
CSV_HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"


# Building and caching --------------------------------------------------------------------------


def build_synthetic_signs(cache_root: Path, *, seed: int, images_per_class: int) -> tuple[Path, str]:
    """The dataset folder for (seed, images_per_class) under `cache_root`, and its content sha256.

    Generated once into a temporary folder and renamed into place, so concurrent builders never
    see a half-written dataset; later calls read the stored hash and return at once.
    """
    if images_per_class <= 0:
        raise ValueError(f"images_per_class: must be positive, got {images_per_class}")
    cache_root = Path(cache_root)
    folder = cache_root / f"synthetic_signs-v{GENERATOR_VERSION}-seed{seed}-n{images_per_class}"
    if (folder / DATASET_FILE).exists():
        return folder, json.loads((folder / DATASET_FILE).read_text())["sha256"]

    cache_root.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=cache_root))
    try:
        digest = _write_dataset(temporary, seed=seed, images_per_class=images_per_class)
        os.rename(temporary, folder)
    except OSError:
        if not (folder / DATASET_FILE).exists():
            raise
        # Another process finished the same dataset first; its files are identical to ours.
        shutil.rmtree(temporary, ignore_errors=True)
        digest = json.loads((folder / DATASET_FILE).read_text())["sha256"]
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return folder, digest


def _write_dataset(root: Path, *, seed: int, images_per_class: int) -> str:
    file_hashes: dict[str, str] = {}

    def write(relative: Path, payload: bytes) -> None:
        (root / relative).write_bytes(payload)
        file_hashes[relative.as_posix()] = hashlib.sha256(payload).hexdigest()

    for class_id in range(N_CLASSES):
        class_dir = IMAGES_SUBDIR / f"{class_id:05d}"
        (root / class_dir).mkdir(parents=True)
        rng = np.random.default_rng([seed, class_id])
        csv_rows = [CSV_HEADER]
        for index in range(images_per_class):
            image, (x1, y1, x2, y2) = render_sign(class_id, rng)
            name = f"{index:05d}_00000.ppm"  # each image is its own "track": no near-duplicates
            buffer = _ppm_bytes(image)
            write(class_dir / name, buffer)
            csv_rows.append(f"{name};{image.width};{image.height};{x1};{y1};{x2};{y2};{class_id}\n")
        write(class_dir / f"GT-{class_id:05d}.csv", "".join(csv_rows).encode())

    manifest = "".join(f"{file_hashes[path]}  {path}\n" for path in sorted(file_hashes))
    (root / MANIFEST_FILE).write_text(manifest)
    digest = hashlib.sha256(manifest.encode()).hexdigest()
    description = {
        "name": "synthetic_signs",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "images_per_class": images_per_class,
        "classes": N_CLASSES,
        "images": N_CLASSES * images_per_class,
        "sha256": digest,
    }
    (root / DATASET_FILE).write_text(json.dumps(description, indent=2) + "\n")
    return digest


def _ppm_bytes(image: Image.Image) -> bytes:
    header = f"P6\n{image.width} {image.height}\n255\n".encode()
    return header + image.tobytes()


# One photographed sign ---------------------------------------------------------------------------


def render_sign(class_id: int, rng: np.random.Generator) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """One RGB image of a sign of `class_id` and its ROI (x1, y1, x2, y2), x2/y2 exclusive."""
    width = int(rng.integers(30, 91))
    height = int(np.clip(width + rng.integers(-4, 5), 30, 90))
    canvas = _background(rng, width, height).convert("RGBA")
    # GTSRB frames keep a border of about 10% of the sign around it (at least 5 px).
    side = max(12, round(min(width, height) * rng.uniform(0.66, 0.9)))
    center = (width / 2 + rng.normal(0, 0.04) * width, height / 2 + rng.normal(0, 0.04) * height)

    draw = ImageDraw.Draw(canvas)
    if rng.random() < 0.35:  # the pole the sign is mounted on
        pole = side * rng.uniform(0.05, 0.1)
        tone = int(rng.integers(70, 180))
        draw.rectangle((center[0] - pole, center[1], center[0] + pole, height), fill=(tone, tone, tone + 5))
    if rng.random() < 0.12:  # part of another sign above or below, as in many GTSRB frames
        other = template(int(rng.integers(N_CLASSES)), int(rng.integers(VARIANTS)))
        offset = side * rng.uniform(0.85, 1.05) * (1 if rng.random() < 0.5 else -1)
        neighbour = other.resize((side, side), Image.Resampling.BILINEAR)
        canvas.alpha_composite(neighbour, (round(center[0] - side / 2), round(center[1] + offset - side / 2)))

    sign = template(class_id, int(rng.integers(VARIANTS))).resize((side, side), Image.Resampling.LANCZOS)
    corners = _jittered_square(center, side, rng)
    coefficients = _perspective_coefficients(corners, [(0, 0), (side, 0), (side, side), (0, side)])
    warped = sign.transform(canvas.size, Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BILINEAR)
    roi = warped.getchannel("A").point(lambda alpha: 255 if alpha > 96 else 0).getbbox()
    canvas.alpha_composite(warped)
    if rng.random() < 0.15:
        _occlude(ImageDraw.Draw(canvas), center, side, rng)

    image = canvas.convert("RGB")
    if rng.random() < 0.3:  # a far-away sign upscaled by the camera: blocky, soft
        factor = rng.uniform(0.35, 0.75)
        small = image.resize((max(8, round(width * factor)), max(8, round(height * factor))), Image.Resampling.BILINEAR)
        image = small.resize((width, height), Image.Resampling.BILINEAR)
    blur = rng.uniform(0, 1.1) * width / 60
    if blur > 0.25:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    image = _light(np.asarray(image, dtype=np.float32), rng)
    x1, y1, x2, y2 = roi or (0, 0, width, height)
    return Image.fromarray(image), (x1, y1, x2, y2)


def _jittered_square(center, side, rng) -> list[tuple[float, float]]:
    """The corners of the sign in the photo: rotated a little, each corner moved (perspective)."""
    angle = math.radians(rng.normal(0, 5))
    cos, sin = math.cos(angle), math.sin(angle)
    corners = []
    for dx, dy in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)):
        jx, jy = rng.normal(0, 0.05, 2)
        x, y = (dx + jx) * side, (dy + jy) * side
        corners.append((center[0] + x * cos - y * sin, center[1] + x * sin + y * cos))
    return corners


def _perspective_coefficients(destination, source) -> tuple[float, ...]:
    """Pillow's PERSPECTIVE data mapping output points `destination` back to input points `source`."""
    rows, values = [], []
    for (x, y), (u, v) in zip(destination, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        values.extend((u, v))
    return tuple(np.linalg.solve(np.array(rows, dtype=np.float64), np.array(values, dtype=np.float64)))


def _occlude(draw: ImageDraw.ImageDraw, center, side, rng) -> None:
    """A branch, leaf or sticker over part of the sign, from one edge."""
    angle = rng.uniform(0, 2 * math.pi)
    reach = side * rng.uniform(0.35, 0.6)
    cx, cy = center[0] + math.cos(angle) * reach, center[1] + math.sin(angle) * reach
    radius = side * rng.uniform(0.15, 0.3)
    colour = tuple(int(c) for c in rng.choice([(40, 70, 30), (70, 55, 35), (90, 110, 60), (30, 30, 30)]))
    draw.ellipse((cx - radius, cy - radius * rng.uniform(0.5, 1), cx + radius, cy + radius), fill=colour)


def _light(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """GTSRB's lighting: from nearly black to washed out, colour casts, shadows, sensor noise."""
    height, width, _ = pixels.shape
    mean = pixels.mean()
    pixels = (pixels - mean) * rng.uniform(0.55, 1.25) + mean
    # Dark frames are common in GTSRB, washed-out ones rarer: a log-normal skewed towards dark.
    brightness = min(1.5, math.exp(rng.normal(-0.25, 0.4)))
    pixels = pixels * (brightness * rng.normal(1.0, 0.06, 3)).astype(np.float32)
    direction = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[-1 : 1 : height * 1j, -1 : 1 : width * 1j].astype(np.float32)
    ramp = 1 + rng.uniform(0, 0.35) * (xs * math.cos(direction) + ys * math.sin(direction))
    noise = rng.standard_normal(pixels.shape, dtype=np.float32) * rng.uniform(0, 8)
    return np.clip(pixels * ramp[:, :, None] + noise, 0, 255).astype(np.uint8)


# Backgrounds -----------------------------------------------------------------------------------


# Photos and textures inside the scikit-image and scikit-learn wheels, read as files: no download,
# and no import of scikit-learn (a second of start-up) just to find two JPEGs.
_PHOTO_FILES = (
    ("skimage", "data/astronaut.png"), ("skimage", "data/chelsea.png"), ("skimage", "data/coffee.png"),
    ("skimage", "data/rocket.jpg"), ("skimage", "data/brick.png"), ("skimage", "data/grass.png"),
    ("skimage", "data/gravel.png"), ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
)  # fmt: skip


@lru_cache(maxsize=1)
def _photos() -> tuple[Image.Image, ...]:
    photos = []
    for package, relative in _PHOTO_FILES:
        spec = importlib.util.find_spec(package)
        with Image.open(Path(spec.origin).parent / relative) as photo:
            photo = photo.convert("RGB")
        photo.thumbnail((256, 256), Image.Resampling.LANCZOS)  # cheap crops; signs are tiny anyway
        photos.append(photo)
    return tuple(photos)


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    kind = rng.random()
    if kind < 0.55:
        photos = _photos()
        photo = photos[int(rng.integers(len(photos)))]
        crop = min(photo.width, photo.height, round(max(width, height) * rng.uniform(1.2, 4)))
        left, top = int(rng.integers(photo.width - crop + 1)), int(rng.integers(photo.height - crop + 1))
        return photo.resize((width, height), Image.Resampling.BILINEAR, box=(left, top, left + crop, top + crop))
    # Muted colours: grey plus a little hue, like sky, walls, foliage and shade.
    grey = rng.uniform(30, 220, (2, 1))
    top_colour, bottom_colour = grey + rng.uniform(-50, 50, (2, 3))
    if kind < 0.8:  # sky, wall or foliage: a smooth gradient
        fraction = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        pixels = top_colour * (1 - fraction) + bottom_colour * fraction
        pixels = np.broadcast_to(pixels, (height, width, 3))
    else:  # a blotchy texture: coarse noise, enlarged
        coarse = rng.uniform(0, 1, (4, 4, 1)) * (bottom_colour - top_colour) + top_colour
        texture = Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
        pixels = np.asarray(texture, dtype=np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
