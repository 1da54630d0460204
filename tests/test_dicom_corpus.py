"""Every file with pixel data in pydicom's own test corpus (written by nobody here) is read by `read_image` as pydicom's
reference decoding shows it, or refused for a fault of the file itself; none for want of a decoder.

The reference, per pydicom (`pydicom.pixels`): the first frame of `ds.pixel_array`; PALETTE COLOR through
`apply_color_lut`, divided by the table's maximum; RGB (pydicom converts YBR to RGB) divided by 2**BitsStored - 1;
monochrome through `apply_modality_lut` then `apply_voi_lut`, divided by the range the DICOM standard gives those steps
(a LUT's bits, or the stored range through the rescale), MONOCHROME1 inverted; colour to luminance with the ITU-R 601
weights. "Equal" means equal after rounding both to 8 bits, to within 1 of 255 grey levels."""
import json
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

from pe_renal.core import CohortError
from pe_renal.images import read_image

LUMA = np.array([0.299, 0.587, 0.114])
# refused for the file's own fault: name -> (the fault, words of the refusal)
OWN_FAULT = {
    "MR_truncated.dcm": ("truncated pixel data", "less than expected"),
    "SC_rgb_small_odd.dcm": ("3x3 pixels", "too small to analyse"),
    "SC_rgb_small_odd_big_endian.dcm": ("3x3 pixels", "too small to analyse"),
    "SC_rgb_small_odd_jpeg.dcm": ("3x3 pixels", "too small to analyse"),
    "meta_missing_tsyntax.dcm": ("no transfer syntax", "no (0002,0010) 'Transfer Syntax UID'"),
    "badVR.dcm": ("an element value that is not a number ('1A')", "invalid literal for int()"),
    "nested_priv_SQ.dcm": ("no Bits Allocated, a required element", "'Bits Allocated'"),
    "JPEG2000-embedded-sequence-delimiter.dcm": ("4 bytes of its JPEG 2000 data overwritten (pydicom's README)",
                                                 "Unable to decode"),
}
# 12-bit JPEG Extended: only the GPL-licensed pylibjpeg-libjpeg decodes it for pydicom, so pe_renal decodes it with
# GDCM.
# Known answer, from pylibjpeg-libjpeg 2.5.0 through pydicom 3.0.2 (12-bit values): pixels (row, column) and the mean.
# JPEG-lossy.dcm is the same image with a marker libjpeg refuses (pydicom's README: JPGExtended.dcm is its fixed
# version).
LIBJPEG_12BIT = {(420, 140): 244, (0, 0): 1, (512, 128): 14, (1023, 255): 1, (300, 100): 36}, 14.383037567138672
TWELVE_BIT_JPEG = {"JPGExtended.dcm", "JPEG-lossy.dcm"}


def reference(path) -> np.ndarray:
    "pydicom's decoding of the first frame, with its LUTs, as a 2-D array in [0, 1] (see the module's docstring)."
    ds = pydicom.dcmread(path)
    a = ds.pixel_array
    spp = int(ds.get("SamplesPerPixel", 1))
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        a = a[0]
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        rgb = apply_color_lut(a, ds)
        return (rgb / np.iinfo(rgb.dtype).max) @ LUMA
    if spp > 1:
        return (a / (2**ds.BitsStored - 1)) @ LUMA
    signed = ds.get("PixelRepresentation", 0) == 1
    lo, hi = (-(2**(ds.BitsStored - 1)), 2**(ds.BitsStored - 1) - 1) if signed else (0, 2**ds.BitsStored - 1)
    if "ModalityLUTSequence" in ds:
        lo, hi = 0, 2 ** ds.ModalityLUTSequence[0].LUTDescriptor[2] - 1
    elif "RescaleSlope" in ds and "RescaleIntercept" in ds:
        lo, hi = sorted(v * ds.RescaleSlope + ds.RescaleIntercept for v in (lo, hi))
    if ds.get("VOILUTSequence") and "LUTData" in ds.VOILUTSequence[0]:
        lo, hi = 0, 2 ** ds.VOILUTSequence[0].LUTDescriptor[2] - 1
    v = np.clip((apply_voi_lut(apply_modality_lut(a, ds), ds).astype(np.float64) - lo) / (hi - lo), 0, 1)
    return 1 - v if ds.PhotometricInterpretation == "MONOCHROME1" else v


def _with_pixels() -> list[str]:
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                           # pydicom's notes on the corpus's odd files
        for f in get_testdata_files():
            try:
                ds = pydicom.dcmread(f, force=True)
            except Exception:
                continue
            if "PixelData" in ds:
                out.append(f)
    return sorted(out)


def _walk():
    "name -> ('matched' | 'refused: fault' | 'OTHER: what'), for every corpus file with pixel data."
    res = {}
    for f in _with_pixels():
        name = Path(f).name if not Path(f).name.isdigit() else str(Path(f).relative_to(Path(f).parents[2]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                img = read_image(f)
            except CohortError as e:
                fault = OWN_FAULT.get(Path(f).name)
                res[name] = (
                    f"refused: {fault[0]}" if fault and fault[1] in str(e) else f"OTHER: refused ({str(e)[:300]})"
                )
                continue
            if Path(f).name in TWELVE_BIT_JPEG:
                px, mean = LIBJPEG_12BIT
                got = {k: int(round(img[k] * 4095)) for k in px}
                ok = all(abs(got[k] - v) <= 1 for k, v in px.items()) and abs(img.mean() * 4095 - mean) < 0.5
                res[name] = "matched" if ok else f"OTHER: 12-bit JPEG read as {got}, mean {img.mean() * 4095:.3f}"
                continue
            ref = reference(f)
        diff = (
            np.abs(np.round(img.astype(np.float64) * 255) - np.round(ref * 255)).max()
            if img.shape == ref.shape
            else np.inf
        )
        res[name] = "matched" if diff <= 1 else f"OTHER: differs by {diff} of 255 (shape {img.shape} vs {ref.shape})"
    return res


def _not_here() -> list[str]:
    "The corpus files pydicom downloads on demand (pydicom-data), which are not on this machine."
    urls = json.loads((Path(pydicom.data.__file__).parent / "urls.json").read_text())
    have = {Path(f).name for f in get_testdata_files()}
    return sorted(n for n in urls if n not in have)


def test_every_pixel_file_of_pydicoms_corpus_is_read_as_pydicom_shows_it_or_refused_for_its_own_fault():
    res = _walk()
    counts = {k: sum(v.startswith(k) for v in res.values()) for k in ("matched", "refused", "OTHER")}
    print(f"\npydicom {pydicom.__version__} corpus: {len(res)} files with pixel data here: {counts}; "
          f"{len(_not_here())} more are downloaded on demand and are not here (skipped)")
    assert len(res) >= 90 and counts["refused"] == len(OWN_FAULT), res   # every shipped file with pixels is walked
    assert counts["OTHER"] == 0, {k: v for k, v in res.items() if v.startswith("OTHER")}


def test_a_palette_is_applied_and_a_palette_without_its_table_is_refused(tmp_path):
    f = pydicom.data.get_testdata_file("examples_palette.dcm")
    ds = pydicom.dcmread(f)
    img, idx = read_image(f), ds.pixel_array / 255.0
    assert np.abs(np.round(img * 255) - np.round(reference(f) * 255)).max() <= 1
    assert np.abs(img - idx).mean() > 0.05  # negative control: the indices are not the image
    for c in ("Red", "Green", "Blue"):
        del ds[f"{c}PaletteColorLookupTableData"]
    ds.save_as(tmp_path / "no_table.dcm")
    with pytest.raises(CohortError, match=r"no_table.dcm: a PALETTE COLOR DICOM without its colour table .* Export"):
        read_image(tmp_path / "no_table.dcm")


def test_a_window_and_monochrome1_are_applied(tmp_path):
    "A VOI window changes the image as pydicom's apply_voi_lut does; MONOCHROME1 is the inverse of MONOCHROME2."
    f = pydicom.data.get_testdata_file("MR_small.dcm")
    ds = pydicom.dcmread(f)
    plain = read_image(f)
    ds.WindowCenter, ds.WindowWidth = 600, 400
    ds.save_as(tmp_path / "window.dcm")
    win = read_image(tmp_path / "window.dcm")
    assert np.abs(win - plain).max() > 0.1  # the window is applied ...
    assert (
        np.abs(np.round(win * 255) - np.round(reference(tmp_path / "window.dcm") * 255)).max() <= 1
    )  # ... as pydicom does
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "mono1.dcm")
    np.testing.assert_allclose(read_image(tmp_path / "mono1.dcm"), 1 - win, atol=1e-6)
