"""A long run stays flat: the fast version of ``refrag-agent bench soak``.

Housekeeping runs often here (every 25 commits, old versions kept half a second) so that a
run of seconds sees a dozen rounds; the benchmark runs 10,000 operations on the defaults.
Without rounds, versions and data files grow by one per append; rounds that keep LanceDB's
caches leave file handles open (on deleted files too) and memory behind, round after round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from refrag_agent.bench.soak import Mode, soak
from refrag_agent.memory import StoreSettings

SETTINGS = StoreSettings(maintenance_after_versions=25, cleanup_older_than_s=0.5)
# Bounds on what a window may add over the first one: a few handles for connections opened
# late, memory for what the first window had not touched yet.
MORE_HANDLES = 8
MORE_RSS_MIB = 100
# Versions and data files kept: 25 commits between rounds, and half a second of old ones.
MAX_VERSIONS = 150
MAX_DATA_FILES = 200


def _flat(rows: list[dict[str, Any]]) -> list[str]:
    first = rows[0]
    grown = []
    for row in rows[1:]:
        at = f"after {row['ops']} operations"
        if row["handles"] > first["handles"] + MORE_HANDLES:
            grown.append(f"{at}: {row['handles']} open handles, {first['handles']} at first")
        if row["rss_mib"] > first["rss_mib"] + MORE_RSS_MIB:
            grown.append(f"{at}: {row['rss_mib']} MiB resident, {first['rss_mib']} at first")
        # Generous: a window's median may be slower on a busy machine, not several times.
        if row["p50_ms"] > 3 * first["p50_ms"] + 20:
            grown.append(f"{at}: median {row['p50_ms']} ms, {first['p50_ms']} ms at first")
    for row in rows:
        at = f"after {row['ops']} operations"
        # A round may be between removing files and reopening the table: a few, never more.
        if row["deleted_handles"] > 4:
            grown.append(f"{at}: {row['deleted_handles']} handles on deleted files")
        if row["versions"] > MAX_VERSIONS:
            grown.append(f"{at}: {row['versions']} LanceDB versions kept")
        if row["data_files"] > MAX_DATA_FILES:
            grown.append(f"{at}: {row['data_files']} LanceDB data files")
    return grown


@pytest.mark.parametrize("mode", ["append", "mixed"])
async def test_a_long_run_stays_flat(tmp_path: Path, mode: Mode) -> None:
    rows = await soak(tmp_path, mode=mode, operations=300, window=100, settings=SETTINGS)
    assert len(rows) == 3
    assert _flat(rows) == []
