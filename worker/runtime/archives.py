"""Safe extraction of uploaded zip archives.

Checked from the central directory before a byte is written: total size, file count, compression
ratio (zip bombs) and every member's path (no absolute paths, no `..`, no links: no zip slip).
"""

from __future__ import annotations

import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.files.storage import default_storage


def check_members(archive: zipfile.ZipFile) -> None:
    """ValueError naming the first problem, if any."""
    members = archive.infolist()
    if len(members) > settings.DATASET_MAX_FILES:
        raise ValueError(f"archive has {len(members)} entries; the limit is {settings.DATASET_MAX_FILES}")
    total = 0
    for member in members:
        name = member.filename
        path = PurePosixPath(name.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or (path.parts and path.parts[0].endswith(":")):
            raise ValueError(f"{name}: path leaves the archive's folder")
        if stat.S_ISLNK(member.external_attr >> 16):
            raise ValueError(f"{name}: symbolic links are not allowed")
        if member.compress_size and member.file_size / member.compress_size > settings.DATASET_MAX_COMPRESSION_RATIO:
            raise ValueError(
                f"{name}: compression ratio {member.file_size / member.compress_size:.0f} is over the limit of "
                f"{settings.DATASET_MAX_COMPRESSION_RATIO:g}"
            )
        total += member.file_size
    if total > settings.DATASET_MAX_EXTRACTED_BYTES:
        raise ValueError(f"archive expands to {total} bytes; the limit is {settings.DATASET_MAX_EXTRACTED_BYTES}")


def extract_checked(storage_path: str, folder: Path) -> Path:
    """Fetch an uploaded zip from the store, check it, and extract it into `folder`."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
        local_zip = Path(scratch) / "upload.zip"
        with default_storage.open(storage_path, "rb") as source, open(local_zip, "wb") as target:
            shutil.copyfileobj(source, target, 1024 * 1024)
        try:
            archive = zipfile.ZipFile(local_zip)
        except zipfile.BadZipFile as error:
            raise ValueError(f"not a readable zip archive: {error}") from None
        with archive:
            check_members(archive)
            extracted = Path(scratch) / "extracted"
            extracted.mkdir()
            written = 0
            for member in archive.infolist():
                target = extracted / member.filename
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, open(target, "wb") as out:
                    # The central directory can lie about sizes: count what is really written.
                    for chunk in iter(lambda: source.read(1024 * 1024), b""):
                        written += len(chunk)
                        if written > settings.DATASET_MAX_EXTRACTED_BYTES:
                            raise ValueError("archive expands beyond the size limit")
                        out.write(chunk)
        if folder.exists():
            shutil.rmtree(folder)
        extracted.rename(folder)
    return folder
