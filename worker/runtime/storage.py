"""Moving files between a worker's local disk and the artifact store (Django's storage API).

Folders (models, checkpoints) travel as zip archives, so they are one object in any store and
another host can fetch them whole.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import zipfile
from pathlib import Path

from django.core.files import File
from django.core.files.storage import default_storage


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def upload_file(local_path: Path, storage_path: str) -> tuple[str, int, str]:
    """Store a file, replacing what was there; returns (storage path, size, sha256)."""
    if default_storage.exists(storage_path):
        default_storage.delete(storage_path)
    with open(local_path, "rb") as handle:
        saved = default_storage.save(storage_path, File(handle, name=Path(storage_path).name))
    return saved, local_path.stat().st_size, sha256_of(local_path)


def upload_folder_zip(folder: Path, storage_path: str) -> tuple[str, int, str]:
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "folder.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zipped:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zipped.write(path, path.relative_to(folder))
        return upload_file(archive, storage_path)


def download_file(storage_path: str, local_path: Path) -> Path:
    local_path.parent.mkdir(parents=True, exist_ok=True)
    with default_storage.open(storage_path, "rb") as source, open(local_path, "wb") as target:
        shutil.copyfileobj(source, target, 1024 * 1024)
    return local_path


def download_folder_zip(storage_path: str, folder: Path) -> Path:
    """Fetch a zipped folder into `folder` (replacing it), atomically for concurrent readers."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        archive = download_file(storage_path, Path(scratch) / "folder.zip")
        extracted = Path(scratch) / "extracted"
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(extracted)  # our own archives: names were written by upload_folder_zip
        if folder.exists():
            shutil.rmtree(folder)
        extracted.rename(folder)
    return folder
