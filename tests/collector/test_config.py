"""The collector settings: one schema, YAML + flag overrides, errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from otel_llm_collector.config import CollectorSettings, ConfigError, load_settings, parse_endpoint

EXAMPLE = Path(__file__).resolve().parents[2] / "collector" / "config.example.yaml"


def test_defaults_need_no_file() -> None:
    settings = load_settings()
    assert settings.otlp_grpc_endpoint == "0.0.0.0:4317"
    assert settings.otlp_http_endpoint == "0.0.0.0:4318"
    assert settings.http_endpoint == "0.0.0.0:9464"
    assert settings.max_request_bytes == 64 * 1024 * 1024
    assert settings.state_dir == Path("./otel-llm-state")
    assert settings.reuse_port is True
    assert settings.forward == ()


def test_shipped_example_loads() -> None:
    settings = load_settings(EXAMPLE)
    assert [target.protocol for target in settings.forward] == ["grpc", "http"]
    assert settings.forward[0].headers == {"x-scope-orgid": "llm-team"}
    assert settings.forward[1].retry_max_elapsed_seconds == 300
    defaults = CollectorSettings()
    assert settings.model_dump(exclude={"forward"}) == defaults.model_dump(exclude={"forward"})


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("max_series: 5\nqueue_max_batches: 3\n")
    settings = load_settings(path, {"max_series": 7, "queue_max_batches": None})
    assert settings.max_series == 7
    assert settings.queue_max_batches == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("otlp_grpc_endpoint: localhost\n", "otlp_grpc_endpoint: expected host:port"),
        ("http_endpoint: 'h:99999'\n", "http_endpoint: expected host:port with a port"),
        ("max_series: 0\n", "max_series: Input should be greater than or equal to 1"),
        ("no_such_setting: 1\n", "no_such_setting: Extra inputs are not permitted"),
        (
            "forward:\n  - endpoint: x:1\n    protocol: kafka\n",
            "forward.0.protocol: Input should be 'grpc' or 'http'",
        ),
        ("forward:\n  - protocol: grpc\n", "forward.0.endpoint: Field required"),
        ("- a\n- b\n", "expected a mapping of settings"),
        ("a: [\n", "invalid YAML"),
    ],
)
def test_errors_name_the_setting(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_settings(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_settings(tmp_path / "absent.yaml")


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("# nothing\n")
    assert load_settings(path) == CollectorSettings()


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [("0.0.0.0:4317", ("0.0.0.0", 4317)), ("[::1]:0", ("::1", 0)), ("localhost:9464", ("localhost", 9464))],
)
def test_parse_endpoint(endpoint: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(endpoint) == expected
