"""The built-in synthetic_signs dataset: GTSRB layout, determinism, caching."""

from __future__ import annotations

import json

from worker.pipelines.traffic_signs import data
from worker.pipelines.traffic_signs.synthetic import GENERATOR_VERSION, build_synthetic_signs


def _files(folder):
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in files}


def test_same_seed_gives_byte_identical_files(tmp_path):
    first, first_hash = build_synthetic_signs(tmp_path / "a", seed=5, images_per_class=2)
    second, second_hash = build_synthetic_signs(tmp_path / "b", seed=5, images_per_class=2)

    assert first_hash == second_hash
    assert _files(first) == _files(second)


def test_another_seed_gives_other_images(tmp_path):
    _, first_hash = build_synthetic_signs(tmp_path, seed=5, images_per_class=2)
    _, second_hash = build_synthetic_signs(tmp_path, seed=6, images_per_class=2)

    assert first_hash != second_hash


def test_a_built_dataset_is_reused(tmp_path):
    folder, digest = build_synthetic_signs(tmp_path, seed=5, images_per_class=2)
    image = folder / "Final_Training" / "Images" / "00000" / "00000_00000.ppm"
    written = image.stat().st_mtime_ns

    assert build_synthetic_signs(tmp_path, seed=5, images_per_class=2) == (folder, digest)
    assert image.stat().st_mtime_ns == written
    assert folder.name == f"synthetic_signs-v{GENERATOR_VERSION}-seed5-n2"
    assert [path.name for path in tmp_path.iterdir()] == [folder.name]  # no temporary folder left
    assert json.loads((folder / "dataset.json").read_text())["sha256"] == digest


def test_is_a_gtsrb_folder_of_43_classes(synthetic_tiny):
    folder, _ = synthetic_tiny

    stats = data.inspect_gtsrb(folder)

    assert stats["layout"] == "training"
    assert stats["images_dir"] == "Final_Training/Images"
    assert stats["class_ids"] == list(range(43))
    assert stats["images_per_class"] == {str(class_id): 4 for class_id in range(43)}
    assert stats["images_with_roi"] == 172
    assert 30 <= stats["width"]["min"] and stats["width"]["max"] <= 90
    assert 30 <= stats["height"]["min"] and stats["height"]["max"] <= 90
    for sample in data.list_gtsrb(folder).samples:
        x1, y1, x2, y2 = sample.roi
        assert 0 <= x1 < x2 and 0 <= y1 < y2
