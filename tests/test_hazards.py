"""Hostile inputs, each generated here with its documented outcome (see README, "Messy data").

Decoding (``transforms.codec.decode_image``) and the whole job on a folder and on an archive full of hazards.
"""

import bz2
import gzip
import io
import json
import lzma
import os
import struct
import tarfile
import zlib

import numpy as np
import pytest
from PIL import Image

from beam_jobs.errors import UserError
from beam_jobs.sources import archive
from beam_jobs.sources.archive import list_archive
from tests.fixtures import encode, make_tgz, one_clean_line, photo_like, read_tfrecords, run_command
from tests.test_pipeline_e2e import run
from transforms.codec import DecodeError, decode_image

RGB = photo_like(np.random.default_rng(5), 40, 60)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def reason(data: bytes, **kw) -> str:
    with pytest.raises(DecodeError) as e:
        decode_image(data, **kw)
    return e.value.reason


def test_empty_random_html_and_documents_are_rejected():
    assert reason(b"") == "empty_file"
    assert reason(np.random.default_rng(0).bytes(5000)) == "not_an_image"
    assert reason(b"<!DOCTYPE html><html><body>404 Not Found</body></html>") == "not_an_image"
    assert reason(b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer\n%%EOF") == "not_an_image"
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    assert reason(eps) in ("format_not_allowed", "not_an_image")  # never rendered (Ghostscript is never run)
    fits = b"SIMPLE  =                    T".ljust(80) + b"BITPIX  =                    8".ljust(80)
    assert reason(fits + b"END".ljust(80) * 34) in ("format_not_allowed", "not_an_image", "corrupt")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("fraction", [0.5, 0.99])
def test_truncated_files_are_rejected_never_padded(fmt, fraction):
    data = encode(RGB, fmt)
    assert reason(data[: int(len(data) * fraction)]) == "corrupt"


def test_png_with_a_corrupt_chunk():
    data = bytearray(encode(RGB, "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF
    assert reason(bytes(data)) == "corrupt"


def tiff_without_dimensions() -> bytes:
    """A 4x4 TIFF with one byte of its directory set to 0xFF: Pillow opens it, then its ``n_frames`` raises
    ``TypeError("Missing dimensions")`` (/tmp/review2/mktiff.py found it by flipping bytes)."""
    data = bytearray(save(Image.fromarray(np.random.default_rng(0).integers(0, 255, (4, 4, 3), np.uint8)), "TIFF"))
    data[130] = 0xFF
    return bytes(data)


def test_a_tiff_pillow_fails_with_a_type_error_is_corrupt():
    # Pillow's TIFF plugin reports the malformed directory with a TypeError, which ended the whole run.
    with pytest.raises(DecodeError, match="TypeError: Missing dimensions") as e:
        decode_image(tiff_without_dimensions())
    assert e.value.reason == "corrupt"


def test_decompression_bombs_are_rejected_from_the_header():
    assert reason(png_header_only(20000, 20000)) == "too_large"
    # Between Pillow's warning (89.5 Mpx) and error (179 Mpx) limits, even with our own cap raised.
    assert reason(png_header_only(10000, 10000), max_pixels=500_000_000) == "too_large"
    assert reason(png_header_only(40000, 10), max_side=32768) == "too_large"


def header_only(fmt: str, width: int, height: int) -> bytes:
    """A ``fmt`` file declaring ``width`` x ``height`` that ends right after its header (a bomb's first bytes)."""
    pil = Image.fromarray(RGB)
    if fmt == "PNG":
        return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    if fmt == "JPEG":
        data = bytearray(encode(RGB, "JPEG"))
        sof = data.index(b"\xff\xc0")
        data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
        return bytes(data[: sof + 2 + struct.unpack(">H", data[sof + 2 : sof + 4])[0]])
    if fmt == "GIF":
        return save(pil, "GIF")[:6] + struct.pack("<HH", width, height) + b"\x00\x00\x00"
    if fmt == "BMP":
        data = bytearray(save(pil, "BMP"))
        data[18:26] = struct.pack("<ii", width, height)
        return bytes(data[:54])
    if fmt == "TIFF":
        data = bytearray(save(pil, "TIFF"))
        (ifd,) = struct.unpack("<I", data[4:8])
        (count,) = struct.unpack("<H", data[ifd : ifd + 2])
        for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
            tag, kind = struct.unpack("<HH", data[entry : entry + 4])
            if tag in (256, 257):
                side = width if tag == 256 else height
                data[entry + 8 : entry + 12] = struct.pack("<HH", side, 0) if kind == 3 else struct.pack("<I", side)
        return bytes(data[: ifd + 2 + 12 * count + 4])  # the IFD, without the values it points to
    if fmt == "WEBP":  # lossy: 14-bit sides after the frame's start code
        data = bytearray(save(pil, "WEBP", quality=80))
        data[26:30] = struct.pack("<HH", width, height)
        return bytes(data[:30])
    if fmt == "WEBP-lossless":
        data = bytearray(save(pil, "WEBP", lossless=True))
        bits = int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1)
        data[21:25] = (bits | (width - 1) | (height - 1) << 14).to_bytes(4, "little")
        return bytes(data[:25])
    assert fmt == "WEBP-extended"
    vp8x = (
        b"VP8X"
        + struct.pack("<I", 10)
        + b"\x00" * 4
        + (width - 1).to_bytes(3, "little")
        + (height - 1).to_bytes(3, "little")
    )
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "WEBP-lossless", "WEBP-extended"])
def test_a_bomb_cut_right_after_its_header_is_too_large(fmt):
    # Pillow reads past the header before it reports a size (a PNG's chunks up to IDAT, a GIF's first frame, a
    # WebP's bitstream): cut there, a bomb was not_an_image or corrupt. The header's claim decides.
    webp = fmt.startswith("WEBP")
    big = 16383 if webp else 40000  # a WebP frame's sides have 14 bits
    assert reason(header_only(fmt, big, big)) == "too_large"  # over 64 Mpx
    if not webp:
        assert reason(header_only(fmt, 40000, 2)) == "too_large"  # a side over 32768 px
    assert reason(header_only(fmt, 100, 100)) in ("not_an_image", "corrupt")  # no bomb: damaged, as before


def test_a_header_that_breaks_off_or_fails_its_checksum_declares_nothing():
    bomb = header_only("PNG", 100000, 100000)
    assert reason(bomb[:-2]) == "not_an_image"  # the IHDR chunk's CRC is cut
    assert reason(bomb[:-4] + b"\x00" * 4) in ("not_an_image", "corrupt")  # a wrong CRC: the sides may be damage
    jpeg = header_only("JPEG", 60000, 60000)
    assert reason(jpeg[:-3]) in ("not_an_image", "corrupt")  # the frame header breaks off


def test_degenerate_sizes():
    assert reason(png_header_only(0, 10)) in ("corrupt", "empty_image", "not_an_image")
    image, step = decode_image(encode(RGB[:1, :1], "PNG"))
    assert image.shape == (1, 1, 3) and step["params"]["width"] == 1


def test_extension_does_not_matter_the_content_does():
    image, step = decode_image(encode(RGB, "PNG"))
    assert step["params"]["format"] == "PNG" and np.array_equal(image, RGB)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation):
    from PIL import ImageOps

    pil = Image.fromarray(RGB)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = save(pil, "PNG", exif=exif.tobytes())
    image, step = decode_image(data)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert np.array_equal(image, expected) and step["params"]["exif_orientation"] == orientation
    assert image.shape[:2] == ((60, 40) if orientation >= 5 else (40, 60))


def test_malformed_exif_keeps_the_pixels():
    jpeg = bytearray(encode(RGB, "JPEG"))
    bad_app1 = b"\xff\xe1" + struct.pack(">H", 20) + b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff\x00\x00"
    data = bytes(jpeg[:2]) + bad_app1 + bytes(jpeg[2:])
    image, step = decode_image(data)
    assert image.shape == (40, 60, 3) and step["params"]["exif_orientation"] in (0, 1)


def test_cmyk_including_adobe_inverted_jpeg():
    cmyk = Image.fromarray(RGB).convert("CMYK")
    image, step = decode_image(save(cmyk, "JPEG", quality=95))
    assert step["params"]["mode"] == "CMYK" and image.shape == (40, 60, 3)
    assert np.abs(image.astype(int) - RGB.astype(int)).mean() < 12  # same picture, not inverted


def test_transparency_is_composited_on_white():
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0
    image, _ = decode_image(encode(rgba, "PNG"))
    assert (image[:10, :10] == 255).all() and np.array_equal(image[20:, 20:], RGB[20:, 20:])
    la = Image.fromarray(rgba).convert("LA")
    image, _ = decode_image(save(la, "PNG"))
    assert (image[:10, :10] == 255).all()
    pal = Image.fromarray(RGB).convert("P")
    data = save(pal, "PNG", transparency=int(np.asarray(pal)[0, 0]))
    image, _ = decode_image(data)
    assert tuple(image[0, 0]) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_not_clipped(fmt):
    grey = (np.arange(40 * 60, dtype=np.uint32).reshape(40, 60) * 27).astype(np.uint16)
    data = save(Image.fromarray(grey), fmt)
    image, _ = decode_image(data)
    assert np.array_equal(image[:, :, 0], (grey >> 8).astype(np.uint8))
    assert len(np.unique(image)) > 100


@pytest.mark.parametrize("mode", ["1", "L", "I", "F"])
def test_other_modes_decode(mode):
    image, step = decode_image(save(Image.fromarray(RGB).convert(mode), "TIFF"))
    assert image.shape == (40, 60, 3) and image.dtype == np.uint8 and step["params"]["mode"] == mode


def test_float_images_with_nan_or_inf_scale_over_their_finite_pixels():
    """NaN and -inf take the darkest value, +inf the brightest; an image without one finite pixel is empty."""
    pixels = np.array([[0.0, 1.0, 2.0], [4.0, np.nan, np.inf], [-np.inf, 4.0, 0.0]], dtype=np.float32)
    image, step = decode_image(save(Image.fromarray(pixels), "TIFF"))
    assert step["params"]["mode"] == "F"
    assert image[:, :, 0].tolist() == [[0, 64, 128], [255, 0, 255], [0, 255, 0]]
    with pytest.raises(DecodeError) as e:
        decode_image(save(Image.fromarray(np.full((3, 3), np.nan, np.float32)), "TIFF"))
    assert e.value.reason == "empty_image"


def test_animated_gif_and_multipage_tiff_give_frame_zero():
    frames = [Image.fromarray(RGB), Image.fromarray(255 - RGB)]
    for fmt in ("GIF", "TIFF"):
        data = save(frames[0], fmt, save_all=True, append_images=frames[1:])
        image, step = decode_image(data)
        assert step["params"]["frames"] == 2
        assert np.abs(image.astype(int) - RGB.astype(int)).mean() < 20  # the first frame (GIF is palettized)


def test_the_job_on_a_messy_folder(tmp_path, cache_dir):
    root = tmp_path / "messy"
    good = encode(RGB, "JPEG")
    files = {
        "cats/ok.jpg": good,
        "cats/same_bytes.jpg": good,  # identical bytes at two paths: both expanded, reported as duplicates
        "cats/png_named.jpg": encode(RGB, "PNG"),
        "cats/empty.jpg": b"",
        "dogs/cut.jpg": good[: len(good) // 2],
        "dogs/page.jpg": b"<html></html>",
        "dogs/bomb.png": png_header_only(20000, 20000),
        "dogs/no_dimensions.tif": tiff_without_dimensions(),
        "dogs/notes.txt": b"not an image",
        "README.md": b"root files are ignored",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    out = tmp_path / "out"
    manifest = run(out, source=str(root), copies=2, cache_dir=str(cache_dir))
    dead = {d["source_key"]: d for d in map(json.loads, (out / "dead_letter.jsonl").read_text().splitlines())}
    assert {k: d["reason"] for k, d in dead.items()} == {
        "cats/empty.jpg": "empty_file",
        "dogs/cut.jpg": "corrupt",
        "dogs/page.jpg": "not_an_image",
        "dogs/bomb.png": "too_large",
        "dogs/no_dimensions.tif": "corrupt",
    }
    c = manifest["counts"]
    assert (c["images_in"], c["images_ok"], c["dead_letters"], c["skipped_non_images"], c["ignored_files"]) == (
        8, 3, 5, 1, 1,
    )  # fmt: skip
    assert len(read_tfrecords(out)) == 6
    assert manifest["duplicate_content"] == [["cats/ok.jpg", "cats/same_bytes.jpg"]]
    assert all(e["sha256"] for e in manifest["listing"]["images"])


ALL_BAD = {
    "cats/empty.jpg": ("empty_file", b""),
    "cats/page.jpg": ("not_an_image", b"<html></html>"),
    "dogs/cut.jpg": ("corrupt", encode(RGB, "JPEG")[:300]),
    "dogs/page.png": ("not_an_image", b"%PDF-1.4"),
}


def _all_bad_source(tmp_path, kind: str) -> list[str]:
    """A folder, archive or list file whose every image exists and none decodes; returns its source flags."""
    root = tmp_path / "bad"
    for name, (_, data) in ALL_BAD.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    if kind == "archive":
        return ["--source", make_tgz(root, tmp_path / "bad.tgz")]
    if kind == "list":
        (root / "list.csv").write_text("".join(f"{name},{name.split('/')[0]}\n" for name in ALL_BAD))
        return ["--source", root / "list.csv", "--source-format", "list"]
    return ["--source", root]


@pytest.mark.parametrize("kind", ["folder", "archive", "list"])
def test_a_source_whose_every_image_is_bad_publishes_nothing_and_says_why(tmp_path, kind):
    # It published an empty dataset (0 records, 4 dead letters) and exited 0.
    out = tmp_path / "out"
    done = run_command("run", *_all_bad_source(tmp_path, kind), "--output", out, "--copies", "2", "--no-progress")
    assert done.returncode == 1
    line = one_clean_line(done.stderr)
    kept = tmp_path / "out.refused" / "dead_letter.jsonl"
    assert line.startswith("beam-expand: job failed: all 4 inputs were dead-lettered, so the dataset would be empty; "
                           "nothing was published. ")  # fmt: skip
    assert "Reasons: 2 not_an_image, 1 empty_file, 1 corrupt" in line  # commonest first, then in key order
    assert "e.g. cats/page.jpg (not_an_image: " in line and "cats/empty.jpg (empty_file: " in line
    assert f"Every dead letter is in {kept}" in line and "check that --source" in line
    assert not out.exists() and not list(tmp_path.glob("out.staging-*"))
    dead = [json.loads(line) for line in kept.read_text().splitlines()]
    assert {d["source_key"]: d["reason"] for d in dead} == {k: r for k, (r, _) in ALL_BAD.items()}


def test_a_file_name_that_is_not_utf8_is_ignored_and_listed(tmp_path, cache_dir):
    """A name a file system holds as bytes that are not UTF-8 is no key (keys are text): ignored and listed."""
    root = tmp_path / "src"
    for name in ("cats/ok.jpg", "dogs/ok.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(encode(RGB, name.rsplit(".", 1)[1].replace("jpg", "JPEG").upper()))
    (root / "dogs" / os.fsdecode(b"caf\xe9.jpg")).write_bytes(encode(RGB, "JPEG"))
    out = tmp_path / "out"
    manifest = run(out, source=str(root), copies=2, cache_dir=str(cache_dir))
    c = manifest["counts"]
    assert (c["images_in"], c["images_ok"], c["dead_letters"], c["ignored_files"]) == (2, 2, 0, 1)
    assert manifest["listing"]["ignored"] == ["dogs/caf\\udce9.jpg"] and len(read_tfrecords(out)) == 4


def test_a_dangling_link_in_a_class_folder_is_an_unreadable_dead_letter(tmp_path, cache_dir):
    """A link whose target is gone is listed like a file that vanished before it was read: never silently dropped."""
    root = tmp_path / "src"
    for name in ("cats/ok.jpg", "dogs/ok.jpg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(encode(RGB, "JPEG"))
    (root / "dogs" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    out = tmp_path / "out"
    manifest = run(out, source=str(root), copies=2, cache_dir=str(cache_dir))
    c = manifest["counts"]
    assert (c["images_in"], c["images_ok"], c["dead_letters"]) == (3, 2, 1)
    assert dead(out) == {"dogs/gone.jpg": "unreadable"} and len(read_tfrecords(out)) == 4


def test_preview_passes_over_a_source_it_cannot_read(tmp_path, capsys):
    """A class whose only file is a dangling link gets no row; the others still do (preview crashed on opening it)."""
    from beam_jobs.cli import main

    root = tmp_path / "src"
    (root / "cats").mkdir(parents=True)
    (root / "cats" / "ok.jpg").write_bytes(encode(RGB, "JPEG"))
    (root / "dogs").mkdir()
    (root / "dogs" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    assert main(["preview", "--source", str(root), "--out", str(tmp_path / "p.png"), "--copies", "2"]) == 0
    assert "1 row(s) x 2 copies" in capsys.readouterr().out and (tmp_path / "p.png").stat().st_size > 0


def _tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]], mode="w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info, None


def test_the_job_on_a_hostile_archive(tmp_path, cache_dir, monkeypatch):
    good = encode(RGB, "JPEG")
    inner = _tar_bytes([_file("x.jpg", good)], mode="w")
    members = [
        _file("root/cats/a.jpg", good),
        _file("root/cats/a.jpg", encode(255 - RGB, "JPEG")),  # duplicate name: the first wins
        _file("root/cats/big.jpg", b"\0" * 50_000),  # over the (lowered) member cap
        _file("root/dogs/b.jpg", good),
        _file("root/dogs/nested.tar", inner),  # archives inside archives are not opened
        _file("../escape.jpg", good),
        _file("/abs/x.jpg", good),
        _file("root/__MACOSX/cats/._a.jpg", b"junk"),
        _file("root/cats/.DS_Store", b"junk"),
        _special("root/cats/link.jpg", tarfile.SYMTYPE, "/etc/passwd"),
        _special("root/cats/hard.jpg", tarfile.LNKTYPE, "root/cats/a.jpg"),
        _special("root/dogs/dev.jpg", tarfile.CHRTYPE),
        _file("root/dogs/caf\udce9.jpg", good),  # a non-UTF-8 name (the byte 0xE9)
    ]
    tgz = tmp_path / "hostile.tgz"
    tgz.write_bytes(_tar_bytes(members))
    monkeypatch.setattr(archive, "MAX_MEMBER_BYTES", 20_000)
    out = tmp_path / "out"
    manifest = run(out, source=str(tgz), copies=1, cache_dir=str(cache_dir))
    rows = read_tfrecords(out)
    assert sorted(r["source_key"] for r in rows) == ["cats/a.jpg", "dogs/b.jpg"]
    a = next(r for r in rows if r["source_key"] == "cats/a.jpg")
    assert json.loads(a["recipe"])[0]["params"]["height"] == 40  # the first a.jpg, not the second
    dead = [json.loads(x) for x in (out / "dead_letter.jsonl").read_text().splitlines()]
    assert [(d["source_key"], d["reason"]) for d in dead] == [("cats/big.jpg", "too_large")]
    ignored = manifest["listing"]["ignored"]
    for name in ("../escape.jpg", "/abs/x.jpg", "root/cats/link.jpg", "root/cats/hard.jpg", "root/dogs/dev.jpg",
                 "root/cats/a.jpg (duplicate member name)", "__MACOSX/cats/._a.jpg", "cats/.DS_Store"):  # fmt: skip
        assert name in ignored, (name, ignored)
    assert any("caf" in n for n in ignored) and manifest["listing"]["skipped"] == ["dogs/nested.tar"]
    assert not (tmp_path / "escape.jpg").exists()


def test_a_truncated_archive_keeps_what_came_before(tmp_path, cache_dir):
    members = [_file(f"root/c{i % 2}/{i:03d}.png", encode(photo_like(np.random.default_rng(i), 64, 64), "PNG"))
               for i in range(30)]  # fmt: skip
    data = _tar_bytes(members)
    tgz = tmp_path / "cut.tgz"
    tgz.write_bytes(data[: int(len(data) * 0.6)])
    listing, _, _ = list_archive(str(tgz))
    assert 5 < len(listing.images) < 30 and "damaged" in listing.problems[0]
    out = tmp_path / "out"
    manifest = run(out, source=str(tgz), copies=1, cache_dir=str(cache_dir))
    c = manifest["counts"]
    assert c["images_in"] == len(listing.images) == c["images_ok"] + c["dead_letters"]
    assert "damaged" in manifest["listing"]["problems"][0]


def _selected(listing) -> dict[str, tuple[int, str]]:
    return {s.key: (s.label, s.label_name) for s in listing.images}


def _distinct_members(n: int = 30) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Members of distinct images (identical ones would compress to nothing after the first)."""
    return [_file(f"root/c{i % 2}/{i:03d}.png", encode(photo_like(np.random.default_rng(i), 64, 64), "PNG"))
            for i in range(n)]  # fmt: skip


def test_a_truncated_archive_is_read_up_to_the_damage_and_the_rest_dead_lettered(tmp_path):
    whole = tmp_path / "whole.tgz"
    whole.write_bytes(_tar_bytes(_distinct_members()))
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    listing, prefix, _ = list_archive(str(whole))
    read = list(archive.ReadArchiveFn(prefix, _selected(listing)).process(str(cut)))
    damaged = [s.key for s in read if s.error == "archive_damaged"]
    assert len(read) == 30 and 5 < len(damaged) < 30 and all(s.data for s in read if s.error is None)


def _broken_tar(how: str, n: int = 20, at: int = 16) -> bytes:
    """An uncompressed tar of ``n`` distinct members that breaks off ``how``, at member ``at``'s header.

    Each is damage at which Python's tarfile ends its iteration without an error, as if the archive ended there.
    """
    members = _distinct_members(n)
    whole = _tar_bytes(members, mode="w")
    header = tarfile.open(fileobj=io.BytesIO(whole)).getmembers()[at].offset
    if how == "corrupt_header":  # a flipped byte in a name fails the header's checksum
        return whole[: header + 3] + bytes([whole[header + 3] ^ 0xFF]) + whole[header + 4 :]
    assert how == "cut_between_members"  # no end-of-archive marker
    return whole[:header]


BREAKS = {"corrupt_header": "corrupt member header", "cut_between_members": "without its end-of-archive marker"}


@pytest.mark.parametrize("how", BREAKS)
@pytest.mark.parametrize("compressed", [False, True], ids=["tar", "tgz"])
def test_damage_tarfile_passes_over_in_silence_is_reported(tmp_path, how, compressed):
    data = _broken_tar(how)
    path = tmp_path / ("a.tgz" if compressed else "a.tar")
    path.write_bytes(gzip.compress(data) if compressed else data)
    listing, prefix, _ = list_archive(str(path))
    assert len(listing.images) == 16
    assert listing.problems == [listing.problems[0]] and "damaged after 16 members" in listing.problems[0]
    assert BREAKS[how] in listing.problems[0], listing.problems
    whole = tmp_path / "whole.tar"
    whole.write_bytes(_tar_bytes(_distinct_members(20), mode="w"))
    read = list(archive.ReadArchiveFn(prefix, _selected(list_archive(str(whole))[0])).process(str(path)))
    assert len(read) == 20 and sum(s.error == "archive_damaged" for s in read) == 4
    with pytest.raises(UserError, match="is damaged"):  # replay of a member after the damage: no traceback
        archive.read_members(str(path), {"root/c1/019.png"})


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_a_whole_archive_is_no_damage(tmp_path, mode):
    path = tmp_path / "a.tar"
    path.write_bytes(_tar_bytes(_distinct_members(3), mode=mode))
    listing, _, _ = list_archive(str(path))
    assert len(listing.images) == 3 and listing.problems == []
    data = _tar_bytes(_distinct_members(3), mode="w")
    tar = tarfile.open(fileobj=io.BytesIO(data))
    tar.getmembers()
    end = tar.offset  # where the end-of-archive marker starts
    for marker in (1024, 512):  # the marker without the padding to a 10 KB record; a lone zero block (GNU tar's)
        path.write_bytes(data[: end + marker])
        assert list_archive(str(path))[0].problems == []


def _marker_offset(tar_data: bytes) -> int:
    """Where a tar's end-of-archive marker starts (its first zero block)."""
    tar = tarfile.open(fileobj=io.BytesIO(tar_data))
    tar.getmembers()
    return tar.offset


# What writers and downloads put after a tar's end-of-archive marker, in the tar (``tail``, compressed with it) or
# after the compressed stream (``after``): the archive is whole, as GNU tar (without -i) and tarfile read it.
_PIXZ_INDEX = bytes.fromhex("dbae14d62e324ca6") + b"root/c0/000.png\0" + bytes(range(1, 200)) * 50  # non-zero
AFTER_THE_END = {
    "pixz_index": dict(tail=_PIXZ_INDEX),  # pixz appends its file index after the marker, in the xz stream
    "appended_archive": dict(tail="appended"),  # GNU tar stops at the first archive's marker (without -i)
    "lone_zero_block_then_data": dict(tail="lone"),  # GNU tar accepts a lone zero block as the marker
    "xz_stream_padding": dict(after=bytes(20480), modes=["w:xz"]),  # the decompressor raises if fed past the end
    "bytes_after_the_stream": dict(after=b"\x01junk" * 4000, modes=["w:bz2", "w:gz"]),
}


def _after_the_end(kind: str, mode: str) -> bytes:
    """An archive of 16 members written with ``mode`` that holds ``AFTER_THE_END[kind]`` after its marker."""
    how = AFTER_THE_END[kind]
    members = _distinct_members(20)
    data = _tar_bytes(members[:16], mode="w")
    end = _marker_offset(data)
    if how.get("tail") == "appended":
        data += _tar_bytes(members[16:], mode="w")
    elif how.get("tail") == "lone":  # one zero block, then members (as a header zeroed by damage would leave)
        data = data[: end + 512] + _tar_bytes(members[16:], mode="w")
    elif "tail" in how:
        data += how["tail"]
    compress = {"w": bytes, "w:gz": gzip.compress, "w:bz2": bz2.compress, "w:xz": lzma.compress}[mode]
    return compress(data) + how.get("after", b"")


_CASES = [(k, m) for k, v in AFTER_THE_END.items() for m in v.get("modes", ["w", "w:gz", "w:bz2", "w:xz"])]


@pytest.mark.parametrize(("kind", "mode"), _CASES, ids=[f"{k}-{m}" for k, m in _CASES])
def test_what_follows_the_end_of_archive_marker_is_no_damage(tmp_path, kind, mode):
    # Earlier the archive was read on past the marker and any non-zero byte there, or the decompressor's error at
    # padding or bytes after its stream, was damage: valid pixz, padded xz and bz2 archives were reported damaged.
    path = tmp_path / "a.tar"
    path.write_bytes(_after_the_end(kind, mode))
    listing, prefix, _ = list_archive(str(path))
    assert len(listing.images) == 16 and listing.problems == []
    read = list(archive.ReadArchiveFn(prefix, _selected(listing)).process(str(path)))
    assert len(read) == 16 and all(s.error is None and s.data for s in read)
    assert set(archive.read_members(str(path), {"root/c1/015.png"})) == {"root/c1/015.png"}


def test_an_archive_cut_short_in_its_marker_is_damage(tmp_path):
    data = _tar_bytes(_distinct_members(4), mode="w")
    path = tmp_path / "a.tar.xz"
    path.write_bytes(lzma.compress(data[: _marker_offset(data) + 100]))  # part of a zero block only
    assert "without its end-of-archive marker" in list_archive(str(path))[0].problems[0]


def test_the_job_on_an_archive_with_a_corrupt_member_header(tmp_path, cache_dir):
    path = tmp_path / "a.tgz"
    path.write_bytes(gzip.compress(_broken_tar("corrupt_header")))
    out = tmp_path / "out"
    manifest = run(out, source=str(path), copies=1, cache_dir=str(cache_dir))
    c = manifest["counts"]
    assert c["images_in"] == 16 == c["images_ok"] + c["dead_letters"] and c["images_ok"] == 16
    assert len(read_tfrecords(out)) == 16 * 1
    assert "corrupt member header" in manifest["listing"]["problems"][0]


@pytest.mark.parametrize("error", [ConnectionResetError(104, "Connection reset by peer"), TimeoutError("timed out"),
                                   PermissionError(13, "Permission denied"), OSError("plain")],
                         ids=lambda e: type(e).__name__)  # fmt: skip
def test_a_failed_archive_read_is_no_damage(tmp_path, error):
    # A read that fails mid-archive (a reset download) says nothing about the members after it: listing and reading
    # raise (the launcher stops, the runner retries the bundle) rather than list fewer or dead-letter the rest.
    from beam_jobs.errors import SourceReadError
    from tests import objectstore as store

    data = _tar_bytes(_distinct_members())
    path = "objstore://bucket/a.tgz"
    local = tmp_path / "a.tgz"
    local.write_bytes(data)
    listing, prefix, _ = list_archive(str(local))
    store.OBJECTS[path] = (data, 0.0)
    store.FAILURES[path] = (len(data) // 2, len(data) // 2 + 1, error)
    try:
        with pytest.raises(SourceReadError, match="cannot read objstore://bucket/a.tgz") as raised:
            list_archive(path)
        assert raised.value.__cause__ is error
        with pytest.raises(SourceReadError):
            list(archive.ReadArchiveFn(prefix, _selected(listing)).process(path))
    finally:
        store.OBJECTS.clear()
        store.FAILURES.clear()
    local.unlink()  # gone by the time a worker reads it
    with pytest.raises(SourceReadError, match="FileNotFoundError"):
        list(archive.ReadArchiveFn(prefix, _selected(listing)).process(str(local)))


# The command as a user runs it, with the source archive deleted once it is listed and the pipeline built: only
# the workers' read fails (they are forked, or started, after that).
_VANISHING_SOURCE = """
import logging, os, sys
logging.getLogger().setLevel(logging.ERROR)  # as cli.main does, before Beam's import-time warnings
from beam_jobs import cli, pipeline
build = pipeline.build_pipeline
def build_then_delete(*args, **kwargs):
    built = build(*args, **kwargs)
    os.remove(os.environ["VANISHING_SOURCE"])
    return built
pipeline.build_pipeline = build_then_delete
cli.console()
"""


@pytest.mark.parametrize("workers", [[], ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]],
                         ids=["in_process", "2_workers"])  # fmt: skip
def test_an_archive_that_vanishes_during_the_run_ends_it_in_one_line(image_folder, tmp_path, workers):
    # With worker processes the run ended in FnApiRunner's RuntimeError traceback (~230 lines) and no message; in
    # process the message followed Beam's logged traceback of the SourceReadError.
    import subprocess
    import sys

    source, out = make_tgz(image_folder, tmp_path / "a.tgz"), tmp_path / "out"
    argv = [sys.executable, "-c", _VANISHING_SOURCE, "run", "--source", str(source), "--output", str(out),
            "--no-progress", *workers]  # fmt: skip
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=300, env={**os.environ, "VANISHING_SOURCE": str(source)}
    )
    assert done.returncode == 1, done.stderr
    expected = f"beam-expand: error: cannot read {source} (FileNotFoundError: [Errno 2]"
    if not workers:
        assert one_clean_line(done.stderr).startswith(expected)
    else:  # a worker process prints and logs the failed bundle itself (Beam's harness); the command's end is one line
        assert done.stderr.strip().splitlines()[-1].startswith(expected), done.stderr
        assert "RuntimeError" not in done.stderr
    assert not out.exists() and not list(tmp_path.glob("out.*"))


def test_one_hundred_thousand_empty_members_are_counted(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info, data = _file("root/c/real.png", encode(RGB, "PNG"))
        tar.addfile(info, io.BytesIO(data))
        empty = tarfile.TarInfo()
        for i in range(100_000):
            empty.name = f"root/c/e{i}"
            tar.addfile(empty)
    path = tmp_path / "many.tar"
    path.write_bytes(buf.getvalue())
    listing, _, _ = list_archive(str(path))
    assert len(listing.images) == 1 and len(listing.skipped) == 100_000


def test_a_gzip_bomb_costs_time_not_memory(tmp_path, cache_dir, monkeypatch):
    import resource

    monkeypatch.setattr(archive, "MAX_MEMBER_BYTES", 8 * 1024 * 1024)  # the default cap is 256 MB
    path = tmp_path / "bomb.tgz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        info, data = _file("root/c/ok.png", encode(RGB, "PNG"))
        tar.addfile(info, io.BytesIO(data))
        zeros = tarfile.TarInfo("root/c/huge.png")
        zeros.size = 96 * 1024 * 1024  # compresses to ~100 KB

        class Zeros(io.RawIOBase):
            left = zeros.size

            def readable(self):
                return True

            def readinto(self, b):
                n = min(len(b), self.left)
                b[:n] = b"\0" * n
                self.left -= n
                return n

        tar.addfile(zeros, io.BufferedReader(Zeros()))
    assert path.stat().st_size < 2_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = tmp_path / "out"
    m = run(out, source=str(path), copies=1, cache_dir=str(cache_dir))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert dead(out) == {"c/huge.png": "too_large"} and m["counts"]["images_ok"] == 1
    assert grown_mb < 48  # the 96 MB member was never held in memory


def dead(out):
    return {d["source_key"]: d["reason"] for d in map(json.loads, (out / "dead_letter.jsonl").read_text().splitlines())}
