"""The README's main job, in its short mode: collector, instrumented app, and the regression made visible."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_short_mode_shows_the_faithfulness_drop_of_the_bad_version() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo" / "demo.py"), "--short"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "shipping prompt answer v2.0.0" in out
    final = out.split("final 5m window per series:")[1]
    rows = {
        m[0]: (int(m[1]), float(m[2]))
        for m in re.findall(r"answer (\d\.\d\.\d)\s+(\d+)\s+\S+\s+\S+\s+([\d.]+)", final)
    }
    assert set(rows) == {"1.0.0", "2.0.0"}
    assert rows["1.0.0"][0] == 20
    assert rows["2.0.0"][0] == 20
    assert rows["1.0.0"][1] >= 0.8
    assert rows["2.0.0"][1] <= 0.6
