"""Renders CallPath's icon set from ``assets/icons/callpath.svg``.

    python3 packaging/icons.py          # needs rsvg-convert (Debian: librsvg2-bin)

writes ``assets/icons/callpath-<size>.png`` for every size in ``PNG_SIZES`` and packs the PNGs
into ``callpath.ico`` (Windows installer and executables) and ``callpath.icns`` (macOS app).
Both containers hold the PNGs unchanged, which Windows Vista+ and macOS 10.7+ read, so no
image library is needed. The outputs are committed; re-run this after editing the SVG.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ICON_DIR = Path(__file__).resolve().parent.parent / "assets" / "icons"
SVG_NAME = "callpath.svg"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)  # 256 is the largest an .ico entry can name
# icns element types that hold PNG data, by pixel size (Apple's "icp4" … "ic09").
ICNS_TYPES = {16: b"icp4", 32: b"icp5", 64: b"icp6", 128: b"ic07", 256: b"ic08", 512: b"ic09"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_name(size: int) -> str:
    return f"callpath-{size}.png"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def pack_ico(pngs: Mapping[int, bytes]) -> bytes:
    """An .ico file whose entries are the given square PNGs (size → bytes), smallest first."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = len(header) + 16 * len(sizes)
    directory = b""
    images = b""
    for size in sizes:
        data = pngs[size]
        side = 0 if size >= 256 else size  # 0 means 256 in an ICONDIRENTRY
        directory += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(data), offset)
        images += data
        offset += len(data)
    return header + directory + images


def pack_icns(pngs: Mapping[int, bytes]) -> bytes:
    """An .icns file with one PNG element per size that has an icns type."""
    elements = b""
    for size in sorted(pngs):
        kind = ICNS_TYPES.get(size)
        if kind is not None:
            elements += kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size]
    return b"icns" + struct.pack(">I", 8 + len(elements)) + elements


def render(directory: Path = ICON_DIR) -> None:
    converter = shutil.which("rsvg-convert")
    if converter is None:
        raise SystemExit("rsvg-convert not found: apt-get install librsvg2-bin")
    pngs: dict[int, bytes] = {}
    for size in PNG_SIZES:
        target = directory / png_name(size)
        subprocess.run(
            [converter, "-w", str(size), "-h", str(size), "-o", str(target), SVG_NAME],
            cwd=directory,
            check=True,
        )
        pngs[size] = target.read_bytes()
    (directory / "callpath.ico").write_bytes(pack_ico({size: pngs[size] for size in ICO_SIZES}))
    (directory / "callpath.icns").write_bytes(pack_icns(pngs))


if __name__ == "__main__":
    render(Path(sys.argv[1]) if len(sys.argv) > 1 else ICON_DIR)
