"""`otel-llm gate` against the local OpenAI-compatible server, through the real `openai` SDK."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from otel_llm_collector import control_api
from otel_llm_collector.gate import main
from otel_llm_collector.httpserver import HttpServer
from otel_llm_collector.registry import PromptRegistry
from otel_llm_collector.router import Router
from otel_llm_collector.switches import KillSwitches

from otel_llm.testing.llm_server import LLMRequest, LLMServer

GOOD_PROMPT = "Answer only from the context documents. Quote prices exactly."
BAD_PROMPT = "Answer from memory of last quarter's price list."
PRICE = re.compile(r"\$(\d+)")


def responder(request: LLMRequest) -> str:
    """Answers from the context; under the bad prompt, quotes a price that is not in it (4 items in 5)."""
    question = request.last_user_text
    match = PRICE.search(question)
    price = int(match.group(1)) if match else 0
    plan = re.search(r"The (\w+) plan", question)
    name = plan.group(1) if plan else "Basic"
    if "memory" in request.system and price % 5 != 0:
        price += 10
    return f"The {name} plan costs ${price} per month."


def write_dataset(path: Path, n: int) -> Path:
    plans = ("Starter", "Team", "Business", "Enterprise")
    lines = []
    for i in range(n):
        plan = plans[i % len(plans)]
        price = 11 + 3 * i
        context = [
            f"The {plan} plan costs ${price} per month and includes {i % 7 + 2} seats.",
            "Annual billing gives two months free.",
        ]
        question = f"How much does the {plan} plan cost per month?"
        expected = f"The {plan} plan costs ${price} per month."
        lines.append(json.dumps({"question": question, "context": context, "expected": expected}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")


@pytest.fixture(scope="module")
def server() -> Iterator[LLMServer]:
    with LLMServer(responder) as running:
        yield running


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.yaml"
    path.write_text(f'"1.0.0": "{GOOD_PROMPT}"\n"1.1.0": "{BAD_PROMPT}"\n"1.0.1": "{GOOD_PROMPT}"\n')
    return path


def _gate(server: LLMServer, dataset: Path, prompts: Path, *extra: str) -> list[str]:
    return [
        "--dataset",
        str(dataset),
        "--prompts-file",
        str(prompts),
        "--endpoint",
        server.openai_base_url,
        "--max-concurrency",
        "8",
        *extra,
    ]


def _row(output: str, metric: str) -> list[str]:
    for line in output.splitlines():
        cells = line.split()
        if cells and cells[0] == metric:
            return cells
    raise AssertionError(f"no row {metric!r} in:\n{output}")


def test_regression_fails_the_gate(
    server: LLMServer, prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_dataset(tmp_path / "golden.jsonl", 40)
    before = len(server.requests)
    code = main(_gate(server, dataset, prompts, "--baseline", "1.0.0", "--candidate", "1.1.0"))
    output = capsys.readouterr().out
    assert code == 1, output
    faithfulness = _row(output, "score:faithfulness")
    assert faithfulness[1:3] == ["1", "0"]  # medians: every baseline answer grounded, most candidates not
    assert faithfulness[-1] == "fail"
    assert _row(output, "fail_rate:faithfulness")[-1] == "fail"
    assert _row(output, "fail_rate:refusal")[-1] == "pass"
    assert _row(output, "error_rate")[-1] == "pass"
    assert output.rstrip().splitlines()[-1].startswith("verdict: fail")
    # 40 items x 2 versions, with each version's own system prompt and the item's context
    received = server.requests[before:]
    assert len(received) == 80
    systems = [body["messages"][0]["content"] for _, body in received if body is not None]
    assert systems.count(GOOD_PROMPT) == 40
    assert systems.count(BAD_PROMPT) == 40


def test_json_document(
    server: LLMServer, prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_dataset(tmp_path / "golden.jsonl", 40)
    code = main(_gate(server, dataset, prompts, "--baseline", "1.0.0", "--candidate", "1.1.0", "--json"))
    document = json.loads(capsys.readouterr().out)
    assert code == 1
    assert document["verdict"] == "fail"
    assert document["exit_code"] == 1
    assert (document["baseline"], document["candidate"]) == ("1.0.0", "1.1.0")
    metrics = {m["name"]: m for m in document["metrics"]}
    rate = metrics["fail_rate:faithfulness"]
    assert (rate["baseline"], rate["candidate"]) == (0.0, 32 / 40)
    assert rate["difference"] == pytest.approx(0.8)
    assert rate["p_value"] < 0.001
    assert len(document["items"]) == 40
    first = document["items"][0]
    assert first["line"] == 1
    assert first["expected"] == "The Starter plan costs $11 per month."
    assert first["baseline"]["text"] == first["expected"]
    assert first["candidate"]["text"] == "The Starter plan costs $21 per month."
    assert first["candidate"]["faithfulness"]["label"] == "fail"


def test_same_prompt_passes(
    server: LLMServer, prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_dataset(tmp_path / "golden.jsonl", 40)
    code = main(_gate(server, dataset, prompts, "--baseline", "1.0.0", "--candidate", "1.0.1"))
    output = capsys.readouterr().out
    assert code == 0, output
    assert _row(output, "score:faithfulness")[-1] == "pass"
    assert _row(output, "fail_rate:faithfulness")[-1] == "pass"
    assert re.search(r"^verdict: (pass|marginal)", output, re.MULTILINE)


def test_too_few_items_is_inconclusive(
    server: LLMServer, prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_dataset(tmp_path / "golden.jsonl", 3)
    code = main(_gate(server, dataset, prompts, "--baseline", "1.0.0", "--candidate", "1.1.0"))
    output = capsys.readouterr().out
    assert code == 3, output
    assert _row(output, "score:faithfulness")[-1] == "inconclusive"
    assert "verdict: inconclusive" in output


def test_bad_dataset_line_names_the_line(
    server: LLMServer, prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_dataset(tmp_path / "golden.jsonl", 5)
    lines = dataset.read_text().splitlines()
    lines.insert(3, "")  # a blank line 4 is skipped, but still counted
    lines.insert(4, '{"question": "no context here"')
    dataset.write_text("\n".join(lines) + "\n")
    before = len(server.requests)
    code = main(_gate(server, dataset, prompts, "--baseline", "1.0.0", "--candidate", "1.1.0"))
    captured = capsys.readouterr()
    assert code == 2
    assert f"{dataset}:5: not valid JSON" in captured.err
    assert captured.out == ""
    assert len(server.requests) == before  # nothing is asked before the dataset is known good

    dataset.write_text(json.dumps({"question": "q", "context": "one string"}) + "\n")
    assert main(_gate(server, dataset, prompts, "--baseline", "1.0.0", "--candidate", "1.1.0")) == 2
    assert f'{dataset}:1: "context" must be a list of strings' in capsys.readouterr().err


def test_unknown_version_is_a_usage_error(
    server: LLMServer, prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_dataset(tmp_path / "golden.jsonl", 3)
    assert main(_gate(server, dataset, prompts, "--baseline", "1.0.0", "--candidate", "9.9.9")) == 2
    assert "version '9.9.9' is not in" in capsys.readouterr().err


def test_endpoint_down(prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # the port was free a moment ago and nothing listens on it now
    dataset = write_dataset(tmp_path / "golden.jsonl", 40)
    argv = [
        "--dataset",
        str(dataset),
        "--prompts-file",
        str(prompts),
        "--endpoint",
        f"http://127.0.0.1:{port}/v1",
        "--baseline",
        "1.0.0",
        "--candidate",
        "1.1.0",
        "--max-retries",
        "0",
    ]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2
    assert f"cannot reach the endpoint http://127.0.0.1:{port}/v1" in captured.err
    assert captured.out == ""


def test_missing_api_key(
    server: LLMServer,
    prompts: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    dataset = write_dataset(tmp_path / "golden.jsonl", 3)
    assert main(_gate(server, dataset, prompts, "--baseline", "1.0.0", "--candidate", "1.1.0")) == 2
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err


def test_prompts_from_the_registry(
    server: LLMServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = PromptRegistry(tmp_path / "state")
    switches = KillSwitches(tmp_path / "state")
    registry.register("pricing", "1.0.0", GOOD_PROMPT, created_by="ci")
    registry.register("pricing", "1.1.0", BAD_PROMPT, created_by="ci")
    router = Router()
    control_api.register(router, registry, switches, api_token=lambda: "token")
    http = HttpServer(router, endpoint="127.0.0.1:0", max_body_bytes=1024 * 1024)
    http.start()
    try:
        url = f"http://127.0.0.1:{http.port}"
        dataset = write_dataset(tmp_path / "golden.jsonl", 40)
        common = ["--dataset", str(dataset), "--endpoint", server.openai_base_url, "--registry-url", url]
        code = main([*common, "--prompt-name", "pricing", "--baseline", "1.0.0", "--candidate", "1.1.0"])
        output = capsys.readouterr().out
        assert code == 1, output
        assert output.startswith("pricing: candidate 1.1.0 vs baseline 1.0.0, 40 items")
        assert main([*common, "--prompt-name", "nope", "--baseline", "1.0.0", "--candidate", "1.1.0"]) == 2
        assert "answered 404 for prompt 'nope'" in capsys.readouterr().err
    finally:
        http.stop()
        registry.close()
        switches.close()
