"""Visible progress: `-v` says each phase of a run with its counts and time; `--log-format json`
(or PRGEN_LOG_FORMAT) says the same as one JSON object per line, secrets redacted."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prgen.logs import JsonFormatter, fields
from prgen.redact import register_secret
from prgen.testing.fake_github import FakeGitHub

from conftest import TOKEN

Config = Callable[..., Path]


def prgen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prgen", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def json_lines(stderr: str) -> list[dict[str, Any]]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object


def phases(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["phase"]: line for line in lines if "phase" in line}


def test_json_logs_say_each_phase_of_a_sync_with_its_counts(
    github: FakeGitHub, write_config: Config, tmp_path: Path
) -> None:
    github.add_repo("acme/shop")
    for n in range(3):
        github.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}")
    config = write_config()
    work = str(tmp_path / "work")

    first = prgen("-v", "--log-format", "json", "sync", "-c", str(config), "--workdir", work)
    assert first.returncode == 0, first.stderr
    lines = json_lines(first.stderr)
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    done = phases(lines)
    # The fleet read and the listing run side by side: either may end first.
    assert set(list(done)[:2]) == {"read the fleet", "list pull requests"}
    assert list(done)[2:] == [
        "confirm removals",
        "read PR commands",
        "render and plan",
        "commit and push",
    ]
    assert all(line["outcome"] == "done" and line["duration"] >= 0 for line in done.values())
    assert done["list pull requests"]["repositories"] == 1
    assert done["list pull requests"]["pullRequests"] == 3
    assert done["render and plan"]["rendered"] == 3
    assert done["commit and push"]["files"] > 0

    # The same run with nothing new: the variable chooses the format, nothing is rendered.
    idle = prgen(
        "-v", "sync", "-c", str(config), "--workdir", work, env={"PRGEN_LOG_FORMAT": "json"}
    )
    assert idle.returncode == 0, idle.stderr
    done = phases(json_lines(idle.stderr))
    assert done["read the fleet"]["environments"] == 3
    assert (done["render and plan"]["rendered"], done["render and plan"]["unchanged"]) == (0, 3)
    assert "commit and push" not in done


def test_text_logs_say_the_phases_in_words(
    github: FakeGitHub, write_config: Config, tmp_path: Path
) -> None:
    github.add_repo("acme/shop")
    github.open_pull("acme/shop", title="One", head_branch="one")
    result = prgen("-v", "sync", "-c", str(write_config()), "--workdir", str(tmp_path / "w"))
    assert result.returncode == 0, result.stderr
    assert "prgen: INFO: render and plan done in " in result.stderr
    assert "1 rendered, 0 unchanged" in result.stderr
    assert "1 pull requests" in result.stderr


def test_without_v_a_sync_logs_no_phases(
    github: FakeGitHub, write_config: Config, tmp_path: Path
) -> None:
    github.add_repo("acme/shop")
    result = prgen(
        "--log-format", "json", "sync", "-c", str(write_config()), "--workdir", str(tmp_path / "w")
    )
    assert result.returncode == 0, result.stderr
    assert not phases(json_lines(result.stderr))


def test_a_json_line_redacts_secrets_in_the_message_and_in_its_fields() -> None:
    register_secret(TOKEN)
    record = logging.LogRecord(
        "prgen.test", logging.WARNING, __file__, 1, "token %s leaked", (TOKEN,), None
    )
    record.__dict__.update(fields(repository="acme/shop", phase="list", note=f"x{TOKEN}y"))
    line = JsonFormatter().format(record)
    assert TOKEN not in line
    document = json.loads(line)
    assert document["level"] == "warning"
    assert document["repository"] == "acme/shop"
    assert document["phase"] == "list"
    assert list(document)[:4] == ["time", "level", "logger", "message"]


def test_a_json_line_about_one_repository_or_pr_names_it_in_its_fields(
    github: FakeGitHub, write_config: Config, tmp_path: Path
) -> None:
    """A log collector can filter by repository and PR without parsing the message; no line
    carries the token."""
    github.add_repo("acme/shop")
    github.open_pull("acme/shop", title="One", head_branch="one")
    github.inject("GET", r"/repos/acme/shop/pulls", status=502, times=5)
    failed = prgen(
        "sync", "-c", str(write_config()), "--workdir", str(tmp_path / "w"), "-v",
        env={"PRGEN_LOG_FORMAT": "json"},
    )  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    lines = json_lines(failed.stderr)
    (listing,) = [line for line in lines if line["message"].startswith("listing acme/shop failed")]
    assert (listing["level"], listing["repository"]) == ("warning", "acme/shop")
    assert all(TOKEN not in json.dumps(line) for line in lines)


def test_under_json_logs_the_sync_summary_on_stdout_is_json_lines_too(
    github: FakeGitHub, write_config: Config, tmp_path: Path
) -> None:
    """In a pod stdout and stderr are one stream: with JSON logs, the summary is JSON as well,
    each change with its repository, PR, environment and action as fields; no token anywhere."""
    github.add_repo("acme/shop")
    github.open_pull("acme/shop", title="One", head_branch="one")
    github.open_pull("acme/shop", title="Two", head_branch="two")
    config = str(write_config())
    work = str(tmp_path / "w")
    env = {"PRGEN_LOG_FORMAT": "json"}

    planned = prgen("sync", "-c", config, "--workdir", work, "--dry-run", "-v", env=env)
    assert planned.returncode == 0, planned.stderr
    lines = json_lines(planned.stdout)
    assert all(line["logger"] == "prgen.summary" for line in lines)
    (diff,) = [line for line in lines if "diff" in line]
    assert "+kind: HelmRelease" in diff["diff"]
    assert lines[-1]["message"] == "dry run: nothing was written"

    done = prgen("sync", "-c", config, "--workdir", work, env=env)
    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stdout)
    created = [line for line in lines if line.get("action") == "create"]
    assert sorted(line["pullRequest"] for line in created) == [1, 2]
    assert all(line["repository"] == "acme/shop" for line in created)
    assert all(line["environment"].startswith("previews/") for line in created)
    assert all(len(line["head"]) == 40 for line in created)
    (committed,) = [line for line in lines if "commit" in line]
    assert committed["message"].startswith("committed ")
    (listed,) = [line for line in lines if line.get("eligible") is not None]
    assert (listed["repository"], listed["open"], listed["eligible"]) == ("acme/shop", 2, 2)
    assert all(TOKEN not in line for line in (done.stdout + done.stderr).splitlines())

    # Text stays the default: the same summary in words.
    idle = prgen("sync", "-c", config, "--workdir", work)
    assert idle.stdout.splitlines()[-1] == "nothing changed: no commit"
