"""Every supported image flavour reads as the same 2-D float32 array in [0, 1]; DICOM gives pixels only. Images that
cannot be used as read are named: non-finite pixels fail `check`, a very large or a multi-frame image is warned of."""
import warnings

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from pe_renal.core import CohortError
from pe_renal.data import load_cohort
from pe_renal.images import read_image

from conftest import refused, write_cohort

H, W = 48, 64
G = np.linspace(0, 1, H * W, dtype=np.float64).reshape(H, W)  # a gradient that uses the whole range
G8 = (G * 255).round().astype(np.uint8)
G16 = (G * 65535).round().astype(np.uint16)


def rgb(a): return np.repeat(a[..., None], 3, -1)


def check(img, tol):
    assert img.dtype == np.float32 and img.shape == (H, W) and img.flags["C_CONTIGUOUS"]
    assert img.min() >= 0 and img.max() <= 1
    np.testing.assert_allclose(img, G, atol=tol)


@pytest.mark.parametrize("name,writer,tol", [
    ("g8.png", lambda p: Image.fromarray(G8).save(p), 0.003),
    ("g16.png", lambda p: Image.fromarray(G16).save(p), 1e-4),
    ("rgb8.png", lambda p: Image.fromarray(rgb(G8)).save(p), 0.003),
    ("rgba8.png", lambda p: Image.fromarray(np.dstack([rgb(G8), np.full((H, W), 255, np.uint8)])).save(p), 0.003),
    ("la8.png", lambda p: Image.fromarray(np.dstack([G8, np.full((H, W), 255, np.uint8)]), "LA").save(p), 0.003),
    ("pal.png", lambda p: Image.fromarray(G8).convert("P").save(p), 0.01),
    ("g8.jpg", lambda p: Image.fromarray(G8).save(p, quality=100), 0.01),
    ("rgb8.jpeg", lambda p: Image.fromarray(rgb(G8)).save(p, quality=100), 0.01),
    ("g8.bmp", lambda p: Image.fromarray(G8).save(p), 0.003),
    ("rgb8.bmp", lambda p: Image.fromarray(rgb(G8)).save(p), 0.003),
    ("g8.tif", lambda p: tifffile.imwrite(p, G8), 0.003),
    ("g16.tiff", lambda p: tifffile.imwrite(p, G16), 1e-4),
    ("rgb16.tif", lambda p: tifffile.imwrite(p, rgb(G16), photometric="rgb"), 1e-4),
    ("rgba16.tif", lambda p: tifffile.imwrite(p, np.dstack([rgb(G16), np.full((H, W), 65535, np.uint16)]),
                                              photometric="rgb", extrasamples=["unassalpha"]), 1e-4),
    ("g16_pil.tif", lambda p: Image.fromarray(G16).save(p), 1e-4),
])
def test_raster_formats(tmp_path, name, writer, tol):
    p = tmp_path / name
    writer(p)
    check(read_image(p), tol)


def test_colour_uses_luminance(tmp_path):
    a = np.zeros((H, W, 3), np.uint8)
    a[..., 0] = 255  # pure red
    Image.fromarray(a).save(tmp_path / "red.png")
    np.testing.assert_allclose(read_image(tmp_path / "red.png"), 0.299, atol=1e-6)


def _dicom(path, arr, photometric="MONOCHROME2", bits=16, frames=None, spp=1):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "MRN-123456", "19900101"
    ds.Modality = "US"
    ds.Rows, ds.Columns = arr.shape[-3 if spp == 3 else -2], arr.shape[-2 if spp == 3 else -1]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = spp, photometric
    if spp == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 16 if arr.dtype == np.uint16 else 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    if frames:
        ds.NumberOfFrames = frames
    ds.PixelData = np.ascontiguousarray(arr).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_dicom_16bit(tmp_path):
    _dicom(tmp_path / "a.dcm", G16)
    check(read_image(tmp_path / "a.dcm"), 1e-4)


def test_dicom_12bit_stored(tmp_path):
    _dicom(tmp_path / "a.dcm", (G * 4095).round().astype(np.uint16), bits=12)
    check(read_image(tmp_path / "a.dcm"), 2e-4)


def test_dicom_monochrome1_is_inverted(tmp_path):
    _dicom(tmp_path / "a.dcm", (65535 - G16).astype(np.uint16), photometric="MONOCHROME1")
    check(read_image(tmp_path / "a.dcm"), 1e-4)


def test_dicom_rgb_8bit(tmp_path):
    _dicom(tmp_path / "a.dcm", rgb(G8), photometric="RGB", bits=8, spp=3)
    check(read_image(tmp_path / "a.dcm"), 0.003)


def test_dicom_multiframe_takes_first_frame(tmp_path):
    _dicom(tmp_path / "cine.dcm", np.stack([G16, 65535 - G16, G16]), frames=3)
    with pytest.warns(UserWarning, match="a DICOM of 3 frames .a cine loop.; the first frame is analysed"):
        im = read_image(tmp_path / "cine.dcm")
    check(im, 1e-4)


def test_dicom_without_extension_is_recognised(tmp_path):
    _dicom(tmp_path / "IMG0001", G16)
    check(read_image(tmp_path / "IMG0001"), 1e-4)


def test_dicom_metadata_never_enters_the_cohort(tmp_path):
    root = write_cohort(tmp_path / "c", n=10)
    _dicom(root / "images" / "p00_0.dcm", G16)
    df = pd.read_csv(root / "images.csv")
    df.loc[0, "path"] = "images/p00_0.dcm"
    df.loc[0, ["x0", "y0", "x1", "y1"]] = [0, 0, W, H]
    df.to_csv(root / "images.csv", index=False)
    c = load_cohort(root)
    check(c.image(0), 1e-4)
    text = c.images.to_csv() + c.clinical.to_csv() + repr(c) + c.summary()
    for secret in ("Doe", "Jane", "MRN-123456", "19900101"):
        assert secret not in text


def test_corrupt_dicom(tmp_path):
    _dicom(tmp_path / "a.dcm", G16)
    b = (tmp_path / "a.dcm").read_bytes()
    (tmp_path / "a.dcm").write_bytes(b[: len(b) - 3000])
    with pytest.raises(CohortError, match="a.dcm"):
        read_image(tmp_path / "a.dcm")


def test_roi_box_and_mask_through_the_cohort(tmp_path):
    root = write_cohort(tmp_path / "c", n=10)
    (root / "masks").mkdir()
    m = np.zeros((40, 50), np.uint8)
    m[10:20, 5:25] = 255
    m[12, 5] = 0
    Image.fromarray(m).save(root / "masks" / "m0.png")
    df = pd.read_csv(root / "images.csv")
    df["mask"] = None
    df.loc[0, "mask"] = "masks/m0.png"
    df.loc[0, ["x0", "y0", "x1", "y1"]] = None
    df.to_csv(root / "images.csv", index=False)
    c = load_cohort(root)
    raw = c.image(0, roi=False)
    roi = c.image(0)
    assert roi.shape == (10, 20)
    assert roi[2, 0] == 0 and roi[0, 0] == raw[10, 5]          # outside the mask is zero, inside untouched
    assert c.image(1).shape == (36, 46)                        # box 2..48 x 2..38


def test_tiny_image_is_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "t.png")
    with pytest.raises(CohortError, match="too small"):
        read_image(tmp_path / "t.png")


@pytest.mark.parametrize("ext", ["jpg", "png", "tif"])
@pytest.mark.parametrize("code, turn", [(6, -1), (8, 1), (3, 2)])
def test_exif_orientation_is_applied_as_viewers_do_and_the_roi_follows(tmp_path, ext, code, turn):
    """An image stored rotated with an Orientation tag is read as shown on screen, so a box drawn on it crops the
    marked region."""
    import tifffile
    from PIL import Image
    from pe_renal.images import apply_roi, read_image

    stored = np.zeros((40, 60), np.uint8)
    stored[:10, :30] = 255  # a bright block in the stored top-left corner
    path = tmp_path / f"x.{ext}"
    if ext == "tif":
        tifffile.imwrite(path, stored, extratags=[(274, "H", 1, code, True)])
    else:
        exif = Image.Exif()
        exif[0x0112] = code
        Image.fromarray(stored).save(path, exif=exif, quality=100)
    shown = np.rot90(stored, turn) / 255
    img = read_image(path)
    assert img.shape == shown.shape and np.abs(img - shown).max() < 0.1
    ys, xs = np.nonzero(shown > 0.5)                                        # the block where a viewer shows it
    crop = apply_roi(img, box=(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    assert crop.mean() > 0.9                                                 # the box drawn on screen holds the block


# ---- awkward image files ---------------------------------------------------------------------------------------------

def test_an_image_with_non_finite_pixels_fails_check(capsys, cohort_dir):
    a = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    a[5, 5] = np.nan
    tifffile.imwrite(cohort_dir / "images" / "nan.tif", a)
    img = pd.read_csv(cohort_dir / "images.csv")
    img.loc[0, "path"] = "images/nan.tif"
    img.to_csv(cohort_dir / "images.csv", index=False)
    refused(capsys, "check", cohort_dir, says=["images/nan.tif", "not finite"])


def test_a_very_large_image_is_named_in_its_warning(cohort_dir, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)      # the images are 40x50 = 2000 pixels: over, but under 2x
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        load_cohort(cohort_dir)
    big = [str(x.message) for x in w if "pixels" in str(x.message)]
    assert big and all("p00_0.png" in m or "images/" in m for m in big[:1]), big


def test_a_multi_frame_image_is_said_to_be_read_at_its_first_frame(tmp_path):
    from pe_renal.images import read_image
    rng = np.random.default_rng(0)
    frames = [Image.fromarray((rng.random((40, 40)) * 255).astype(np.uint8)) for _ in range(3)]
    frames[0].save(tmp_path / "cine.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "still.gif")
    with pytest.warns(UserWarning, match=r"cine.gif: an image of 3 frames .* the first frame is analysed"):
        first = read_image(tmp_path / "cine.gif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(
            read_image(tmp_path / "still.gif"), first
        )  # the first frame, and no word for a still
