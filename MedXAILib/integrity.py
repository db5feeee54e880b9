"""Refusing truncated and corrupt image files before ITK reads them.

ITK fills what it cannot read with zeros and returns: a NIfTI file cut in half reads as a complete volume whose
second half is 0 (a ``.nii.gz`` too, since the gzip end-of-stream and CRC are never checked), and JPEG and BMP files
likewise. :func:`check_image_file` therefore checks every file against what its own header promises, streaming
through the data without keeping it:

- gzip layers (``.nii.gz``, NRRD ``encoding: gzip``, compressed MetaImage): the stream must end properly and its
  CRC and length must match;
- NIfTI-1/2, NRRD, MetaImage: the header must be well-formed (dimensions, data type, data offset) and the data must
  be exactly as long as the header says (fewer bytes: truncated; more: a corrupt header);
- PNG: every chunk's CRC, up to ``IEND``; JPEG: the end-of-image marker after the last scan; BMP: the pixel rows the
  header describes.

Before any of that, the size the header promises is checked against the memory bound (:mod:`MedXAILib.memory`), so a
small ``.nii.gz`` that expands to 1200³ voxels is refused with the estimate instead of exhausting memory.
Every message names the file.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Callable

from . import memory
from .errors import InputError

CHUNK = 1 << 20
#: Working copies of the image a command keeps at once (the file's array, float32 copy, normalised, resampled).
WORKING_COPIES_FLOAT32 = 3

# NIfTI datatype code -> bits per voxel (nifti1.h)
NIFTI_BITPIX = {
    2: 8, 4: 16, 8: 32, 16: 32, 32: 64, 64: 64, 128: 24, 256: 8, 512: 16, 768: 32, 1024: 64, 1280: 64,
    1536: 128, 1792: 128, 2048: 256, 2304: 32,
}


class _CorruptError(Exception):
    """Internal: raised by the format checks with the reason; turned into an InputError naming the file."""


def check_image_file(path: str | Path) -> None:
    """Refuse a file that is empty, truncated, corrupt or too large to read (see the module docstring).

    Formats without a check here (TIFF, DICOM, …) pass; ITK refuses those itself when they are truncated.

    Raises:
        InputError: naming the file, what is wrong and, where it helps, the fix.
    """
    p = Path(path)
    if not p.is_file():
        return
    size = p.stat().st_size
    if size == 0:
        raise InputError(f"{p}: the file is empty (0 bytes)")
    name = p.name.lower()
    check: Callable[[Path], None] | None = None
    if name.endswith((".nii", ".nii.gz", ".hdr", ".hdr.gz")):
        check = _check_nifti
    elif name.endswith((".nrrd", ".nhdr")):
        check = _check_nrrd
    elif name.endswith((".mha", ".mhd")):
        check = _check_metaimage
    elif name.endswith(".png"):
        check = _check_png
    elif name.endswith((".jpg", ".jpeg")):
        check = _check_jpeg
    elif name.endswith(".bmp"):
        check = _check_bmp
    elif name.endswith(".gz"):
        check = _check_gzip_file
    if check is None:
        return
    try:
        check(p)
    except _CorruptError as exc:
        reason = str(exc)
        if reason.startswith(("is ", "has ", "holds ")):
            reason = "the file " + reason
        raise InputError(f"{p}: {reason}; it is damaged (an interrupted copy or download?): copy it again") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot be read ({exc.strerror or exc})") from None


def check_memory(path: Path, shape: list[int], bytes_per_voxel: float, kind: str) -> None:
    """Refuse an image whose voxels (with the float32 working copies a command makes) would not fit in memory."""
    nvox = math.prod(shape)
    need = nvox * (bytes_per_voxel + 4 * WORKING_COPIES_FLOAT32)
    memory.require(
        need, f"{path}: reading this {' x '.join(map(str, shape))} {kind} image",
        "crop or downsample it first, or raise the limit",
    )


# ---- streams --------------------------------------------------------------------------------------------------
def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")  # type: ignore[return-value]


def _count_rest(fh: BinaryIO, where: str) -> int:
    """Bytes left in ``fh`` (decompressing through it: gzip end-of-stream, CRC and length are checked)."""
    total = 0
    try:
        while True:
            block = fh.read(CHUNK)
            if not block:
                return total
            total += len(block)
    except EOFError:
        raise _CorruptError(f"the compressed {where} ends early (truncated)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise _CorruptError(f"the compressed {where} is corrupt ({exc})") from None


def _check_gzip_file(path: Path) -> None:
    if _is_gzip(path):
        with gzip.open(path, "rb") as fh:
            _count_rest(fh, "file")  # type: ignore[arg-type]


def _inflated_length(raw: BinaryIO, where: str) -> int:
    """Length of a zlib or gzip stream read from ``raw``; the stream must end properly."""
    d = zlib.decompressobj(47)  # 32 + 15: zlib or gzip header, detected
    total = 0
    try:
        while True:
            block = raw.read(CHUNK)
            if not block:
                break
            total += len(d.decompress(block))
            while d.unused_data and d.eof:  # concatenated gzip members
                rest = d.unused_data
                d = zlib.decompressobj(47)
                total += len(d.decompress(rest))
        total += len(d.flush())
    except zlib.error as exc:
        raise _CorruptError(f"the compressed {where} is corrupt ({exc})") from None
    if not d.eof:
        raise _CorruptError(f"the compressed {where} ends early (truncated)")
    return total


def _compare(actual: int, expected: int, what: str) -> None:
    if actual < expected:
        raise _CorruptError(f"is truncated: it holds {actual} of the {expected} bytes of {what} its header describes")
    if actual > expected:
        raise _CorruptError(
            f"holds {actual - expected} bytes more than the {expected} bytes of {what} its header describes "
            "(a corrupt header)"
        )


# ---- NIfTI ----------------------------------------------------------------------------------------------------
def _check_nifti(path: Path) -> None:
    try:
        _check_nifti_header_and_data(path)
    except _CorruptError:
        if _is_gzip(path):  # a damaged gzip stream garbles the header: say what is really wrong
            _check_gzip_file(path)
        raise


def _check_nifti_header_and_data(path: Path) -> None:
    with _open(path) as fh:
        try:
            head = fh.read(540)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise _CorruptError(f"the compressed file is corrupt or truncated ({exc or 'ends early'})") from None
        le, be = (struct.unpack(e + "i", head[:4])[0] for e in "<>") if len(head) >= 4 else (0, 0)
        if len(head) < 348:
            if 348 in (le, be) or 540 in (le, be):
                raise _CorruptError(f"is truncated: only {len(head)} bytes, shorter than a NIfTI header (348)")
            raise _CorruptError(f"is not a NIfTI file (only {len(head)} bytes, no NIfTI header)")
        if 348 in (le, be):
            header = _nifti1(head, "<" if le == 348 else ">")
        elif 540 in (le, be):
            if len(head) < 540:
                raise _CorruptError(f"is truncated: only {len(head)} bytes, shorter than a NIfTI-2 header (540)")
            header = _nifti2(head, "<" if le == 540 else ">")
        else:
            raise _CorruptError(f"is not a NIfTI file (its header size field is {le}, not 348 or 540)")
        shape, bitpix, vox_offset, single = header
        check_memory(path, shape, bitpix / 8, "NIfTI")
        data_bytes = math.prod(shape) * bitpix // 8
        if single:
            actual = len(head) + _count_rest(fh, "file")  # type: ignore[arg-type]
            _compare(actual, vox_offset + data_bytes, "header and image data")
            return
    # a .hdr/.img pair: the data lives in the .img file
    if not path.name.lower().endswith(".hdr"):
        return
    img = path.with_name(path.name[: -len(".hdr")] + ".img")
    for candidate in (img, img.with_name(img.name + ".gz")):
        if candidate.exists():
            with _open(candidate) as dfh:
                actual = _count_rest(dfh, "image file")  # type: ignore[arg-type]
            if actual < vox_offset + data_bytes:
                raise _CorruptError(
                    f"its image file {candidate.name} is truncated: {actual} of {vox_offset + data_bytes} bytes"
                )
            return
    raise _CorruptError(f"its image file {img.name} is missing")


def _nifti_common(dims: tuple[int, ...], datatype: int, bitpix: int, vox_offset: float, magic: bytes) -> tuple:
    if magic not in (b"n+1\0", b"ni1\0", b"n+2\0", b"ni2\0"):
        raise _CorruptError(f"has no valid NIfTI magic string (found {magic!r})")
    ndim = dims[0]
    if not 1 <= ndim <= 7:
        raise _CorruptError(f"has a corrupt header: dim[0] = {ndim} (the number of dimensions must be 1 to 7)")
    shape = [int(d) for d in dims[1 : 1 + ndim]]
    if any(d < 1 for d in shape):
        raise _CorruptError(f"has a corrupt header: dimensions {shape} (each must be at least 1)")
    if datatype not in NIFTI_BITPIX:
        raise _CorruptError(f"has a corrupt header: unknown data type code {datatype}")
    if bitpix != NIFTI_BITPIX[datatype]:
        raise _CorruptError(
            f"has a corrupt header: {bitpix} bits per voxel for data type {datatype} "
            f"(which has {NIFTI_BITPIX[datatype]})"
        )
    single = magic[1:2] == b"+"
    if not math.isfinite(vox_offset) or vox_offset < (348 if single else 0) or vox_offset != int(vox_offset):
        raise _CorruptError(f"has a corrupt header: image data offset {vox_offset}")
    return shape, bitpix, int(vox_offset), single


def _nifti1(head: bytes, e: str) -> tuple:
    dims = struct.unpack(e + "8h", head[40:56])
    datatype, bitpix = struct.unpack(e + "2h", head[70:74])
    vox_offset = struct.unpack(e + "f", head[108:112])[0]
    return _nifti_common(dims, datatype, bitpix, vox_offset, head[344:348])


def _nifti2(head: bytes, e: str) -> tuple:
    datatype, bitpix = struct.unpack(e + "2h", head[12:16])
    dims = struct.unpack(e + "8q", head[16:80])
    vox_offset = struct.unpack(e + "q", head[168:176])[0]
    return _nifti_common(dims, datatype, bitpix, float(vox_offset), head[4:8])


# ---- NRRD -----------------------------------------------------------------------------------------------------
def _nrrd_type_size(text: str) -> int | None:
    t = " ".join(text.lower().replace("_t", "").split())
    if t in ("float",):
        return 4
    if t in ("double",):
        return 8
    if "char" in t or t in ("int8", "uint8"):
        return 1
    if "short" in t or t.endswith("16"):
        return 2
    if "long long" in t or "longlong" in t or t.endswith("64"):
        return 8
    if t.endswith("32") or t in ("int", "uint", "signed int", "unsigned int"):
        return 4
    return None


def _read_text_header(fh: BinaryIO, limit: int = 1 << 20) -> tuple[list[str], int]:
    """Lines of a text header up to its first empty line (or EOF), and the byte offset after it."""
    lines: list[str] = []
    offset = 0
    while offset < limit:
        raw = fh.readline()
        if not raw:
            break
        offset += len(raw)
        line = raw.decode("latin-1").rstrip("\r\n")
        if not line:
            break
        lines.append(line)
    return lines, offset


def _check_nrrd(path: Path) -> None:
    with open(path, "rb") as fh:
        if not fh.read(7) == b"NRRD000":
            raise _CorruptError("is not a NRRD file (it does not start with NRRD000x)")
        fh.seek(0)
        lines, offset = _read_text_header(fh)
        fields: dict[str, str] = {}
        for line in lines[1:]:
            if line.startswith("#") or ":=" in line:
                continue
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
        try:
            sizes = [int(v) for v in fields.get("sizes", "").split()]
        except ValueError:
            raise _CorruptError(f"has a corrupt header: sizes {fields.get('sizes')!r}") from None
        if not sizes or any(s < 1 for s in sizes):
            raise _CorruptError(f"has a corrupt header: sizes {fields.get('sizes')!r}")
        size = _nrrd_type_size(fields.get("type", ""))
        if size is None:
            return  # "block" and other unusual types: left to ITK
        check_memory(path, sizes, size, "NRRD")
        expected = math.prod(sizes) * size
        encoding = fields.get("encoding", "raw").lower()
        skip = fields.get("byte skip", fields.get("byteskip", "0"))
        data_file = fields.get("data file", fields.get("datafile"))
        if skip.strip() != "0" or fields.get("line skip", fields.get("lineskip", "0")).strip() != "0":
            return  # data at an offset the header computes: left to ITK
        if data_file:
            if data_file.upper().startswith("LIST") or "%" in data_file or " " in data_file:
                return
            target = path.parent / data_file
            if not target.exists():
                raise _CorruptError(f"its data file {data_file} is missing")
            with open(target, "rb") as dfh:
                _nrrd_data(dfh, encoding, expected)
            return
        fh.seek(offset)
        _nrrd_data(fh, encoding, expected)  # type: ignore[arg-type]


def _nrrd_data(fh: BinaryIO, encoding: str, expected: int) -> None:
    if encoding == "raw":
        _compare(len(fh.read()), expected, "image data")
    elif encoding in ("gzip", "gz"):
        _compare(_inflated_length(fh, "image data"), expected, "image data")


# ---- MetaImage ------------------------------------------------------------------------------------------------
META_TYPE_SIZE = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}


def _check_metaimage(path: Path) -> None:
    with open(path, "rb") as fh:
        fields: dict[str, str] = {}
        offset = 0
        while offset < (1 << 20):
            raw = fh.readline()
            if not raw:
                break
            offset += len(raw)
            if not raw.strip():
                continue
            key, sep, value = raw.decode("latin-1").partition("=")
            if not sep:
                raise _CorruptError(f"has a corrupt MetaImage header line {raw[:60]!r}")
            fields[key.strip().lower()] = value.strip()
            if key.strip().lower() == "elementdatafile":
                break
        if "elementdatafile" not in fields:
            raise _CorruptError("has no ElementDataFile line, so its header is incomplete")
        try:
            dims = [int(v) for v in fields.get("dimsize", "").split()]
            channels = int(fields.get("elementnumberofchannels", "1"))
        except ValueError:
            raise _CorruptError(f"has a corrupt header: DimSize {fields.get('dimsize')!r}") from None
        if not dims or any(d < 1 for d in dims) or channels < 1:
            raise _CorruptError(f"has a corrupt header: DimSize {fields.get('dimsize')!r}")
        size = META_TYPE_SIZE.get(fields.get("elementtype", "").upper())
        if size is None or "headersize" in fields:
            return  # types and layouts left to ITK
        check_memory(path, dims[::-1], size * channels, "MetaImage")
        expected = math.prod(dims) * channels * size
        compressed = fields.get("compresseddata", "false").lower() == "true"
        data_name = fields["elementdatafile"]
        if data_name.upper() == "LOCAL":
            _meta_data(fh, compressed, expected)  # type: ignore[arg-type]
            return
    if data_name.upper().startswith("LIST") or "%" in data_name or " " in data_name:
        return
    target = path.parent / data_name
    if not target.exists():
        raise _CorruptError(f"its data file {data_name} is missing")
    with open(target, "rb") as dfh:
        _meta_data(dfh, compressed, expected)


def _meta_data(fh: BinaryIO, compressed: bool, expected: int) -> None:
    actual = _inflated_length(fh, "image data") if compressed else len(fh.read())
    _compare(actual, expected, "image data")


# ---- 2D formats -------------------------------------------------------------------------------------------------
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _check_png(path: Path) -> None:
    with open(path, "rb") as fh:
        if fh.read(8) != b"\x89PNG\r\n\x1a\n":
            raise _CorruptError("is not a PNG file (wrong signature)")
        first = True
        while True:
            head = fh.read(8)
            if len(head) < 8:
                raise _CorruptError("is truncated: the PNG ends before its IEND chunk")
            length, kind = struct.unpack(">I4s", head)
            data = fh.read(length)
            crc = fh.read(4)
            if len(data) < length or len(crc) < 4:
                raise _CorruptError(f"is truncated inside its {kind.decode('latin-1')} chunk")
            if zlib.crc32(kind + data) != struct.unpack(">I", crc)[0]:
                raise _CorruptError(f"is corrupt: the CRC of its {kind.decode('latin-1')} chunk does not match")
            if first:
                if kind != b"IHDR" or length < 13:
                    raise _CorruptError("is corrupt: a PNG starts with an IHDR chunk")
                width, height, depth, colour = struct.unpack(">IIBB", data[:10])
                if width < 1 or height < 1:
                    raise _CorruptError(f"has a corrupt header: {width} x {height} pixels")
                check_memory(path, [height, width], _PNG_CHANNELS.get(colour, 4) * max(depth, 8) / 8, "PNG")
                first = False
            if kind == b"IEND":
                return


def _check_jpeg(path: Path) -> None:
    data = path.read_bytes()
    if data[:2] != b"\xff\xd8":
        raise _CorruptError("is not a JPEG file (no start-of-image marker)")
    sos = data.rfind(b"\xff\xda")
    if sos < 0 or data.rfind(b"\xff\xd9") < sos:
        raise _CorruptError("is truncated: the JPEG has no end-of-image marker after its image data")
    i = 2
    while i + 9 < len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            check_memory(path, [height, width], data[i + 9], "JPEG")
            return
        i += 2 + length


def _check_bmp(path: Path) -> None:
    data = path.read_bytes()
    if data[:2] != b"BM" or len(data) < 34:
        raise _CorruptError("is not a BMP file, or its header is truncated")
    offset = struct.unpack("<I", data[10:14])[0]
    width, height = struct.unpack("<ii", data[18:26])
    bpp, compression = struct.unpack("<HI", data[28:34])
    if width < 1 or height == 0 or bpp not in (1, 4, 8, 16, 24, 32):
        raise _CorruptError(f"has a corrupt header: {width} x {height} pixels at {bpp} bits")
    check_memory(path, [abs(height), width], max(bpp, 8) / 8, "BMP")
    if compression in (0, 3):
        row = ((bpp * width + 31) // 32) * 4
        expected = offset + row * abs(height)
        if len(data) < expected:
            raise _CorruptError(f"is truncated: it holds {len(data)} of the {expected} bytes its header describes")
