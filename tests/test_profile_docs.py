"""docs/profile.md's tables of defaults say what core/model/config.py holds."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from callpath.core.model.config import QualityConfig, Timeouts

DOC = (Path(__file__).resolve().parent.parent / "docs" / "profile.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("config", [QualityConfig(), Timeouts()], ids=["quality", "timeouts"])
def test_every_default_in_the_docs_matches_the_code(config: object) -> None:
    assert dataclasses.is_dataclass(config)
    for field in dataclasses.fields(config):
        row = re.search(rf"^\| `{field.name}` \| ([^|]+) \|", DOC, re.MULTILINE)
        assert row is not None, f"docs/profile.md has no row for {field.name}"
        documented = float(row.group(1).split()[0])
        assert documented == getattr(config, field.name), field.name
