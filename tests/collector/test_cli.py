"""`otel-llm` command line: subcommands, flags over the config file, usage errors exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from otel_llm_collector.cli import build_parser, main


def test_collector_is_a_subcommand_and_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "required: COMMAND" in capsys.readouterr().err


def test_unknown_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["collector", "--no-such-flag"])
    assert info.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err


def test_bad_endpoint_flag_names_the_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collector", "--otlp-grpc-endpoint", "localhost"]) == 2
    assert capsys.readouterr().err.strip() == "otel-llm collector: otlp_grpc_endpoint: expected host:port"


def test_bad_config_file_names_the_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("queue_max_batches: -1\n")
    assert main(["collector", "--config", str(config)]) == 2
    assert "queue_max_batches:" in capsys.readouterr().err


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collector", "--config", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml" in capsys.readouterr().err


def test_forward_flag_needs_a_scheme(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["collector", "--forward", "tempo:4317"])
    assert info.value.code == 2
    assert "grpc://host:port" in capsys.readouterr().err


def test_flags_parse_into_settings_overrides() -> None:
    args = build_parser().parse_args(
        [
            "collector",
            "--forward",
            "grpc://tempo:4317",
            "--forward",
            "http://jaeger:4318",
            "--no-reuse-port",
            "--max-series",
            "5",
        ]
    )
    assert args.forward == [
        {"endpoint": "tempo:4317", "protocol": "grpc"},
        {"endpoint": "http://jaeger:4318", "protocol": "http"},
    ]
    assert args.reuse_port is False
    assert args.max_series == 5
    assert args.otlp_grpc_endpoint is None  # unset flags leave the file's value alone


def test_rules_subcommand_is_registered(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", "--default"]) == 0
    assert "rules OK" in capsys.readouterr().out


def test_slo_subcommand_is_registered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slos = Path(__file__).resolve().parents[2] / "grafana" / "alerts" / "slos.yaml"
    out = tmp_path / "rules.yaml"
    assert main(["slo", "render-rules", "--slo-file", str(slos), "--output", str(out)]) == 0
    assert "slo:sli_error:ratio_rate5m" in out.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("slos: [{name: x, kind: nope}]")
    assert main(["slo", "check", "--slo-file", str(bad)]) == 2
    assert "bad.yaml" in capsys.readouterr().err
