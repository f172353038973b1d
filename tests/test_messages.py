"""What a new user meets when something is wrong, through the real CLI: one line that says what to
fix, and a JSON object on stdout for `--output json` whatever the exit code."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from prgen.testing.fake_github import FakeGitHub

from conftest import SHOP, run

Config = Callable[..., Path]


def test_a_refused_token_names_the_variable_it_came_from(
    github: FakeGitHub, write_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    github.add_repo("acme/shop")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_not_the_right_one_0123456789abcdef")
    result = run("sync", "--config", str(write_config()))
    assert result.exit_code == 1
    assert "HTTP 401: Bad credentials: GitHub refused the token in $GITHUB_TOKEN" in result.output


def test_a_missing_repository_says_it_may_be_invisible_to_the_token(
    github: FakeGitHub, write_config: Config
) -> None:
    result = run("sync", "--config", str(write_config(SHOP)))  # acme/shop was never added
    assert result.exit_code == 1
    assert (
        "acme/shop: NOT SYNCED (HTTP 404: Not Found: acme/shop does not exist or the token in "
        "$GITHUB_TOKEN cannot see it)"
    ) in result.output


def test_an_unreachable_github_is_one_line_naming_it(
    tmp_path: Path, fleet_remote: Path, write_config: Config
) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = write_config()
    text = config.read_text()
    config.write_text(
        "\n".join(
            f"  apiUrl: http://127.0.0.1:{port}" if line.startswith("  apiUrl:") else line
            for line in text.splitlines()
        )
        + "\n"
    )
    result = run("sync", "--config", str(config))
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if "NOT SYNCED" in line]
    assert f"(cannot reach http://127.0.0.1:{port}: connection refused)" in line
    assert "Max retries" not in result.output and "HTTPConnectionPool" not in result.output


def test_verbosity_and_log_format_are_taken_after_the_command_too(
    github: FakeGitHub, write_config: Config
) -> None:
    github.add_repo("acme/shop")
    config = str(write_config())
    quiet = run("sync", "--config", config)
    assert quiet.exit_code == 0 and "INFO" not in quiet.stderr
    after = run("sync", "-v", "--config", config)
    assert after.exit_code == 0, after.output
    assert "prgen: INFO: list pull requests done" in after.stderr
    as_json = run("sync", "--config", config, "-v", "--log-format", "json")
    lines = [json.loads(line) for line in as_json.stderr.splitlines()]
    assert any(entry.get("phase") == "list pull requests" for entry in lines), lines


@pytest.mark.parametrize("command", [["sync"], ["sync", "--dry-run"], ["probe"]])
def test_json_output_is_a_json_error_object_on_a_bad_config(
    tmp_path: Path, command: list[str]
) -> None:
    config = tmp_path / "prgen.yaml"
    config.write_text("fleet: {url: x, path: [a\nrepositories: []\n")
    result = run(*command, "--config", str(config), "--output", "json")
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert (error["exitCode"], error["kind"]) == (2, "usage")
    assert error["source"] == f"{config}:2:13"
    assert error["problems"] == [
        {
            "path": None,
            "reason": "expected ',' or ']', but got ':' (while parsing a flow sequence at 1:23)",
        }
    ]
    assert result.stderr.startswith(f"prgen: error: {config}:2:13: expected ',' or ']'")


def test_json_output_is_a_json_error_object_when_the_fleet_cannot_be_reached(
    github: FakeGitHub, write_config: Config, tmp_path: Path
) -> None:
    github.add_repo("acme/shop")
    config = write_config()
    config.write_text(config.read_text().replace(str(tmp_path / "fleet.git"), "/nowhere/x.git"))
    result = run("sync", "--config", str(config), "--output", "json")
    assert result.exit_code == 3, result.output
    error = json.loads(result.stdout)["error"]
    assert (error["exitCode"], error["kind"]) == (3, "fleet")
    assert "/nowhere/x.git" in error["message"] and "problems" not in error
