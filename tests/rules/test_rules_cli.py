"""`otel-llm rules check`: exit codes and messages, never a traceback."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from otel_llm_collector.rules_cli import add_parser, main


def test_valid_file_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("rules:\n  - {name: a, condition: 'error_rate > 5%', severity: P1}\n")
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: 1 rules OK\n"
    assert err == ""


def test_errors_exit_one_listing_every_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("rules: []\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "rules:\n"
        "  - {name: faithfulness-p1, condition: 'eval_mean{faithfulness} < 0.65', severity: P1, for: x}\n"
        "  - {name: b, condition: 'error_rate >> 1', severity: P9}\n"
    )
    assert main(["check", str(bad), str(good), str(tmp_path / "missing.yaml")]) == 1
    out, err = capsys.readouterr()
    assert out == f"{good}: 0 rules OK\n"
    lines = err.splitlines()
    assert f"{bad}: rule 'faithfulness-p1': for: expected a duration like '10m'" in lines
    assert any(line.startswith(f"{bad}: rule 'b': condition: unexpected token '>'") for line in lines)
    assert any(line.startswith(f"{bad}: rule 'b': severity:") for line in lines)
    assert any("missing.yaml: cannot read" in line for line in lines)
    assert "Traceback" not in err


def test_binary_garbage_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "garbage.yaml"
    path.write_bytes(b"\xff\xfe\x00rules: [")
    assert main(["check", str(path)]) == 1
    assert "garbage.yaml" in capsys.readouterr().err


def test_default_rules_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--default"]) == 0
    assert capsys.readouterr().out.startswith("default rules: ")


def test_usage_errors_exit_two(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 2
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    capsys.readouterr()


def test_add_parser_registers_run_on_a_host_parser(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("rules: []\n")
    parser = argparse.ArgumentParser(prog="otel-llm")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["rules", "check", str(path)])
    assert args.run(args) == 0
