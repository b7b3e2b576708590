"""`otel-llm report` on generated traffic: the blind-spot incident (1.1.0 at 10:12 drops faithfulness)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from otel_llm_collector import scenarios
from otel_llm_collector.report import main

SVG = "{http://www.w3.org/2000/svg}"
VOID = {"meta", "br", "hr", "img", "input", "link"}


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "blind_spot.pb"
    scenarios.write_delimited(scenarios.blind_spot(), path)
    return path


@pytest.fixture(scope="module")
def markdown(traffic: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("md") / "report.md"
    args = ["report", "daily", "--prompt", "answer", "--date", "2026-01-01", "--input", str(traffic)]
    assert main([*args, "--output", str(out)]) == 0
    return out.read_text(encoding="utf-8")


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"no section {title!r}"
    return match.group(1)


def test_daily_markdown_names_the_deployment_and_its_quality_step(markdown: str) -> None:
    assert markdown.startswith("# Daily report: prompt answer, 2026-01-01")
    summary = _section(markdown, "Executive summary")
    assert "14,400 calls" in summary
    assert "Deployment 1.1.0 shipped at 10:12 UTC" in summary
    rows = [line for line in _section(markdown, "Deployments").splitlines() if line.startswith("| 10:12")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1] == "1.1.0"
    assert cells[3] == "1.0.0"
    before, after = float(cells[4]), float(cells[5])
    assert 0.85 < before < 0.91
    assert 0.5 < after < 0.6


def test_daily_markdown_lists_the_alert_and_recommends_a_rollback(markdown: str) -> None:
    alerts = _section(markdown, "Alerts and rollbacks")
    firing = [line for line in alerts.splitlines() if "| firing | faithfulness-p1 | P1 |" in line]
    assert len(firing) == 1
    assert "service_version=1.1.0" in firing[0]
    assert firing[0].startswith("| 10:2")  # fired within minutes of the 10:12 deployment
    recommendations = _section(markdown, "Recommendations")
    assert re.search(r"Review deployment 1\.1\.0 .* roll back to version 1\.0\.0", recommendations)
    assert "Error rate is" not in recommendations  # 0.5% errors: below the 1% rule


def test_daily_markdown_key_metrics_and_error_budget(markdown: str) -> None:
    metrics = _section(markdown, "Key metrics")
    assert "| faithfulness (mean) |" in metrics
    assert "| p95 latency |" in metrics
    errors = _section(markdown, "Error analysis")
    assert re.search(r"^\| 500 \| \d+ \|", errors, re.M)
    budget = _section(markdown, "Error budget")
    row = next(line for line in budget.splitlines() if line.startswith("| 2026-01-01"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "99%"
    assert cells[4] == "144.0"
    assert 0 < int(cells[5]) < 144
    assert cells[7].endswith("left")


class _Checker(HTMLParser):
    """Fails on a closing tag that does not match the open one."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_daily_html_is_well_formed_with_charts_and_deployment_marker(traffic: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    args = ["report", "daily", "--prompt", "answer", "--date", "2026-01-01", "--input", str(traffic)]
    assert main([*args, "--output", str(out)]) == 0  # the format follows the .html suffix
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert checker.errors == []
    assert checker.stack == []
    svgs = [ET.fromstring(s) for s in re.findall(r"<svg.*?</svg>", text, re.S)]
    assert len(svgs) == 2
    quality, latency = svgs
    assert "quality" in (quality.get("class") or "")
    assert "latency" in (latency.get("class") or "")
    for svg in svgs:
        lines = list(svg.iter(f"{SVG}polyline"))
        assert len(lines) == 1
        assert len(lines[0].get("points", "").split()) == 4  # hours 08..11 have data
        markers = [m for m in svg.iter(f"{SVG}line") if m.get("class") == "deployment"]
        labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "deployment-label"]
        assert len(markers) == 1
        assert labels == ["1.1.0"]
        marker_x = float(markers[0].get("x1", "nan"))
        # 10:12 is 42.5% of the day into the 656-pixel plot that starts at x=48
        assert marker_x == pytest.approx(48 + 656 * (10.2 / 24), abs=0.2)
    points = [
        tuple(map(float, p.split(",")))
        for p in next(quality.iter(f"{SVG}polyline")).get("points", "").split()
    ]
    # Higher quality is drawn higher: the hours before the deployment sit above the ones after it.
    assert points[0][1] < points[3][1]
    assert points[1][1] < points[3][1]


def test_monthly_report_has_the_sla_table(traffic: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["report", "monthly", "--prompt", "answer", "--month", "2026-01", "--input", str(traffic)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("# Monthly report: prompt answer, 2026-01")
    sla = _section(text, "SLA")
    assert "| 2026-01-01 | 14,400 | 99.451% | 99% | met |" in sla
    assert "| 2026-01-02 | 0 | n/a | 99% | no data |" in sla
    assert len([line for line in sla.splitlines() if line.startswith("| 2026-01-")]) == 31


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["daily", "--prompt", "answer", "--date", "2026-13-01"], "expected YYYY-MM-DD"),
        (["daily", "--prompt", "answer", "--date", "yesterday"], "expected YYYY-MM-DD"),
        (["monthly", "--prompt", "answer", "--month", "2026-1"], "expected YYYY-MM"),
        (["daily", "--prompt", "nope", "--date", "2026-01-01"], "no calls for prompt 'nope'"),
        (
            ["daily", "--prompt", "answer", "--date", "2026-01-05"],
            "the input covers 2026-01-01 to 2026-01-01",
        ),
    ],
)
def test_bad_arguments_exit_2(
    traffic: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["report", *argv, "--input", str(traffic)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_missing_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.pb"
    args = ["report", "daily", "--prompt", "answer", "--date", "2026-01-01", "--input", str(missing)]
    assert main(args) == 2
    assert f"no such input file: {missing}" in capsys.readouterr().err
    assert main(["report", "daily", "--prompt", "answer", "--date", "2026-01-01"]) == 2
    assert "--input" in capsys.readouterr().err
