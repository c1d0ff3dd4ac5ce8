"""What a dataset looks like, for its page: a few images as thumbnails, text lines, table rows.

Read straight from the uploaded zip (never extracted here), whatever the dataset's kind: images are
shown as images, text files by their first lines, CSV/TSV files by their first rows. Built-in datasets
are generated where they are used (on the workers), so their page shows their description and stats.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field

from django.core.files.storage import default_storage
from PIL import Image

from apps.datasets.models import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".gif", ".webp")
TABLE_SUFFIXES = (".csv", ".tsv")
TEXT_SUFFIXES = (".txt", ".json", ".jsonl", ".token", ".en", ".fr", ".de", ".es", ".it")
MAX_IMAGES = 24
MAX_TEXT_FILES = 3
MAX_LINES = 8
MAX_ROWS = 8
THUMBNAIL_SIZE = (96, 96)


@dataclass
class Samples:
    images: list[dict] = field(default_factory=list)  # {"index", "name"}
    texts: list[dict] = field(default_factory=list)  # {"name", "lines"}
    tables: list[dict] = field(default_factory=list)  # {"name", "rows"}
    files: int = 0
    error: str = ""


def _open_archive(dataset: Dataset) -> zipfile.ZipFile | None:
    if dataset.source != Dataset.Source.UPLOAD or not dataset.storage_path:
        return None
    if not default_storage.exists(dataset.storage_path):
        return None
    return zipfile.ZipFile(default_storage.open(dataset.storage_path, "rb"))


def _image_names(archive: zipfile.ZipFile) -> list[str]:
    """Image members spread over the archive: the first of each folder first, then the rest, so that a
    dataset of class folders shows many classes."""
    names = sorted(n for n in archive.namelist() if n.lower().endswith(IMAGE_SUFFIXES) and not n.startswith("__MACOSX"))
    firsts, rest, seen = [], [], set()
    for name in names:
        folder = name.rpartition("/")[0]
        (rest if folder in seen else firsts).append(name)
        seen.add(folder)
    return (firsts + rest)[:MAX_IMAGES]


def dataset_samples(dataset: Dataset) -> Samples:
    samples = Samples()
    try:
        archive = _open_archive(dataset)
        if archive is None:
            return samples
        with archive:
            infos = [info for info in archive.infolist() if not info.is_dir()]
            samples.files = len(infos)
            samples.images = [{"index": index, "name": name} for index, name in enumerate(_image_names(archive))]
            for info in infos:
                name = info.filename.lower()
                if name.endswith(TABLE_SUFFIXES) and len(samples.tables) < MAX_TEXT_FILES:
                    text = _head(archive, info.filename)
                    dialect = "excel-tab" if name.endswith(".tsv") else _sniff(text)
                    rows = list(csv.reader(io.StringIO(text), dialect))[:MAX_ROWS]
                    samples.tables.append({"name": info.filename, "rows": rows})
                elif name.endswith(TEXT_SUFFIXES) and len(samples.texts) < MAX_TEXT_FILES:
                    lines = _head(archive, info.filename).splitlines()[:MAX_LINES]
                    samples.texts.append({"name": info.filename, "lines": lines})
    except (OSError, zipfile.BadZipFile) as error:
        samples.error = f"Could not read the archive: {error}"
    return samples


def _head(archive: zipfile.ZipFile, name: str, size: int = 8192) -> str:
    with archive.open(name) as member:
        return member.read(size).decode("utf-8", errors="replace")


def _sniff(text: str):
    try:
        return csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        return "excel"


def dataset_thumbnail(dataset: Dataset, index: int) -> bytes | None:
    """PNG bytes of the `index`-th sample image (as listed by dataset_samples), or None."""
    try:
        archive = _open_archive(dataset)
        if archive is None:
            return None
        with archive:
            names = _image_names(archive)
            if not 0 <= index < len(names):
                return None
            with archive.open(names[index]) as member:
                image = Image.open(io.BytesIO(member.read()))
                image.thumbnail(THUMBNAIL_SIZE)
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, format="PNG")
                return buffer.getvalue()
    except (OSError, zipfile.BadZipFile):
        return None
