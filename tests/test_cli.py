"""The other commands, through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from prgen.cli import main
from prgen.testing.fake_github import FakeGitHub

from conftest import git
from manifest_validation import validate_documents

Config = Callable[..., Path]


def test_validate_accepts_a_good_config(write_config: Config) -> None:
    result = CliRunner().invoke(main, ["validate", "-c", str(write_config())])
    assert result.exit_code == 0 and "valid (1 repositories)" in result.output


def test_validate_names_the_bad_field_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "prgen.yaml"
    config.write_text(
        "fleet: {url: x, path: p}\nrepositories:\n  - name: a/b\n"
        "    chart: {chart: c, sourceRef: {kind: Nope, name: n}}\n"
    )
    result = CliRunner().invoke(main, ["validate", "-c", str(config)])
    assert result.exit_code == 2
    assert "repositories[0].chart.sourceRef.kind: 'Nope' is not one of" in result.stderr


def test_the_config_comes_from_prgen_config_or_the_current_directory(
    write_config: Config, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    config = write_config()
    monkeypatch.setenv("PRGEN_CONFIG", str(config))
    assert CliRunner().invoke(main, ["validate"]).exit_code == 0
    monkeypatch.delenv("PRGEN_CONFIG")
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(main, ["validate"]).exit_code == 0  # ./prgen.yaml
    monkeypatch.chdir(tmp_path / "home" if (tmp_path / "home").exists() else "/")
    result = CliRunner().invoke(main, ["validate"])
    assert result.exit_code == 2 and "prgen.yaml: cannot read config" in result.stderr


def test_render_prints_one_environment_from_the_real_pr(
    github: FakeGitHub, write_config: Config
) -> None:
    github.add_repo("acme/shop")
    number = github.open_pull("acme/shop", title="Hello: world", head_branch="feature/x")
    sha = github.pull("acme/shop", number).head_sha
    result = CliRunner().invoke(
        main, ["render", "-c", str(write_config()), "--repo", "acme/shop", "--pr", str(number)]
    )
    assert result.exit_code == 0, result.output
    assert validate_documents(result.stdout) == []
    assert f"tag: {sha}" in result.stdout or f"tag: '{sha}'" in result.stdout


def test_render_of_a_pr_a_sync_would_skip_says_so_on_stderr(
    github: FakeGitHub, write_config: Config
) -> None:
    github.add_repo("acme/shop")
    draft = github.open_pull("acme/shop", title="WIP", head_branch="wip", draft=True)
    result = CliRunner().invoke(
        main, ["render", "-c", str(write_config()), "--repo", "acme/shop", "--pr", str(draft)]
    )
    assert result.exit_code == 0, result.output
    assert f"note: a sync gives #{draft} no environment: draft" in result.stderr
    assert validate_documents(result.stdout) == []


def test_render_offline_needs_no_github(tmp_path: Path) -> None:
    config = tmp_path / "prgen.yaml"
    config.write_text(
        "github: {apiUrl: 'http://127.0.0.1:9/api/v3'}\nfleet: {url: x, path: p}\nrepositories:\n"
        "  - name: a/b\n    chartRef: {kind: OCIRepository, name: c}\n"
    )
    result = CliRunner().invoke(
        main, ["render", "-c", str(config), "--repo", "a/b", "--pr", "7", "--offline"]
    )
    assert result.exit_code == 0, result.output
    assert "name: b-pr-7" in result.stdout


def test_a_reader_that_goes_away_is_no_error(tmp_path: Path) -> None:
    config = tmp_path / "prgen.yaml"
    config.write_text(
        "github: {apiUrl: 'http://127.0.0.1:9/api/v3'}\nfleet: {url: x, path: p}\nrepositories:\n"
        "  - name: a/b\n    chartRef: {kind: OCIRepository, name: c}\n"
    )
    read, write = os.pipe()
    os.close(read)  # the reader is gone before prgen writes: `prgen render | head -0`
    command = ["render", "-c", str(config), "--repo", "a/b", "--pr", "7", "--offline"]
    with os.fdopen(write, "wb") as stdout:
        done = subprocess.run(
            [sys.executable, "-m", "prgen", *command], stdout=stdout, stderr=subprocess.PIPE
        )
    assert done.returncode == 141
    assert done.stderr == b""


def test_render_of_an_unconfigured_repository_is_a_usage_error(write_config: Config) -> None:
    result = CliRunner().invoke(
        main, ["render", "-c", str(write_config()), "--repo", "x/y", "--pr", "1"]
    )
    assert result.exit_code == 2 and "not configured" in result.stderr


def test_demo_runs_the_whole_loop_offline(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    fleet = tmp_path / "demo" / "fleet.git"
    files = git("ls-tree", "-r", "--name-only", "main", cwd=fleet).split()
    # Built from fleet-repo-example's layout, then synced.
    assert "clusters/preview/previews.yaml" in files
    envs = {f.split("/")[2] for f in files if f.startswith("previews/dev/") and f.count("/") == 3}
    assert envs == {
        "shop-pr-1",
        "shop-pr-3",
    }  # #2 closed in the demo; draft, fork, opted-out skipped
    assert (
        "sync --probe 3: nothing new" in result.output
        and "nothing changed: no commit" in result.output
    )
    # The feedback loop: pending, then ready once the environment answers, removed once closed,
    # and nothing written when nothing changed.
    assert "… acme/shop#1 pending: HTTP 503" in result.output
    assert "✓ acme/shop#3 success: HTTP 200" in result.output
    assert "deployment pr-2 at" in result.output and "-> inactive" in result.output
    assert "GitHub writes in this run: 0" in result.output
    # Every channel was reported on every run: the comment too, which needs prgen's own login.
    assert "NOT REPORTED" not in result.output and "WARNING" not in result.output
    assert int(git("rev-list", "--count", "main", cwd=fleet)) == 3
