"""Telling a repository's developers on their PRs that its `.prgen.yaml` is broken.

Every open PR of that repository gets a failing `prgen/config` commit status (a check run
of that name when prgen is a GitHub App) saying the file, line, field and reason: the
developer who broke it sees it where they work. Once the file is fixed, each head that
shows the failure gets a success in its place.

Which repositories were told so is remembered on the runner (a file beside the fleet's
objects), so a repository whose file stays fine costs no read of its PRs' heads. A runner that
lost that memory (a new pod without its volume) does not look for failures it cannot know it
said: at 10,000 open PRs that look would spend twice the hourly rate limit. A failure it said
then stays on its head until the PR's next push (a status belongs to a commit).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from github import Github

from prgen.config import Config, RepositorySettings
from prgen.github.channels import GitHubReporter
from prgen.model import PullRequest
from prgen.repo_config import RepoConfigOutcome
from prgen.report import (
    DESCRIPTION_LIMIT,
    CheckRunReport,
    CommitStatusReport,
    DesiredReport,
    Health,
    Observation,
    markdown_code,
    plain_text,
)
from prgen.sync import Syncer
from prgen.sync_result import SyncResult

log = logging.getLogger(__name__)

CONTEXT = "prgen/config"
MEMORY_FILE = "prgen-repo-configs.json"


def config_report(outcome: RepoConfigOutcome, *, app: bool) -> DesiredReport:
    """A failure naming the problem when the file is broken, else a success."""
    if outcome.state == "broken":
        problem = outcome.problem or "broken"
        description = plain_text(f"{problem}", DESCRIPTION_LIMIT)
        state, conclusion = "failure", "failure"
        title = f"Preview config: {outcome.path} is broken"
        summary = (
            f"prgen could not use {markdown_code(outcome.path)} of the default branch, so this "
            f"repository's preview environments are kept exactly as they are until it is "
            f"fixed:\n\n{markdown_code(problem)}\n"
        )
    else:
        description = f"{outcome.path} is fine"
        state, conclusion = "success", "success"
        title = f"Preview config: {outcome.path} is fine"
        summary = f"prgen reads {markdown_code(outcome.path)} of the default branch again.\n"
    if app:
        run = CheckRunReport(CONTEXT, "completed", conclusion, None, title, summary)
        return DesiredReport(None, None, None, run)
    return DesiredReport(CommitStatusReport(CONTEXT, state, description, None), None, None)


def _load(path: Path | None) -> set[str]:
    """The repositories (lower case) this runner told that their file is broken."""
    if path is None:
        return set()
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return set()
    return {str(name) for name in document} if isinstance(document, list) else set()


def _save(path: Path | None, told: set[str]) -> None:
    if path is None:
        return
    temporary = path.with_name(f"{path.name}.{os.getpid()}")
    try:
        temporary.write_text(json.dumps(sorted(told)))
        os.replace(temporary, path)
    except OSError as exc:  # forgetting costs a failure left on its head, nothing else
        log.debug("could not write %s: %s", path, exc)
        temporary.unlink(missing_ok=True)


def report_repo_configs(
    config: Config,
    client: Github,
    outcomes: Sequence[RepoConfigOutcome],
    pulls: dict[str, tuple[PullRequest, ...]],  # by lower-case repository name
    memory_path: Path | None,
    *,
    reporter: GitHubReporter | None = None,
) -> list[str]:
    """Say on each open PR's head what its repository's file did; the warnings of what
    could not be said. `pulls`: the open PRs of each repository, by name."""
    reporter = reporter or GitHubReporter(client)
    until = time.monotonic() + config.probe.round_timeout
    by_name = {repo.name.lower(): repo for repo in config.repositories}
    app = config.github.app is not None
    told = _load(memory_path)
    before = set(told)
    warnings: list[str] = []
    for outcome in outcomes:
        key = outcome.repository.lower()
        repo = by_name.get(key)
        if repo is None or outcome.state == "unread":
            continue  # unread: nothing is known to say
        broken = outcome.state == "broken"
        if not broken and key not in told:
            continue  # nothing this runner said shows a failure: no head is read
        failed = _tell(
            reporter, repo, pulls.get(key, ()), config_report(outcome, app=app), broken, until
        )
        warnings.extend(failed)
        if broken:
            told.add(key)
        elif not failed:
            told.discard(key)
    if told != before:
        _save(memory_path, told)
    return warnings


def _tell(
    reporter: GitHubReporter,
    repo: RepositorySettings,
    pulls: Sequence[PullRequest],
    wanted: DesiredReport,
    broken: bool,
    until: float,
) -> list[str]:
    warnings = []
    for pr in pulls:
        observation = Observation(
            repo.name,
            pr.number,
            pr.head_sha,
            "",
            None,
            Health.FAILED if broken else Health.READY,
            "",
        )
        try:
            if not broken and not reporter.shows_failure(repo.name, pr.head_sha, wanted):
                continue
            error = reporter.report(observation, wanted, until).error
        except Exception as exc:  # this head's report failed; the others' go on
            error = f"{type(exc).__name__}: {exc}"
        if error:
            warnings.append(f"could not set {CONTEXT} on {repo.name}#{pr.number}: {error}")
    return warnings


def tell_repo_configs(syncer: Syncer, client: Github, result: SyncResult) -> list[str]:
    """After a sync (never a dry run): what each repository's file did, said on its open
    PRs; the warnings of what could not be said."""
    if not result.repo_configs or result.dry_run:
        return []
    pulls = {
        listing.repository.lower(): listing.pull_requests
        for listing in result.listings
        if listing.complete
    }
    pulls.update({name.lower(): found for name, found in result.repo_config_pulls.items()})
    return report_repo_configs(
        syncer.config, client, result.repo_configs, pulls, syncer.fleet.local_file(MEMORY_FILE)
    )
