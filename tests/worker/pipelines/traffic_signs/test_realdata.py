"""The loader on the real GTSRB sample ($DLSITE_REALDATA_DIR/gtsrb: 43 classes, ~24 images each)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from worker.pipelines.traffic_signs import data

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not os.environ.get("DLSITE_REALDATA_DIR"), reason="DLSITE_REALDATA_DIR is not set"),
]


@pytest.fixture
def gtsrb_images() -> Path:
    folder = Path(os.environ["DLSITE_REALDATA_DIR"]) / "gtsrb" / "Final_Training" / "Images"
    if not folder.is_dir():
        pytest.skip(f"{folder} does not exist")
    return folder


def test_inspects_the_real_training_layout(gtsrb_images):
    stats = data.inspect_gtsrb(gtsrb_images)

    assert stats["layout"] == "training"
    assert stats["class_ids"] == list(range(43))
    assert stats["images_with_roi"] == stats["images"]
    assert stats["min_images_per_class"] >= 15
    assert stats["width"]["min"] >= 15 and stats["width"]["max"] <= 300


def test_loads_the_real_images_in_class_order(gtsrb_images):
    arrays = data.load_gtsrb(gtsrb_images)

    count = len(data.list_gtsrb(gtsrb_images).samples)
    assert arrays.images.shape == (count, 32, 32, 1)
    assert arrays.labels[0] == 0 and arrays.labels[-1] == 42  # the book's sanity check
    assert np.all(np.diff(arrays.labels) >= 0)
    assert 0.0 <= arrays.images.min() and arrays.images.max() <= 100.0


def test_roi_crop_on_real_images(gtsrb_images):
    samples = data.list_gtsrb(gtsrb_images).samples[:20]

    whole = data.load_samples(samples)
    cropped = data.load_samples(samples, roi_crop=True)

    assert cropped.shape == whole.shape == (20, 32, 32, 1)
    assert not np.allclose(whole, cropped)


def test_the_whole_realdata_folder_reads_as_training_layout(gtsrb_images):
    # gtsrb/ also holds GT-final_test.csv without its images: the class folders take precedence.
    listing = data.list_gtsrb(gtsrb_images.parents[1])

    assert listing.layout == "training"
    assert listing.images_dir == "Final_Training/Images"
