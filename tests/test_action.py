"""action.yml, prgen's GitHub Action: valid for GitHub, its inputs all used and reaching prgen
under the names prgen.yaml gives them, and its sync script run for real with bash against the
fake GitHub and a bare fleet repository, as the runner would run it.

(actionlint is not installable offline: PyPI has only its sdist, which downloads the binary.
The schema GitHub's own editor tooling uses stands in for it.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from prgen.testing.fake_github import FakeGitHub
from test_fleet_repo_example import validates_against_builtin_schema

from conftest import TOKEN, git

CHECKOUT = Path(__file__).resolve().parents[1]
ACTION = CHECKOUT / "action.yml"
WORKFLOW = CHECKOUT / "fleet-repo-example" / "app-repo" / ".github" / "workflows" / "preview.yaml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text())


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def step(step_id: str) -> dict[str, Any]:
    (found,) = [s for s in load(ACTION)["runs"]["steps"] if s.get("id") == step_id]
    return dict(found)


def test_the_action_validates_against_the_github_action_schema() -> None:
    result = validates_against_builtin_schema("vendor.github-actions", ACTION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_input_is_used_and_every_input_used_is_declared() -> None:
    action = load(ACTION)
    declared = set(action["inputs"])
    used = {
        match.removeprefix("inputs.")
        for text in strings(action["runs"])
        for match in EXPRESSION.findall(text)
        if match.startswith("inputs.")
    }
    used |= {
        inputs.removeprefix("inputs.").split(" ")[0]
        for text in strings(action["runs"])
        for inputs in re.findall(r"inputs\.[a-z-]+ ==", text)
    }
    assert used == declared
    assert action["outputs"]["exit-code"]["value"] == "${{ steps.sync.outputs.exit-code }}"


def test_no_expression_is_pasted_into_a_script() -> None:
    """Inputs reach scripts as environment variables: `${{ inputs.args }}` inside `run:` would
    be pasted into the script before the shell reads it, and could inject commands."""
    for each in load(ACTION)["runs"]["steps"]:
        if "run" in each:
            assert EXPRESSION.search(each["run"]) is None, each["name"]
            assert each["shell"] == "bash", each["name"]


def test_the_example_workflow_gives_the_action_only_inputs_it_has() -> None:
    action = load(ACTION)
    (job,) = load(WORKFLOW)["jobs"].values()
    (uses,) = [s for s in job["steps"] if s.get("uses", "").endswith("/prgen@v1")]
    given = set(uses["with"])
    assert given <= set(action["inputs"])
    required = {name for name, spec in action["inputs"].items() if spec.get("required")}
    assert required <= given


# -- the sync script, run as the runner runs it -------------------------------------------


@pytest.fixture
def runner(tmp_path: Path) -> dict[str, str]:
    """What GitHub's runner gives a composite step: RUNNER_TEMP, GITHUB_OUTPUT, PATH with
    the prgen that the install step put there."""
    output = tmp_path / "github_output"
    output.write_text("")
    prgen = shutil.which("prgen") or str(Path(sys.executable).parent / "prgen")
    assert Path(prgen).exists()
    return {
        "PATH": f"{Path(prgen).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ["HOME"],
        "RUNNER_TEMP": str(tmp_path / "runner-temp"),
        "GITHUB_OUTPUT": str(output),
    }


def run_sync_step(runner: Mapping[str, str], inputs: Mapping[str, str]) -> tuple[int, str]:
    """The sync step's script with its `env:` resolved from `inputs` (and the inputs'
    defaults), under `bash -e -o pipefail` as GitHub runs `shell: bash`."""
    action = load(ACTION)
    values = {name: spec.get("default", "") for name, spec in action["inputs"].items()}
    values.update(inputs)
    sync = step("sync")
    env = dict(runner)
    for name, expression in sync["env"].items():
        (reference,) = EXPRESSION.findall(expression)
        env[name] = values[reference.removeprefix("inputs.")]
    Path(env["RUNNER_TEMP"]).mkdir(exist_ok=True)
    script = Path(env["RUNNER_TEMP"]) / "sync.sh"
    script.write_text(sync["run"])
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, Path(runner["GITHUB_OUTPUT"]).read_text()


def test_the_sync_step_syncs_with_the_inputs_it_is_given(
    runner: dict[str, str], github: FakeGitHub, write_config: Any, fleet_remote: Path
) -> None:
    github.add_repo("acme/shop")
    number = github.open_pull("acme/shop", title="Cart", head_branch="cart")
    config = write_config()
    code, output = run_sync_step(
        runner, {"config": str(config), "github-token": TOKEN, "args": "--output json -v"}
    )
    assert code == 0
    assert output == "exit-code=0\n"
    listed = git("ls-tree", "-r", "--name-only", "main", cwd=fleet_remote).split()
    assert f"previews/dev/shop-pr-{number}/helmrelease.yaml" in listed
    # GitHub's answers went where actions/cache saves them from.
    assert any((Path(runner["RUNNER_TEMP"]) / "prgen-cache").iterdir())


def test_the_sync_step_fails_with_prgens_exit_code_and_says_it(
    runner: dict[str, str], github: FakeGitHub, tmp_path: Path
) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("fleet: {url: x, path: [a\n")
    code, output = run_sync_step(runner, {"config": str(config), "cache": "false"})
    assert code == 2
    assert output == "exit-code=2\n"
    assert not (Path(runner["RUNNER_TEMP"]) / "prgen-cache").exists()  # cache: false
