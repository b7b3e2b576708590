"""`otel-llm prompts` and `otel-llm switches` against a real collector HTTP server on a free port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from otel_llm_collector import control_api
from otel_llm_collector.httpserver import HttpServer
from otel_llm_collector.prompts_cli import main
from otel_llm_collector.registry import PromptRegistry
from otel_llm_collector.router import Router
from otel_llm_collector.switches import KillSwitches

TOKEN = "cli-token"


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("OTEL_LLM_API_TOKEN", TOKEN)
    registry = PromptRegistry(tmp_path / "state")
    switches = KillSwitches(tmp_path / "state")
    router = Router()
    control_api.register(router, registry, switches, api_token=lambda: TOKEN)
    server = HttpServer(router, endpoint="127.0.0.1:0", max_body_bytes=2 * 1024 * 1024)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
        registry.close()
        switches.close()


def _run(url: str, *argv: str) -> int:
    group, command, *rest = argv
    return main([group, command, "--url", url, "--by", "dana", *rest])


def _prompt_file(tmp_path: Path, text: str, name: str = "prompt") -> str:
    path = tmp_path / f"{name}.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_register_deploy_rollback_and_audit(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v1 = _prompt_file(tmp_path, "You are a careful assistant.", "v1")
    v2 = _prompt_file(tmp_path, "You are a terse assistant.", "v2")
    assert (
        _run(
            url,
            *("prompts", "register", "support", "1.0.0", "--file", v1),
            *("--metadata", '{"techniques": ["cot"]}', "--baseline", "quality=0.85", "--auto-rollback"),
        )
        == 0
    )
    assert "registered support 1.0.0: draft" in capsys.readouterr().out
    assert _run(url, "prompts", "register", "support", "1.1.0", "--file", v2) == 0
    assert _run(url, "prompts", "deploy", "support", "1.0.0", "--reason", "launch") == 0
    assert _run(url, "prompts", "deploy", "support", "1.1.0") == 0
    assert "rollback reference 1.0.0" in capsys.readouterr().out

    assert _run(url, "prompts", "rollback", "support", "--reason", "too terse") == 0
    assert "rolled back to support 1.0.0: active" in capsys.readouterr().out

    assert _run(url, "prompts", "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(p["name"], p["version"], p["baselines"]) for p in listed["prompts"]] == [
        ("support", "1.0.0", {"quality": 0.85})
    ]
    assert _run(url, "prompts", "active", "support") == 0
    assert "You are a careful assistant." in capsys.readouterr().out

    assert _run(url, "prompts", "deprecate", "support", "1.1.0", "--reason", "superseded") == 0
    assert "deprecated support 1.1.0: deprecated" in capsys.readouterr().out
    assert _run(url, "prompts", "versions", "support", "--json") == 0
    versions = json.loads(capsys.readouterr().out)["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [("1.0.0", "active"), ("1.1.0", "deprecated")]
    assert _run(url, "prompts", "versions", "support") == 0
    assert "deprecated" in capsys.readouterr().out

    assert _run(url, "prompts", "audit", "support", "--json") == 0
    audit = json.loads(capsys.readouterr().out)["audit"]
    assert [(e["action"], e["by"]) for e in audit] == [
        ("register", "dana"),
        ("register", "dana"),
        ("deploy", "dana"),
        ("deploy", "dana"),
        ("rollback", "dana"),
        ("deprecate", "dana"),
    ]
    assert audit[4]["reason"] == "too terse"


def test_server_refusals_exit_1_with_the_server_message(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _prompt_file(tmp_path, "hello")
    assert _run(url, "prompts", "register", "support", "1.0.0", "--file", path) == 0
    assert _run(url, "prompts", "register", "support", "1.0.0", "--file", path) == 1
    err = capsys.readouterr().err
    assert "otel-llm prompts register: 409:" in err
    assert "already registered" in err
    assert _run(url, "prompts", "rollback", "support", "--reason", "x") == 1
    assert "409: prompt 'support' has no active version" in capsys.readouterr().err
    assert _run(url, "prompts", "deploy", "support", "1.0.0", "--token", "wrong") == 1
    assert "403: the bearer token is not valid" in capsys.readouterr().err
    assert _run(url, "prompts", "versions", "ghost") == 1
    assert "404" in capsys.readouterr().err


def test_usage_errors_exit_2_before_any_request(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(url, "prompts", "register", "support", "1.0.0", "--file", str(tmp_path / "missing.txt")) == 2
    assert "--file: cannot read" in capsys.readouterr().err
    path = _prompt_file(tmp_path, "hello")
    assert _run(url, "prompts", "register", "support", "1.0.0", "--file", path, "--baseline", "speed=3") == 2
    assert _run(url, "prompts", "register", "support", "1.0.0", "--file", path, "--metadata", "[1]") == 2
    monkeypatch.delenv("OTEL_LLM_API_TOKEN")
    assert _run(url, "prompts", "register", "support", "1.0.0", "--file", path) == 2
    assert "pass --token or set OTEL_LLM_API_TOKEN" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        _run(url, "prompts", "rollback", "support")  # --reason is required
    assert exited.value.code == 2
    monkeypatch.setenv("OTEL_LLM_API_TOKEN", TOKEN)
    assert _run(url, "prompts", "versions", "support") == 1  # nothing was registered


def test_unreachable_collector_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prompts", "list", "--url", "http://127.0.0.1:1"]) == 1
    assert "cannot reach the collector at http://127.0.0.1:1" in capsys.readouterr().err


def test_switches_set_list_clear(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        _run(
            url,
            "switches",
            "set",
            "checkout",
            "chat",
            "downgrade_model",
            "--from",
            "gpt-4o",
            "--to",
            "gpt-4o-mini",
        )
        == 0
    )
    assert _run(url, "switches", "set", "checkout", "*", "static_response", "--value", "Back soon.") == 0
    assert _run(url, "switches", "set", "checkout", "*", "static_response") == 2
    assert _run(url, "switches", "clear", "checkout", "*", "static_response", "--reason", "resolved") == 0
    assert _run(url, "switches", "clear", "checkout", "x", "disable_tools") == 1
    capsys.readouterr()
    assert _run(url, "switches", "list", "--json") == 0
    listed = {(s["feature"], s["kind"]): s for s in json.loads(capsys.readouterr().out)["switches"]}
    assert listed["chat", "downgrade_model"]["value"] == {"from": "gpt-4o", "to": "gpt-4o-mini"}
    assert listed["chat", "downgrade_model"]["enabled"] is True
    assert listed["*", "static_response"]["enabled"] is False
    assert listed["*", "static_response"]["set_by"] == "dana"
    assert _run(url, "switches", "list") == 0
    assert "gpt-4o-mini" in capsys.readouterr().out
