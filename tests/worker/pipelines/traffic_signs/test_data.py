"""The GTSRB reader, the upload check and the book's preprocessing."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from worker.pipelines.traffic_signs import data


def _png(color, size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


# Listing and loading -----------------------------------------------------------------------------


def test_lists_samples_in_class_order_with_their_roi(gtsrb_tiny):
    listing = data.list_gtsrb(gtsrb_tiny)

    assert listing.layout == "training"
    assert listing.images_dir == "."
    assert [sample.class_id for sample in listing.samples] == [0] * 4 + [14] * 4 + [33] * 4
    first = listing.samples[0]
    assert first.name == "00000/00000_00000.ppm"
    assert first.roi == (2, 3, 27, 29)
    assert listing.samples[8].roi is None  # 00033 has no GT csv


def test_finds_the_class_folders_deep_inside_an_upload(tmp_path, gtsrb_tiny):
    images = tmp_path / "GTSRB" / "Final_Training" / "Images"
    shutil.copytree(gtsrb_tiny, images)
    (tmp_path / "__MACOSX" / "GTSRB" / "00000").mkdir(parents=True)
    (tmp_path / "__MACOSX" / "GTSRB" / "00000" / "._00000_00000.ppm").write_bytes(b"\0\5\26\7")

    listing = data.list_gtsrb(tmp_path)

    assert listing.images_dir == "GTSRB/Final_Training/Images"
    assert listing.samples[0].name == "GTSRB/Final_Training/Images/00000/00000_00000.ppm"
    assert len(listing.samples) == 12


def test_loads_preprocessed_images_and_class_ids(gtsrb_tiny):
    arrays = data.load_gtsrb(gtsrb_tiny)

    assert arrays.images.shape == (12, 32, 32, 1)
    assert arrays.images.dtype == np.float32
    assert arrays.labels.tolist() == [0] * 4 + [14] * 4 + [33] * 4
    assert 0.0 <= arrays.images.min() and arrays.images.max() <= 100.0  # Lab L, not normalised
    assert arrays.images.max() > 50.0


def test_roi_crop_changes_only_images_with_a_roi(gtsrb_tiny):
    whole = data.load_gtsrb(gtsrb_tiny).images
    cropped = data.load_gtsrb(gtsrb_tiny, roi_crop=True).images

    assert not np.allclose(whole[:8], cropped[:8])
    np.testing.assert_array_equal(whole[8:], cropped[8:])


def test_reads_the_official_test_layout(tmp_path, gtsrb_tiny):
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for index, (class_id, source) in enumerate(
        [(14, "00014/00000_00000.ppm"), (0, "00000/00000_00000.ppm"), (0, "00000/00001_00001.ppm")]
    ):
        shutil.copy(gtsrb_tiny / source, tmp_path / f"{index:05d}.ppm")
        rows.append(f"{index:05d}.ppm;10;10;1;1;9;9;{class_id}")
    (tmp_path / "GT-final_test.csv").write_text("\n".join(rows) + "\n")

    listing = data.list_gtsrb(tmp_path)

    assert listing.layout == "test"
    assert [(sample.name, sample.class_id) for sample in listing.samples] == [
        ("00001.ppm", 0),
        ("00002.ppm", 0),
        ("00000.ppm", 14),
    ]
    assert listing.samples[0].roi == (1, 1, 9, 9)


# Checking an upload ------------------------------------------------------------------------------


def test_inspect_reports_counts_and_sizes(gtsrb_tiny):
    assert data.inspect_gtsrb(gtsrb_tiny) == {
        "layout": "training",
        "images_dir": ".",
        "classes": 3,
        "class_ids": [0, 14, 33],
        "images": 12,
        "images_per_class": {"0": 4, "14": 4, "33": 4},
        "min_images_per_class": 4,
        "max_images_per_class": 4,
        "width": {"min": 24, "max": 32},
        "height": {"min": 24, "max": 32},
        "images_with_roi": 8,
    }


def test_inspect_names_an_unreadable_image(gtsrb_copy):
    (gtsrb_copy / "00014" / "broken.ppm").write_bytes(b"P6\nthis is not an image")

    with pytest.raises(ValueError) as error:
        data.inspect_gtsrb(gtsrb_copy)
    assert str(error.value) == "00014/broken.ppm: not a readable image"


def test_inspect_names_a_truncated_image(gtsrb_copy):
    path = gtsrb_copy / "00033" / "00001_00001.ppm"
    path.write_bytes(path.read_bytes()[:200])

    with pytest.raises(ValueError) as error:
        data.inspect_gtsrb(gtsrb_copy)
    assert str(error.value) == "00033/00001_00001.ppm: not a readable image"


def test_inspect_without_class_folders(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "sign.png").write_bytes(_png("red"))

    with pytest.raises(ValueError) as error:
        data.inspect_gtsrb(tmp_path)
    assert str(error.value) == "no class folders named 00000..00042 and no GT-final_test.csv found"


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("class_43", "00043: class id 43 is out of range 0..42"),
        ("empty_class", "00005: no images (.ppm, .png, .jpg, .jpeg)"),
        ("wrong_class_in_csv", "00000/00000_00000.ppm: the GT csv says ClassId 7, the folder says 0"),
        (
            "csv_without_roi",
            "00014/GT-00014.csv: missing column(s) Roi.X1 "
            "(expected Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId)",
        ),
        ("missing_test_image", "GT-final_test.csv: lists 00000.ppm, which is missing"),
    ],
)
def test_inspect_rejects_a_broken_layout(tmp_path, gtsrb_copy, breakage, message):
    folder = gtsrb_copy
    if breakage == "class_43":
        shutil.copytree(gtsrb_copy / "00033", gtsrb_copy / "00043")
    elif breakage == "empty_class":
        (gtsrb_copy / "00005").mkdir()
    elif breakage == "wrong_class_in_csv":
        csv_path = gtsrb_copy / "00000" / "GT-00000.csv"
        csv_path.write_text(csv_path.read_text().replace("2;3;27;29;0", "2;3;27;29;7"))
    elif breakage == "csv_without_roi":
        csv_path = gtsrb_copy / "00014" / "GT-00014.csv"
        csv_path.write_text(csv_path.read_text().replace("Roi.X1", "RoiX1"))
    else:
        folder = tmp_path / "test"
        folder.mkdir()
        (folder / "GT-final_test.csv").write_text(
            "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n00000.ppm;53;54;6;5;48;49;16\n"
        )

    with pytest.raises(ValueError) as error:
        data.inspect_gtsrb(folder)
    assert str(error.value) == message


def test_inspect_is_reachable_through_the_dataset_kind(gtsrb_tiny):
    from worker.pipelines.base import get_pipeline

    kind = get_pipeline("traffic_signs").dataset_kind("gtsrb")

    assert kind.run_inspect(gtsrb_tiny)["classes"] == 3


# Preprocessing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("color", "expected"), [("white", 100.0), ("black", 0.0)])
def test_preprocessing_keeps_lab_luminance_in_0_to_100(color, expected):
    image = data.preprocess_bytes(_png(color))

    assert image.shape == (32, 32, 1)
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, expected, atol=1e-3)


def test_yuv_y_uses_the_same_range():
    np.testing.assert_allclose(data.preprocess_bytes(_png("white"), color_mode="yuv_y"), 100.0, atol=1e-3)
    np.testing.assert_allclose(data.preprocess_bytes(_png((255, 0, 0)), color_mode="yuv_y"), 29.9, atol=1e-3)


def test_prediction_and_training_preprocess_alike(gtsrb_tiny):
    path = gtsrb_tiny / "00014" / "00002_00002.ppm"

    from_bytes = data.preprocess_bytes(path.read_bytes())
    from_folder = data.load_gtsrb(gtsrb_tiny).images[6]

    np.testing.assert_array_equal(from_bytes, from_folder)


def test_large_photos_are_shrunk_before_the_colour_conversion():
    assert data.read_image(_png("blue", size=(3000, 2000))).shape == (171, 256, 3)


def test_bytes_that_are_not_an_image():
    with pytest.raises(ValueError) as error:
        data.preprocess_bytes(b"GIF89a but not really")
    assert str(error.value) == "file: not an image Pillow can read"
