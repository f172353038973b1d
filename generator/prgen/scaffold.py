"""What `prgen init` writes: a commented prgen.yaml and, if asked, a fleet repository laid out
like fleet-repo-example/ (from the copy shipped with prgen). Pure: it returns files, the
command writes them."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from prgen.config import Config, parse_config
from prgen.errors import ConfigError
from prgen.render import render_environment, render_index
from prgen.resources import data_path

EXAMPLE = "fleet-repo-example"
EXAMPLE_PATH = "previews/dev"  # fleet.path of the example, and its Flux Kustomization's path
CONFIG_IN_FLEET = PurePosixPath("infrastructure/prgen/prgen.yaml")  # what its CronJob reads
DEFAULT_REPOSITORY = "acme/shop"
DEFAULT_FLEET_URL = "https://github.com/acme/fleet.git"
_REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")

HEADER = """\
# prgen.yaml, written by `prgen init`. Every field is described in prgen's
# schemas/prgen.schema.json and README. Next:
#   prgen validate --config {config}           # the config and its templates
#   prgen sync --config {config} --dry-run     # what a run would change
"""

AUTH_PERSONAL = """\
github:
  apiUrl: https://api.github.com
  # A token that can read the repositories' pull requests and write commit
  # statuses, deployments and issue comments on them. Or, better at scale, a
  # GitHub App instead of tokenEnv (prgen init --app-id N --installation-id N):
  #   app: {id: 123456, installationId: 12345678, privateKeyEnv: GITHUB_APP_PRIVATE_KEY}
  tokenEnv: GITHUB_TOKEN
"""

AUTH_APP = """\
github:
  apiUrl: https://api.github.com
  app:
    id: {app_id}  # the GitHub App's "App ID"
    installationId: {installation_id}  # the number at the end of the installation's URL
    privateKeyEnv: GITHUB_APP_PRIVATE_KEY  # the App's private key (PEM)
"""

#: Placeholders for `--fleet` without --app-id: the fleet's CronJob authenticates as an App.
PLACEHOLDER_APP = (123456, 12345678)

FLEET = """\
fleet:
  url: {url}  # the repository Flux reconciles
  branch: main
  path: {path}  # the folder prgen owns in it: one sub-folder per pull request
  author: {{name: prgen, email: prgen@users.noreply.github.com}}
{token}"""

REPOSITORY = """\
  - name: {name}
    # Which pull requests get an environment; a PR left out is reported with why.
    excludeLabels: [no-preview]
    # excludeTitles: '(?i)^wip\\b'
    # excludeAuthors: ['dependabot[bot]']
    namespace: '{short}-pr-<<PR_NUMBER>>'
    chart:
      # The example chart in the fleet repository (prgen init --fleet writes it),
      # rebuilt by Flux when charts/preview-app/Chart.yaml gets a new version.
      chart: ./charts/preview-app
      reconcileStrategy: ChartVersion
      sourceRef: {{kind: GitRepository, name: flux-system, namespace: flux-system}}
    values:
      image: {{repository: 'ghcr.io/{name_lower}', tag: '<<PR_HEAD_SHA>>'}}
      ingress: {{host: '{short}-pr-<<PR_NUMBER>>.preview.example.com'}}
    healthCheck:
      url: 'https://{short}-pr-<<PR_NUMBER>>.preview.example.com/healthz'
      timeout: 5s
      deadline: 15m
    report:
      commitStatus: {{context: prgen/preview}}
      deployment: {{environment: 'pr-<<PR_NUMBER>>'}}
      comment: true
    # Lifecycle: an environment idle for a week goes (its PR is told a day before), never
    # one labelled preview-keep; an idle one sleeps (the chart scales it to zero).
    # expireAfter: 7d
    # keepLabel: preview-keep
    # sleepAfter: 12h
    # What the repository may set for itself in .prgen.yaml on its default branch:
    # repoConfig: {{allow: [values, healthCheck]}}
"""


@dataclass(frozen=True)
class Scaffold:
    """The files to write, by path relative to the target folder, and where the config is."""

    files: dict[PurePosixPath, bytes]
    config: PurePosixPath
    executable: frozenset[PurePosixPath]  # copied with their executable bit


def short_name(repository: str) -> str:
    """The repository's name as a DNS label prefix: lower case, [a-z0-9-], at most 40 chars."""
    name = repository.split("/", 1)[1].lower()
    label = re.sub(r"[^a-z0-9-]+", "-", name).strip("-")[:40].strip("-")
    return label or "app"


def config_text(
    repositories: Sequence[str],
    fleet_url: str,
    path: str,
    config: PurePosixPath,
    app: tuple[int, int] | None = None,
) -> str:
    for name in repositories:
        if not _REPOSITORY.fullmatch(name):
            raise ConfigError(f"{name!r} is not OWNER/NAME", "--repo")
    shorts = [short_name(name) for name in repositories]
    clashing = sorted({s for s in shorts if shorts.count(s) > 1})
    if clashing:
        raise ConfigError(
            f"two repositories would share the namespaces {clashing[0]}-pr-N: "
            "give one of them its own namespace in prgen.yaml after init",
            "--repo",
        )
    token = (
        "  # The fleet is pushed over HTTPS with this token (sent as a header, never stored).\n"
        "  tokenEnv: FLEET_TOKEN\n"
        if fleet_url.startswith("https://")
        else ""
    )
    parts = [
        HEADER.format(config=config),
        AUTH_PERSONAL if app is None else AUTH_APP.format(app_id=app[0], installation_id=app[1]),
        FLEET.format(url=_quoted(fleet_url), path=_quoted(path), token=token),
        "repositories:\n",
        *(
            REPOSITORY.format(name=name, name_lower=name.lower(), short=short)
            for name, short in zip(repositories, shorts, strict=True)
        ),
    ]
    return "".join(parts)


def _quoted(value: str) -> str:
    """A YAML single-quoted scalar: any URL or path stays one string."""
    return "'" + value.replace("'", "''") + "'"


def validate(text: str, source: str, base_dir: Path) -> Config:
    """The config as prgen would load it, every repository's templates rendered once."""
    from prgen.commands.validate import example_pull_request  # the one example PR

    config = parse_config(text, source=source, base_dir=base_dir)
    for repo in config.repositories:
        render_environment(repo, example_pull_request(repo.name))
    return config


def _example_files() -> Iterator[tuple[PurePosixPath, Path]]:
    root = data_path(EXAMPLE)
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield PurePosixPath(path.relative_to(root).as_posix()), path


def scaffold(
    repositories: Sequence[str],
    fleet_url: str,
    path: str,
    *,
    fleet: bool,
    app: tuple[int, int] | None = None,
) -> Scaffold:
    """prgen.yaml alone, or (`fleet`) a fleet repository with prgen.yaml where its CronJob
    reads it, the folder prgen owns at `path` (empty: the example's environments are not
    yours) and the Flux Kustomization that reconciles it pointed there. The fleet's CronJob
    authenticates as a GitHub App (`app`: its id and installation id; placeholders if None)."""
    config = CONFIG_IN_FLEET if fleet else PurePosixPath("prgen.yaml")
    if fleet and app is None:
        app = PLACEHOLDER_APP
    text = config_text(repositories, fleet_url, path, config, app)
    files: dict[PurePosixPath, bytes] = {config: text.encode()}
    executable: set[PurePosixPath] = set()
    if not fleet:
        return Scaffold(files, config, frozenset())
    for relative, source in _example_files():
        if relative == CONFIG_IN_FLEET or relative.is_relative_to(EXAMPLE_PATH):
            continue
        data = source.read_bytes()
        if relative == PurePosixPath("clusters/preview/previews.yaml"):
            data = _point_previews_at(data, path)
        files[relative] = data
        if source.stat().st_mode & 0o100:
            executable.add(relative)
    files[PurePosixPath(path) / "kustomization.yaml"] = render_index([])
    return Scaffold(files, config, frozenset(executable))


def _point_previews_at(data: bytes, path: str) -> bytes:
    text = data.decode()
    old = f"  path: ./{EXAMPLE_PATH}\n"
    if text.count(old) != 1:
        raise AssertionError("the example's previews.yaml no longer names ./previews/dev once")
    return text.replace(old, f"  path: ./{path}\n").encode()
