"""images.read_image: every format and mode becomes one float32 2-D array in [0, 1]."""

from __future__ import annotations

import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cxrkit.data import images
from cxrkit.data.images import ImageReadError, is_image_file, read_image


def _check_gray01(arr: np.ndarray, shape=None) -> None:
    assert isinstance(arr, np.ndarray)
    assert arr.dtype == np.float32
    assert arr.ndim == 2
    assert arr.min() >= 0.0 and arr.max() <= 1.0
    if shape is not None:
        assert arr.shape == shape


# ----------------------------------------------------------------------------- raster formats
def test_png_8bit_gray_maps_to_value_over_255(make_image):
    arr = np.array([[0, 51, 102], [153, 204, 255]], np.uint8)
    out = read_image(make_image("l.png", arr))
    _check_gray01(out, (2, 3))
    np.testing.assert_allclose(out, arr / 255.0, atol=1e-6)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_png_and_tiff_map_full_range(make_image, suffix):
    arr = np.array([[0, 13107, 32768], [52428, 65535, 1]], np.uint16)
    path = make_image("g16" + suffix, arr)
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # really stored as 16-bit, not reduced to 8
    out = read_image(path)
    _check_gray01(out, (2, 3))
    np.testing.assert_allclose(out, arr / 65535.0, atol=1e-6)
    assert out[0, 1] == pytest.approx(0.2, abs=1e-6)
    assert out[1, 1] == 1.0 and out[0, 0] == 0.0


def test_16bit_values_are_not_min_max_stretched(make_image):
    # a 12-bit detector stored in 16 bit keeps its absolute scale
    arr = np.full((4, 4), 1000, np.uint16)
    arr[0, 0] = 4095
    out = read_image(make_image("g12.png", arr))
    assert out.max() == pytest.approx(4095 / 65535, abs=1e-6)
    assert out[1, 1] == pytest.approx(1000 / 65535, abs=1e-6)


def test_rgb_converted_with_luma_weights(make_image):
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[:2] = (100, 100, 100)  # gray stays gray
    arr[2:] = (255, 0, 0)  # pure red: ITU-R 601 luma 0.299
    out = read_image(make_image("rgb.png", arr))
    _check_gray01(out, (4, 4))
    assert out[0, 0] == pytest.approx(100 / 255, abs=1e-6)
    assert out[3, 3] == pytest.approx(0.299, abs=2 / 255)


def test_rgba_composited_over_black(make_image):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., :3] = 200
    arr[0, :, 3] = 255  # opaque
    arr[1, :, 3] = 0  # fully transparent -> black background
    arr[2:, :, 3] = 128  # half -> about half the value
    out = read_image(make_image("rgba.png", arr))
    _check_gray01(out, (4, 4))
    assert out[0, 0] == pytest.approx(200 / 255, abs=1e-6)
    assert out[1, 0] == 0.0
    assert out[2, 0] == pytest.approx(200 * 128 / 255 / 255, abs=2 / 255)


def test_la_composited_over_black(make_image):
    img = Image.merge("LA", [Image.new("L", (3, 3), 180), Image.new("L", (3, 3), 0)])
    out = read_image(make_image("la.png", image=img))
    np.testing.assert_array_equal(out, np.zeros((3, 3), np.float32))


def test_palette_image_uses_palette_colours(make_image):
    img = Image.new("P", (4, 4))
    img.putpalette([0, 0, 0, 128, 128, 128, 255, 255, 255] + [0] * (256 * 3 - 9))
    idx = np.array([[0, 1, 2, 1]] * 4, np.uint8)
    img.putdata(idx.ravel().tolist())
    path = make_image("p.png", image=img)
    with Image.open(path) as check:
        assert check.mode == "P"
    out = read_image(path)
    _check_gray01(out, (4, 4))
    np.testing.assert_allclose(out[0], [0, 128 / 255, 1, 128 / 255], atol=1e-6)


def test_palette_with_transparency_composited(make_image):
    img = Image.new("P", (2, 2))
    img.putpalette([255, 255, 255, 255, 255, 255] + [0] * (256 * 3 - 6))
    img.putdata([0, 1, 0, 1])
    img.info["transparency"] = 1  # palette index 1 is transparent
    out = read_image(make_image("pt.png", image=img, transparency=1))
    np.testing.assert_allclose(out, [[1, 0], [1, 0]], atol=1e-6)


def test_cmyk_jpeg(make_image):
    arr = np.zeros((16, 16, 4), np.uint8)
    arr[:, 8:, 3] = 255  # left half paper white, right half full black ink
    path = make_image("cmyk.jpg", image=Image.fromarray(arr, mode="CMYK"), quality=95)
    with Image.open(path) as check:
        assert check.mode == "CMYK"
    out = read_image(path)
    _check_gray01(out, (16, 16))
    assert out[:, :6].mean() > 0.9
    assert out[:, 10:].mean() < 0.1


def test_bmp(make_image):
    arr = np.arange(0, 250, 10, dtype=np.uint8).reshape(5, 5)
    out = read_image(make_image("x.bmp", arr))
    np.testing.assert_allclose(out, arr / 255.0, atol=1e-6)


def test_one_bit_image(make_image):
    bits = (np.indices((6, 6)).sum(0) % 2).astype(bool)
    img = Image.fromarray(bits).convert("1")
    path = make_image("b.png", image=img)
    with Image.open(path) as check:
        assert check.mode == "1"
    out = read_image(path)
    _check_gray01(out, (6, 6))
    np.testing.assert_array_equal(out, bits.astype(np.float32))


@pytest.mark.parametrize("orientation,k", [(6, -1), (8, 1)])
def test_exif_orientation_applied(make_image, synth_array, orientation, k):
    arr = synth_array(3, (24, 40))
    arr[:6, :6] = 255  # a bright corner to follow
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = make_image(f"o{orientation}.jpg", arr, exif=exif.tobytes(), quality=95)
    with Image.open(path) as raw:
        stored = np.asarray(raw.convert("L"), np.float32) / 255.0
        assert raw.getexif()[0x0112] == orientation
    out = read_image(path)
    _check_gray01(out, (40, 24))  # rotated by 90 degrees
    np.testing.assert_allclose(out, np.rot90(stored, k), atol=1e-6)
    # orientation 6 (rotate clockwise) takes the top-left corner to the top-right
    corner = out[:4, -4:] if orientation == 6 else out[-4:, :4]
    assert corner.mean() > 0.9


def test_bytes_input_equals_path_input(make_image):
    path = make_image("a.png", seed=5)
    np.testing.assert_array_equal(read_image(path), read_image(path.read_bytes(), name="a.png"))
    np.testing.assert_array_equal(read_image(str(path)), read_image(bytearray(path.read_bytes())))


@pytest.mark.parametrize(
    "name,ok",
    [
        ("a.PNG", True),
        ("b.jpeg", True),
        ("c.tiff", True),
        ("d.dcm", True),
        ("e.txt", False),
        ("f.xlsx", False),
        ("noext", False),
    ],
)
def test_is_image_file(tmp_path, name, ok):
    assert is_image_file(tmp_path / name) is ok


# ----------------------------------------------------------------------------- DICOM
def test_dicom_monochrome2_with_rescale(make_dicom):
    arr = np.array([[0, 1000], [2000, 4000]], np.uint16)
    out = read_image(make_dicom("m2.dcm", arr, RescaleSlope=2, RescaleIntercept=-1024))
    _check_gray01(out, (2, 2))
    np.testing.assert_allclose(out, arr / 4000.0, atol=1e-6)


def test_dicom_window_is_in_rescaled_units(make_dicom):
    # stored 0..4000, rescaled to -1000..3000; the window [-500, 500] covers stored 500..1500
    arr = np.array([[0, 400, 750, 1000], [1250, 1600, 3000, 4000]], np.uint16)
    out = read_image(
        make_dicom("hu.dcm", arr, RescaleSlope=1, RescaleIntercept=-1000, WindowCenter=0, WindowWidth=1000)
    )
    _check_gray01(out, (2, 4))
    assert out[0, 0] == 0.0 and out[0, 1] == 0.0  # below the window: black
    assert out[1, 1] == 1.0 and out[1, 3] == 1.0  # above the window: white
    assert out[0, 3] == pytest.approx(0.5, abs=0.01)  # stored 1000 = 0 after rescale = centre
    assert out[0, 2] < out[0, 3] < out[1, 0]


def test_dicom_voi_window_clips_outside_values(make_dicom):
    arr = np.array([[0, 1000, 1500], [2000, 3000, 4000]], np.uint16)
    out = read_image(make_dicom("w.dcm", arr, WindowCenter=2000, WindowWidth=1000))
    _check_gray01(out, (2, 3))
    # without the window 1000 would be 0.25 and 3000 0.75: the window clips them
    assert out[0, 0] == out[0, 1] == out[0, 2] == 0.0
    assert out[1, 1] == out[1, 2] == 1.0
    assert out[1, 0] == pytest.approx(0.5, abs=0.01)


def test_dicom_monochrome1_is_inverted(make_dicom):
    arr = np.array([[0, 1000], [2000, 4000]], np.uint16)
    m2 = read_image(make_dicom("m2.dcm", arr, "MONOCHROME2"))
    m1 = read_image(make_dicom("m1.dcm", arr, "MONOCHROME1"))
    _check_gray01(m1, (2, 2))
    assert m2[0, 0] == 0.0 and m1[0, 0] == 1.0  # stored 0: dark in M2, bright in M1
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)


def test_dicom_signed_pixels(make_dicom):
    arr = np.array([[-1000, 0], [500, 1000]], np.int16)
    out = read_image(make_dicom("s.dcm", arr))
    np.testing.assert_allclose(out, (arr + 1000) / 2000.0, atol=1e-6)


def test_dicom_rgb(make_dicom):
    arr = np.zeros((4, 5, 3), np.uint8)
    arr[..., 1] = np.arange(5) * 50  # green ramp along columns
    out = read_image(make_dicom("rgb.dcm", arr, "RGB"))
    _check_gray01(out, (4, 5))
    assert np.all(np.diff(out, axis=1) > 0)
    assert out[:, 0].max() == 0.0 and out[:, -1].min() == 1.0


def test_dicom_without_suffix_is_detected_by_content(make_dicom):
    arr = np.array([[0, 10], [20, 40]], np.uint16)
    path = make_dicom("IM0001", arr)
    np.testing.assert_allclose(read_image(path), arr / 40.0, atol=1e-6)


def test_dicom_without_pixel_data(make_dicom):
    path = make_dicom("report.dcm", None)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert str(path) in str(err.value)
    assert "no pixel data" in str(err.value)
    assert err.value.path == str(path)


def test_dicom_truncated_pixel_data(make_dicom):
    path = make_dicom("t.dcm", np.zeros((64, 64), np.uint16))
    path.write_bytes(path.read_bytes()[:-2000])
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert str(path) in str(err.value)
    assert "DICOM" in err.value.reason


# ----------------------------------------------------------------------------- bad files
def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _bad_zero_bytes(tmp_path, make_image):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    return p, "empty"


def _bad_truncated_png(tmp_path, make_image):
    p = make_image("trunc.png", seed=1, shape=(128, 128))
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    return p, "truncated"


def _bad_text_as_png(tmp_path, make_image):
    p = tmp_path / "notes.png"
    p.write_text("this is a text file, not an image\n" * 10)
    return p, "not an image"


def _bad_directory(tmp_path, make_image):
    p = tmp_path / "folder.png"
    p.mkdir()
    return p, "directory"


def _bad_missing(tmp_path, make_image):
    return tmp_path / "nowhere" / "missing.png", "not found"


def _bad_header_bomb(tmp_path, make_image):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(100_000, 100_000))
    return p, "decompression bomb"


def _bad_header_above_limit(tmp_path, make_image):
    p = tmp_path / "huge.png"
    p.write_bytes(_png_header_only(9000, 8000))  # 72 MP: below PIL's own limit, above ours
    return p, "safety limit"


def _bad_one_pixel(tmp_path, make_image):
    return make_image("dot.png", np.array([[128]], np.uint8)), "1x1"


@pytest.mark.parametrize(
    "maker",
    [
        _bad_zero_bytes,
        _bad_truncated_png,
        _bad_text_as_png,
        _bad_directory,
        _bad_missing,
        _bad_header_bomb,
        _bad_header_above_limit,
        _bad_one_pixel,
    ],
    ids=lambda f: f.__name__[5:],
)
def test_bad_files_raise_image_read_error_naming_file(tmp_path, make_image, maker):
    path, reason = maker(tmp_path, make_image)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    message = str(err.value)
    assert str(path) in message
    assert reason in message
    assert err.value.reason and err.value.reason in message
    assert isinstance(err.value, ValueError)


def test_max_pixels_limit_is_enforced(make_image, monkeypatch):
    path = make_image("big.png", shape=(20, 20))
    assert read_image(path).shape == (20, 20)
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(ImageReadError, match="20x20 pixels, above the 100-pixel safety limit") as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_max_pixels_limit_applies_to_dicom(make_dicom, monkeypatch):
    path = make_dicom("big.dcm", np.zeros((20, 20), np.uint16))
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(ImageReadError, match="safety limit"):
        read_image(path)


def test_bytes_error_uses_given_name():
    with pytest.raises(ImageReadError) as err:
        read_image(b"GIF? no, garbage", name="upload.png")
    assert str(err.value).startswith("upload.png: ")
    with pytest.raises(ImageReadError, match="^<bytes>: file is empty"):
        read_image(b"")


def test_image_read_error_survives_pickling():
    # errors cross process boundaries (scan workers, data loader workers)
    err = pickle.loads(pickle.dumps(ImageReadError("/x/a.png", "file is empty (0 bytes)")))
    assert isinstance(err, ImageReadError)
    assert (err.path, err.reason) == ("/x/a.png", "file is empty (0 bytes)")
    assert str(err) == "/x/a.png: file is empty (0 bytes)"


def test_corrupt_exif_still_oriented(make_image, synth_array):
    # a tag PIL knows as numeric stored with ASCII type: readable, but PIL cannot re-serialise it
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Maker"
    raw = exif.tobytes()
    bad = raw.replace(b"\x01\x0f\x00\x02", b"\x01\x08\x00\x02")  # Make (ASCII) -> CellWidth
    assert bad != raw
    path = make_image("badexif.jpg", synth_array(4, (24, 40)), exif=bad, quality=95)
    with Image.open(path) as raw:
        assert raw.getexif()[0x0112] == 6
        stored = np.asarray(raw, np.float32) / 255.0
    out = read_image(path)
    _check_gray01(out, (40, 24))
    np.testing.assert_allclose(out, np.rot90(stored, -1), atol=1e-6)


# ----------------------------------------------------------------------------- validation after decoding (issue 12)
@pytest.mark.parametrize("bad_value,count", [(np.nan, 1), (np.inf, 3), (-np.inf, 2)])
def test_float_tiff_with_non_finite_pixels_is_refused(tmp_path, bad_value, count):
    import tifffile

    arr = np.linspace(0, 500, 32 * 40, dtype=np.float32).reshape(32, 40)
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, arr)
    _check_gray01(read_image(path), (32, 40))  # the clean float TIFF is min-max scaled
    arr.flat[:count] = bad_value
    tifffile.imwrite(path, arr)
    with pytest.raises(ImageReadError, match=f"f.tif: {count} of 1,280 pixels are NaN or infinite"):
        read_image(path)


def _u16(shape=(16, 20)):
    return (np.arange(np.prod(shape)).reshape(shape) * 37 % 4000).astype(np.uint16)


@pytest.mark.parametrize(
    "attrs,match",
    [
        ({"BitsAllocated": 8, "BitsStored": 8, "HighBit": 7}, "PixelData has 640 bytes but .* need 320"),
        ({"BitsAllocated": 32, "BitsStored": 32, "HighBit": 31}, "PixelData has 640 bytes but .* need 1,280"),
        ({"SamplesPerPixel": 3}, "SamplesPerPixel 3 does not fit PhotometricInterpretation MONOCHROME2"),
        ({"SamplesPerPixel": 3, "PhotometricInterpretation": "RGB", "PlanarConfiguration": 0}, "need 1,920"),
        ({"NumberOfFrames": 4}, "4 frame"),
        ({"BitsStored": 20}, "BitsStored 20 does not fit BitsAllocated 16"),
        ({"Rows": 0}, "Rows x Columns is 0x20"),
        ({"WindowCenter": 100, "WindowWidth": 0}, "invalid DICOM window"),
    ],
    ids=["bits8", "bits32", "spp3-mono", "spp3-rgb", "frames", "bitsstored", "rows0", "window0"],
)
def test_inconsistent_dicom_attributes_are_refused_naming_the_file(make_dicom, attrs, match):
    path = make_dicom("x.dcm", _u16(), **attrs)
    with pytest.raises(ImageReadError, match=match) as err:
        read_image(path)
    assert str(err.value).startswith(f"{path}: ")


def test_multiframe_dicom_gives_its_first_frame(make_dicom):
    frames = np.stack([_u16(), _u16()[::-1]])
    path = make_dicom("mf.dcm", frames, Rows=16, Columns=20, NumberOfFrames=2, SamplesPerPixel=1)
    first = read_image(make_dicom("one.dcm", _u16()))
    np.testing.assert_array_equal(read_image(path), first)


def test_strip_images_are_not_radiographs(make_image):
    with pytest.raises(ImageReadError, match="3x40 pixels: sides differ by more than 8x"):
        read_image(make_image("strip.png", np.zeros((40, 3), np.uint8)))
    _check_gray01(read_image(make_image("tall.png", np.zeros((40, 5), np.uint8))), (40, 5))


def test_any_decoder_exception_becomes_image_read_error(make_image, monkeypatch):
    path = make_image("a.png")

    def boom(img):
        raise KeyError("unexpected mode")

    monkeypatch.setattr(images, "_to_gray", boom)
    with pytest.raises(ImageReadError, match="a.png: cannot decode image \\(KeyError: 'unexpected mode'\\)"):
        read_image(path)


def test_reads_are_bounded_before_decoding(make_image, monkeypatch):
    from cxrkit.data import files

    path = make_image("a.png")
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 64)
    with pytest.raises(ImageReadError, match="above the 64-byte limit"):
        read_image(path)
