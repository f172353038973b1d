"""The Dockerfile: small (prgen's build backend never reaches the image), pinned (every Python
package from requirements.lock, checked against its hashes) and non-root.

No Docker here: the build stage's commands are run as written, in a virtual environment, on a
copy of the build context that .dockerignore lets through, and the result must run prgen.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from test_fleet_repo_example import CHECKOUT, docker_context

DOCKERFILE = CHECKOUT / "Dockerfile"
LOCK = CHECKOUT / "requirements.lock"


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) of every pin in requirements.lock."""
    text = LOCK.read_text().replace("\\\n", " ")
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        found = re.match(r"^([A-Za-z0-9._-]+)==(\S+)\s+(.*)$", line)
        if found:
            name = canonicalize_name(found.group(1))
            assert name not in pins, f"{name} pinned twice"
            pins[name] = (found.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    return pins


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["project"]
    return [Requirement(spec) for spec in project["dependencies"]]


def test_every_runtime_dependency_is_pinned_with_hashes_within_its_bounds() -> None:
    pins = locked()
    assert pins, "requirements.lock pins nothing"
    for name, (version, hashes) in pins.items():
        assert hashes, f"{name}=={version} has no hash"
    for requirement in runtime_requirements():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name][0]}, outside {requirement}"
        )


def test_the_image_installs_only_the_lock_checked_by_hash_and_runs_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"pip install --require-hashes --no-deps -r \S*requirements\.lock", text)
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", text, re.M)
    assert [alias for _, alias in stages] == ["build", ""]  # the last stage is the image
    final = text[text.rindex("\nFROM ") :]
    assert "pip " not in final and "COPY . " not in final  # no build tools, no sources
    assert "COPY --from=build /opt/prgen /opt/prgen" in final
    assert re.search(r"^USER 10001:10001$", final, re.M)


def build_stage_commands() -> list[str]:
    """The build stage's RUN commands, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    stage = text[text.index(" AS build") : text.index("\nFROM ", text.index(" AS build"))]
    return [
        line.removeprefix("RUN ").strip() for line in stage.splitlines() if line.startswith("RUN ")
    ]


def test_the_build_stage_as_written_makes_an_environment_that_runs_prgen(tmp_path: Path) -> None:
    context = docker_context(tmp_path / "src")
    venv = tmp_path / "opt-prgen"
    for command in build_stage_commands():
        command = command.replace("python -m venv /opt/prgen", f"{sys.executable} -m venv {venv}")
        command = command.replace("/opt/prgen", str(venv)).replace("/src", str(context))
        command = command.replace("/wheels", str(tmp_path / "wheels"))
        done = subprocess.run(
            ["sh", "-c", command], capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
    version = subprocess.run(
        [str(venv / "bin" / "prgen"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("prgen, version ")
    # Nothing but the lock and prgen: the build backend stayed out.
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    names = {canonicalize_name(line.split("==")[0]) for line in listed}
    assert names - {"pip", "setuptools"} == set(locked()) | {"prgen"}
