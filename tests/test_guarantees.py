"""The README's "Guarantees" section names tests that exist: renaming or deleting one breaks this."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def guarantees() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.partition("## Guarantees")[2].partition("\n## ")[0]


def test_every_guarantee_names_a_test_that_exists() -> None:
    section = guarantees()
    rows = [line for line in section.splitlines() if line.startswith("| ") and "tests/" in line]
    assert len(rows) >= 15
    for row in rows:
        cited = re.findall(r"`(tests/\w+\.py)(?:::(\w+))?`", row)
        assert cited, f"a guarantee without its test: {row}"
        for path, name in cited:
            source = (ROOT / path).read_text()
            names = [name] if name else []
            # Further names in the same cell belong to the file cited before them.
            names += re.findall(r", `(\w+)`", row.split(f"`{path}", 1)[1].split("`tests/", 1)[0])
            for test in names:
                assert re.search(rf"^\s*def {test}\(", source, re.MULTILINE), f"{path} has no {test}"
