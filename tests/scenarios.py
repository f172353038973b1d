"""Shared by the safety tests: the eligible set as GitHub holds it, and the fleet as git holds it.

Both sides are read independently of prgen: the truth comes from the fake GitHub's own
state, the fleet from the bare repository's tree (`git archive`), so a test compares
what prgen should have done with what it did.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from prgen.testing.fake_github import FakeGitHub, PullState, RecordedRequest

LABEL = "preview"
FLEET_PATH = "previews/dev"
ENVIRONMENT_FILES = {"helmrelease.yaml", "kustomization.yaml", "namespace.yaml"}

Key = tuple[str, int]  # (repository, PR number)


def repository_entry(name: str, label: str = LABEL) -> str:
    """One `repositories:` entry: the PR needs `label`, no drafts, no forks (the defaults)."""
    return f"""\
  - name: {name}
    labels: [{label}]
    chart:
      chart: app
      version: '>=1.0.0'
      sourceRef: {{kind: HelmRepository, name: charts, namespace: flux-system}}
    values:
      image: {{tag: '<<PR_HEAD_SHA>>'}}
"""


def pulls(github: FakeGitHub, repository: str) -> list[PullState]:
    """Every PR of the repository, open or closed (numbers are given out 1, 2, 3, ...)."""
    found = []
    number = 1
    while True:
        try:
            found.append(github.pull(repository, number))
        except KeyError:
            return found
        number += 1


def is_eligible(pull: PullState, label: str = LABEL) -> bool:
    """What the test config asks for: open, labelled, not a draft, not from a fork."""
    same_repo = (pull.head_repo or "").lower() == pull.repo.lower()
    return pull.state == "open" and label in pull.labels and not pull.draft and same_repo


def eligible(github: FakeGitHub, repositories: Iterable[str]) -> dict[Key, str]:
    """(repository, number) -> head sha of every PR that should have an environment now."""
    return {
        (pull.repo, pull.number): pull.head_sha
        for repository in repositories
        for pull in pulls(github, repository)
        if is_eligible(pull)
    }


@dataclass(frozen=True)
class Fleet:
    environments: dict[Key, str]  # (repository, number) -> head sha in its HelmRelease
    folders: dict[Key, str]  # (repository, number) -> its folder under the managed path
    problems: list[str]  # anything malformed: a partial folder, an index out of step

    def of(self, repository: str) -> dict[Key, str]:
        return {key: sha for key, sha in self.environments.items() if key[0] == repository}


def _archive(bare: Path, path: str) -> dict[str, bytes]:
    done = subprocess.run(
        ["git", "archive", "--format=tar", "main", "--", path],
        cwd=bare,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        # No branch yet, or nothing under the path yet: an empty fleet.
        stderr = done.stderr.decode(errors="replace")
        if "not a valid object name" in stderr or "did not match any files" in stderr:
            return {}
        raise AssertionError(f"git archive failed: {stderr}")
    files = {}
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                files[member.name.removeprefix(path + "/")] = extracted.read()
    return files


def read_fleet(bare: Path, path: str = FLEET_PATH) -> Fleet:
    """The environments on the fleet repository's main branch, from their HelmReleases."""
    files = _archive(bare, path)
    environments: dict[Key, str] = {}
    folders: dict[Key, str] = {}
    problems: list[str] = []
    by_folder: dict[str, set[str]] = {}
    for name in files:
        parts = PurePosixPath(name).parts
        if len(parts) == 2:
            by_folder.setdefault(parts[0], set()).add(parts[1])
    for folder, names in sorted(by_folder.items()):
        if names != ENVIRONMENT_FILES:
            problems.append(f"{folder} holds {sorted(names)}")
            if "helmrelease.yaml" not in names:
                continue
        release = yaml.load(files[f"{folder}/helmrelease.yaml"], Loader=yaml.CSafeLoader)
        annotations = release["metadata"]["annotations"]
        key = (annotations["prgen.io/repository"], int(annotations["prgen.io/pull-request"]))
        if key in environments:
            problems.append(f"{key} has two folders: {folders[key]} and {folder}")
        environments[key] = annotations["event.toolkit.fluxcd.io/commit"]
        folders[key] = folder
    if files:
        index = yaml.load(files.get("kustomization.yaml", b"{}"), Loader=yaml.CSafeLoader)
        listed = set(index.get("resources") or ())
        if listed != set(by_folder):
            problems.append(
                f"the index lists {sorted(listed)}, the folders are {sorted(by_folder)}"
            )
    return Fleet(environments, folders, problems)


class Switch:
    """The one request hook registered with the fake GitHub for a whole test; each step may
    set what it does (inject a fault, close a PR mid-listing) or clear it."""

    def __init__(self) -> None:
        self.current: Callable[[RecordedRequest], None] | None = None

    def __call__(self, request: RecordedRequest) -> None:
        if self.current is not None:
            self.current(request)
