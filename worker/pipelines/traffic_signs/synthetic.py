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
own random stream, so classes do not depend on each other.
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
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from worker.pipelines.traffic_signs.labels import N_CLASSES

# Bump whenever the drawing changes: it is part of the cache key, so old caches are never reused.
GENERATOR_VERSION = 1
DATASET_FILE = "dataset.json"
MANIFEST_FILE = "MANIFEST.sha256"
IMAGES_SUBDIR = Path("Final_Training") / "Images"
CSV_HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"

RED, BLUE, YELLOW = (200, 25, 35), (25, 80, 170), (245, 185, 20)
WHITE, BLACK, GREY = (245, 245, 238), (22, 22, 22), (125, 125, 125)

_DRAW_SIZE = 256  # templates are drawn at this size, then halved: Pillow draws without anti-aliasing
_TEMPLATE_SIZE = 128
_VARIANTS = 3  # font and ring-width variants per class


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
        other = _template(int(rng.integers(N_CLASSES)), int(rng.integers(_VARIANTS)))
        offset = side * rng.uniform(0.85, 1.05) * (1 if rng.random() < 0.5 else -1)
        neighbour = other.resize((side, side), Image.Resampling.BILINEAR)
        canvas.alpha_composite(neighbour, (round(center[0] - side / 2), round(center[1] + offset - side / 2)))

    sign = _template(class_id, int(rng.integers(_VARIANTS))).resize((side, side), Image.Resampling.LANCZOS)
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


# Sign templates --------------------------------------------------------------------------------


def _font_path(name: str) -> str:
    import matplotlib  # only for the DejaVu fonts it ships

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name)


class _Canvas:
    """A transparent square to draw one sign on, in unit coordinates (0..1)."""

    def __init__(self, variant: int):
        self.image = Image.new("RGBA", (_DRAW_SIZE, _DRAW_SIZE), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.image)
        self.variant = variant
        self.ring = (0.76, 0.72, 0.8)[variant]  # inner radius of red rings, relative to the sign
        self.font = ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "DejaVuSansMono-Bold.ttf")[variant]

    def _xy(self, points):
        return [(x * _DRAW_SIZE, y * _DRAW_SIZE) for x, y in points]

    def disc(self, radius, fill, cx=0.5, cy=0.5):
        box = ((cx - radius) * _DRAW_SIZE, (cy - radius) * _DRAW_SIZE, (cx + radius) * _DRAW_SIZE, (cy + radius) * _DRAW_SIZE)
        self.draw.ellipse(box, fill=fill)

    def ring_outline(self, radius, fill, width, cx=0.5, cy=0.5):
        box = ((cx - radius) * _DRAW_SIZE, (cy - radius) * _DRAW_SIZE, (cx + radius) * _DRAW_SIZE, (cy + radius) * _DRAW_SIZE)
        self.draw.ellipse(box, outline=fill, width=round(width * _DRAW_SIZE))

    def polygon(self, points, fill):
        self.draw.polygon(self._xy(points), fill=fill)

    def line(self, points, fill, width):
        self.draw.line(self._xy(points), fill=fill, width=round(width * _DRAW_SIZE), joint="curve")

    def arrow(self, points, fill, width, head=0.14):
        """A thick line along `points` ending in a triangular head."""
        (x0, y0), (x1, y1) = points[-2], points[-1]
        length = math.hypot(x1 - x0, y1 - y0)
        ux, uy = (x1 - x0) / length, (y1 - y0) / length
        base = (x1 - ux * head, y1 - uy * head)
        self.line([*points[:-1], base], fill, width)
        spread = head * 0.7
        self.polygon([(x1, y1), (base[0] - uy * spread, base[1] + ux * spread), (base[0] + uy * spread, base[1] - ux * spread)], fill)

    def text(self, text, cx, cy, height, fill, max_width=0.6, font=None):
        """`text` scaled to `height` (squeezed to `max_width` if wider), centred on (cx, cy)."""
        face = ImageFont.truetype(_font_path(font or self.font), 160)
        left, top, right, bottom = face.getbbox(text)
        mask = Image.new("L", (right - left, bottom - top), 0)
        ImageDraw.Draw(mask).text((-left, -top), text, font=face, fill=255)
        target_height = height * _DRAW_SIZE
        target_width = min(mask.width * target_height / mask.height, max_width * _DRAW_SIZE)
        mask = mask.resize((max(1, round(target_width)), max(1, round(target_height))), Image.Resampling.LANCZOS)
        self.image.paste(Image.new("RGBA", mask.size, fill), (round(cx * _DRAW_SIZE - mask.width / 2), round(cy * _DRAW_SIZE - mask.height / 2)), mask)

    # Sign bodies --------------------------------------------------------------------------------

    def red_ring(self):
        self.disc(0.5, WHITE)
        self.disc(0.47, RED)
        self.disc(0.47 * self.ring, WHITE)

    def blue_disc(self):
        self.disc(0.5, WHITE)
        self.disc(0.47, BLUE)

    def end_disc(self):
        """White disc with a thin grey rim: the body of the "end of ..." signs."""
        self.disc(0.5, WHITE)
        self.ring_outline(0.47, GREY, 0.015)

    def end_stripes(self, count):
        """The thin black diagonal stripes that cancel an "end of ..." sign's content."""
        for index in range(count):
            offset = (index - (count - 1) / 2) * 0.035
            half = math.sqrt(max(0.0, 0.45**2 - offset**2))
            center = (0.5 + offset / math.sqrt(2), 0.5 + offset / math.sqrt(2))
            along = (1 / math.sqrt(2), -1 / math.sqrt(2))
            start = (center[0] - along[0] * half, center[1] - along[1] * half)
            end = (center[0] + along[0] * half, center[1] + along[1] * half)
            self.line([start, end], BLACK, 0.014)

    def triangle(self, pointing_up=True):
        outer = [(0.5, 0.04), (0.98, 0.9), (0.02, 0.9)]
        inner = [(0.5, 0.25), (0.8, 0.78), (0.2, 0.78)]
        if not pointing_up:
            outer = [(x, 0.94 - y) for x, y in outer]
            inner = [(x, 0.94 - y) for x, y in inner]
        self.polygon(outer, RED)
        self.line([*outer, outer[0]], WHITE, 0.025)
        self.polygon(inner, WHITE)

    def vehicle(self, cx, fill, truck=False):
        """A car or lorry seen from behind, as on the no-passing signs."""
        half, top = (0.11, 0.32) if truck else (0.085, 0.4)
        self.polygon([(cx - half, top), (cx + half, top), (cx + half, 0.62), (cx - half, 0.62)], fill)
        self.polygon([(cx - half * 0.9, 0.62), (cx - half * 0.4, 0.62), (cx - half * 0.4, 0.68), (cx - half * 0.9, 0.68)], fill)
        self.polygon([(cx + half * 0.4, 0.62), (cx + half * 0.9, 0.62), (cx + half * 0.9, 0.68), (cx + half * 0.4, 0.68)], fill)
        if not truck:
            self.polygon([(cx - half * 0.7, top + 0.03), (cx + half * 0.7, top + 0.03), (cx + half * 0.7, top + 0.09), (cx - half * 0.7, top + 0.09)], WHITE)

    def person(self, cx, scale=1.0, base=0.76):
        """A walking stick figure for the pedestrian and children signs."""
        s = scale
        self.disc(0.035 * s, BLACK, cx, base - 0.3 * s)
        self.line([(cx, base - 0.25 * s), (cx - 0.01 * s, base - 0.12 * s)], BLACK, 0.04 * s)
        self.line([(cx - 0.01 * s, base - 0.12 * s), (cx - 0.06 * s, base)], BLACK, 0.03 * s)
        self.line([(cx - 0.01 * s, base - 0.12 * s), (cx + 0.05 * s, base)], BLACK, 0.03 * s)
        self.line([(cx - 0.06 * s, base - 0.15 * s), (cx, base - 0.22 * s), (cx + 0.06 * s, base - 0.17 * s)], BLACK, 0.025 * s)


def _draw_class(canvas: _Canvas, class_id: int) -> None:
    c = canvas
    speed_limits = {0: "20", 1: "30", 2: "50", 3: "60", 4: "70", 5: "80", 7: "100", 8: "120"}
    if class_id in speed_limits:
        c.red_ring()
        c.text(speed_limits[class_id], 0.5, 0.5, 0.34, BLACK, max_width=0.56)
    elif class_id in (6, 32, 41, 42):  # end of 80 / of all limits / of no passing (lorries)
        c.end_disc()
        if class_id == 6:
            c.text("80", 0.5, 0.5, 0.34, GREY, max_width=0.5)
        elif class_id in (41, 42):
            c.vehicle(0.36, GREY, truck=class_id == 42)
            c.vehicle(0.64, GREY)
        c.end_stripes(5 if class_id == 32 else 3)
    elif class_id in (9, 10, 15, 16):  # prohibitions in a red ring
        c.red_ring()
        if class_id in (9, 10):
            c.vehicle(0.36, RED, truck=class_id == 10)
            c.vehicle(0.64, BLACK)
        elif class_id == 16:
            c.vehicle(0.5, BLACK, truck=True)
    elif class_id == 12:  # priority road: yellow diamond in white
        c.polygon([(0.5, 0.01), (0.99, 0.5), (0.5, 0.99), (0.01, 0.5)], WHITE)
        c.line([(0.5, 0.01), (0.99, 0.5), (0.5, 0.99), (0.01, 0.5), (0.5, 0.01)], GREY, 0.012)
        c.polygon([(0.5, 0.17), (0.83, 0.5), (0.5, 0.83), (0.17, 0.5)], YELLOW)
    elif class_id == 13:
        c.triangle(pointing_up=False)
    elif class_id == 14:  # stop: red octagon
        octagon = [(0.5 + 0.5 * math.cos(math.radians(22.5 + 45 * k)), 0.5 + 0.5 * math.sin(math.radians(22.5 + 45 * k))) for k in range(8)]
        c.polygon(octagon, WHITE)
        c.polygon([(0.5 + (x - 0.5) * 0.93, 0.5 + (y - 0.5) * 0.93) for x, y in octagon], RED)
        c.text("STOP", 0.5, 0.5, 0.26, WHITE, max_width=0.74, font="DejaVuSans-Bold.ttf")
    elif class_id == 17:  # no entry: red disc, white bar
        c.disc(0.5, WHITE)
        c.disc(0.47, RED)
        c.polygon([(0.18, 0.42), (0.82, 0.42), (0.82, 0.58), (0.18, 0.58)], WHITE)
    elif 18 <= class_id <= 31 or class_id == 11:
        c.triangle()
        _draw_warning(c, class_id)
    else:  # 33..40: mandatory directions, white arrows on blue
        c.blue_disc()
        _draw_mandatory(c, class_id)


def _draw_warning(c: _Canvas, class_id: int) -> None:
    """The black pictogram inside a warning triangle; the triangle's inside spans y 0.3..0.78."""
    if class_id == 11:  # right-of-way: a thick road crossed by a thin one
        c.line([(0.5, 0.36), (0.5, 0.74)], BLACK, 0.06)
        c.line([(0.38, 0.58), (0.62, 0.58)], BLACK, 0.035)
    elif class_id == 18:
        c.text("!", 0.5, 0.58, 0.3, BLACK, font="DejaVuSans-Bold.ttf")
    elif class_id in (19, 20):
        sign = -1 if class_id == 19 else 1
        c.arrow([(0.5 - 0.05 * sign, 0.74), (0.5 - 0.05 * sign, 0.58), (0.5 + 0.1 * sign, 0.44)], BLACK, 0.04, head=0.09)
    elif class_id == 21:
        c.arrow([(0.54, 0.75), (0.54, 0.66), (0.44, 0.57), (0.54, 0.48), (0.47, 0.4)], BLACK, 0.035, head=0.08)
    elif class_id == 22:  # bumpy road: two humps
        c.polygon([(0.3, 0.72), (0.7, 0.72), (0.7, 0.75), (0.3, 0.75)], BLACK)
        for cx in (0.41, 0.59):
            box = ((cx - 0.08) * _DRAW_SIZE, 0.62 * _DRAW_SIZE, (cx + 0.08) * _DRAW_SIZE, 0.82 * _DRAW_SIZE)
            c.draw.pieslice(box, 180, 360, fill=BLACK)
    elif class_id == 23:  # slippery road: a car and its skid marks
        c.polygon([(0.42, 0.44), (0.58, 0.44), (0.62, 0.56), (0.38, 0.56)], BLACK)
        c.line([(0.38, 0.74), (0.43, 0.66), (0.47, 0.72), (0.5, 0.62)], BLACK, 0.022)
        c.line([(0.53, 0.74), (0.58, 0.66), (0.62, 0.72), (0.65, 0.62)], BLACK, 0.022)
    elif class_id == 24:  # road narrows on the right
        c.line([(0.42, 0.76), (0.42, 0.4)], BLACK, 0.04)
        c.line([(0.6, 0.76), (0.6, 0.62), (0.52, 0.52), (0.52, 0.4)], BLACK, 0.04)
    elif class_id == 25:
        c.text("\u2692", 0.5, 0.6, 0.26, BLACK, font="DejaVuSans.ttf")  # hammer and pick
    elif class_id == 26:  # traffic signals: red, amber, green lamps
        c.polygon([(0.44, 0.36), (0.56, 0.36), (0.56, 0.76), (0.44, 0.76)], BLACK)
        for cy, colour in ((0.43, RED), (0.56, YELLOW), (0.69, (30, 160, 60))):
            c.disc(0.045, colour, 0.5, cy)
    elif class_id == 27:
        c.person(0.5)
    elif class_id == 28:
        c.person(0.43)
        c.person(0.58, scale=0.75)
    elif class_id == 29:  # bicycle
        for cx in (0.4, 0.6):
            c.ring_outline(0.07, BLACK, 0.02, cx, 0.68)
        c.line([(0.4, 0.68), (0.48, 0.56), (0.6, 0.68), (0.56, 0.52), (0.48, 0.56)], BLACK, 0.02)
    elif class_id == 30:
        c.text("\u2744", 0.5, 0.59, 0.3, BLACK, font="DejaVuSans.ttf")  # snowflake
    else:  # 31: wild animal
        c.text("\u265e", 0.5, 0.6, 0.3, BLACK, font="DejaVuSans.ttf")


def _draw_mandatory(c: _Canvas, class_id: int) -> None:
    """The white arrow(s) of a blue mandatory sign; left variants are mirrored right ones."""
    if class_id in (34, 37, 39):
        _draw_mandatory(c, class_id - 1)
        c.image = ImageOps.mirror(c.image)
        return
    if class_id == 33:  # turn right ahead
        c.arrow([(0.4, 0.8), (0.4, 0.5), (0.78, 0.5)], WHITE, 0.09, head=0.17)
    elif class_id == 35:  # ahead only
        c.arrow([(0.5, 0.82), (0.5, 0.18)], WHITE, 0.1, head=0.2)
    elif class_id == 36:  # straight or right
        c.arrow([(0.42, 0.84), (0.42, 0.18)], WHITE, 0.08, head=0.16)
        c.arrow([(0.42, 0.62), (0.52, 0.5), (0.8, 0.5)], WHITE, 0.08, head=0.15)
    elif class_id == 38:  # keep right
        c.arrow([(0.3, 0.3), (0.7, 0.7)], WHITE, 0.1, head=0.2)
    else:  # 40: roundabout, three arrows chasing each other anticlockwise
        for start in (90, 210, 330):
            points = [(0.5 + 0.24 * math.cos(math.radians(a)), 0.5 - 0.24 * math.sin(math.radians(a))) for a in range(start, start + 85, 12)]
            c.arrow(points, WHITE, 0.065, head=0.12)


@lru_cache(maxsize=N_CLASSES * _VARIANTS)
def _template(class_id: int, variant: int) -> Image.Image:
    """A clean RGBA drawing of the sign, transparent around it."""
    canvas = _Canvas(variant)
    _draw_class(canvas, class_id)
    return canvas.image.resize((_TEMPLATE_SIZE, _TEMPLATE_SIZE), Image.Resampling.LANCZOS)
