"""prgen.yaml -> a validated, compiled `Config`.

Validation happens in two passes, both before anything touches GitHub or git:
the JSON Schema in `schemas/` checks the document's shape, then each repository
entry is merged with `defaults` and checked again as a whole (regexes compile,
exactly one of chart/chartRef, placeholders are known, templates load).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from prgen.config_schema import check_schema, load_yaml, schema, yaml_problem
from prgen.errors import ConfigError
from prgen.naming import dns_label, slug
from prgen.placeholders import PLACEHOLDER, PR_TEXT, UNTRUSTED, unknown_placeholders
from prgen.resources import data_path
from prgen.schedule import SleepSchedule, compile_schedule
from prgen.targets import check_no_target_placeholder, check_targets, target_report

DEFAULT_API_URL = "https://api.github.com"
# Room for 30,000 open PRs at 100 a page; the time fits one run of the example CronJob.
DEFAULT_MAX_PAGES = 300
DEFAULT_LISTING_TIMEOUT = 180.0
DEFAULT_CONCURRENCY = 16  # requests in flight; GitHub's secondary limit allows 100
# Points a run leaves unspent: room for this run's report writes (never conditional, one point
# each) and for whoever else uses the credential, so that prgen never spends the last of it.
DEFAULT_RATE_LIMIT_RESERVE = 100
DEFAULT_CACHE_MAX_MB = 256
DEFAULT_NAMESPACE = "<<REPO_NAME>>-pr-<<PR_NUMBER>>"
# Namespaces no PR may ever name, whatever the config says.
SYSTEM_NAMESPACES = frozenset(
    {"kube-system", "kube-public", "kube-node-lease", "default", "flux-system"}
)


@dataclass(frozen=True)
class AppSettings:
    app_id: int
    installation_id: int
    private_key_file: Path | None
    private_key_env: str | None


@dataclass(frozen=True)
class GitHubSettings:
    api_url: str = DEFAULT_API_URL
    token_env: str = "GITHUB_TOKEN"  # noqa: S105 - the variable's name, not a token
    app: AppSettings | None = None
    timeout: float = 30.0
    retries: int = 3
    request_interval: float = 0.0  # > 0: strictly serial calls, this far apart
    # Writes (POST, PATCH, DELETE) go one at a time across all workers, this far apart:
    # GitHub asks for serial writes at least a second apart to stay clear of its secondary
    # limits; reads are conditional and concurrent.
    write_interval: float = 1.0
    max_pages: int = DEFAULT_MAX_PAGES  # of one repository's listing
    listing_timeout: float = DEFAULT_LISTING_TIMEOUT  # seconds, one repository's listing
    concurrency: int = DEFAULT_CONCURRENCY  # requests in flight while listing
    rate_limit_reserve: int = DEFAULT_RATE_LIMIT_RESERVE
    cache_max_mb: int = DEFAULT_CACHE_MAX_MB

    @property
    def workers(self) -> int:
        """Listings at a time: one when requestInterval asks for strictly serial calls."""
        return 1 if self.request_interval > 0 else self.concurrency


@dataclass(frozen=True)
class FleetSettings:
    url: str
    path: str
    branch: str = "main"
    author_name: str = "prgen"
    author_email: str = "prgen@localhost"
    token_env: str | None = None
    push_retries: int = 5
    # `targets:`: every target's folder (`path` is the first); empty: `path` alone.
    target_paths: tuple[str, ...] = ()

    @property
    def paths(self) -> tuple[str, ...]:
        """Every folder prgen manages in the fleet."""
        return self.target_paths or (self.path,)


@dataclass(frozen=True)
class Templates:
    helm_release: Path
    namespace: Path


@dataclass(frozen=True)
class HealthCheck:
    url: str
    expect: tuple[tuple[int, int], ...] = ((200, 299),)  # inclusive ranges
    contains: str | None = None
    timeout: float = 5.0
    deadline: float = 900.0

    def accepts(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.expect)


@dataclass(frozen=True)
class ReportSettings:
    commit_status_context: str | None = "prgen/preview"
    deployment_environment: str | None = "pr-<<PR_NUMBER>>"
    comment: bool = True
    check_run: str | None = None  # the check run's name; needs a GitHub App


DEFAULT_CHECK_RUN = "prgen/preview"


@dataclass(frozen=True)
class NamePattern:
    """One entry of a list of names (logins, check names): a name, or a regex written `/…/`.

    No login and no usual check name starts and ends with a slash, so the rule reads a
    plain name full of regex characters (`dependabot[bot]`) as itself. `written` is the
    entry as the config has it, for messages.
    """

    written: str
    pattern: re.Pattern[str]

    def matches(self, name: str) -> bool:
        return self.pattern.fullmatch(name) is not None


@dataclass(frozen=True)
class DeployWhen:
    """What a PR's head must have before prgen deploys it (`deployWhen`).

    `checks`: "all" (every check reported on the head), each required check (matched whole
    against its name), or None (no check required). `approvals`: approving reviews needed.
    `check_entries`: each of `checks` as the config wrote it, for messages: a plain name's
    pattern is escaped (`lint \\(3\\.12\\)`), its entry is not (`lint (3.12)`).
    """

    checks: Literal["all"] | tuple[re.Pattern[str], ...] | None
    approvals: int = 0
    check_entries: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProbeSettings:
    # Above the environments expected to hang at once (a tenth of a thousand): a hanging
    # probe holds its slot for its whole timeout.
    concurrency: int = 128
    closed_lookback: int = 20
    # A whole round's time, probes and GitHub writes with their retries: well inside the
    # example CronJob's activeDeadlineSeconds (240), which the sync before it shares.
    round_timeout: float = 120.0


@dataclass(frozen=True)
class ServerSettings:
    """`prgen serve`: where it listens, where its secrets are, how often and how soon it syncs."""

    host: str = "0.0.0.0"  # noqa: S104 - a pod's server listens on the pod's interfaces
    port: int = 8080
    webhook_secret_env: str = "PRGEN_WEBHOOK_SECRET"  # noqa: S105 - a name, not a secret
    api_token_env: str = "PRGEN_API_TOKEN"  # noqa: S105 - a name, not a token
    interval: float = 600.0  # a full sync, the only one that removes without an event
    # A burst of webhooks is one sync: after this much quiet, and no later than max_delay
    # after the first of them (at 50 events/s the quiet never comes).
    quiet_period: float = 1.0
    max_delay: float = 3.0
    max_body_bytes: int = 25 * 1024 * 1024  # GitHub caps a delivery at 25 MB
    status_cache_ttl: float = 30.0
    # A probe round, as `prgen sync --probe` after each CronJob run (0: none).
    probe_interval: float = 300.0


# Fields only the central config may set: a name is what the file is read for, templates are
# paths on prgen's own disk, and the file must not widen what it may set.
CENTRAL_ONLY = frozenset({"name", "templates", "repoConfig"})
DEFAULT_REPO_CONFIG_PATH = ".prgen.yaml"


@dataclass(frozen=True)
class RepoConfigSettings:
    """`repoConfig:` a file on the repository's default branch that may set `allow`."""

    path: str
    allow: frozenset[str]
    base_dir: Path  # the central config's folder: its template paths stay relative to it


@dataclass(frozen=True)
class RepositorySettings:
    name: str
    labels: frozenset[str]
    exclude_labels: frozenset[str]
    branches: re.Pattern[str] | None
    target_branches: re.Pattern[str] | None
    drafts: bool
    forks: bool | str  # False, True or "trusted"
    max_environments: int | None
    namespace: str
    chart: Mapping[str, Any] | None
    chart_ref: Mapping[str, Any] | None
    values: Mapping[str, Any]
    templates: Templates
    trusted_fork_labels: frozenset[str] = frozenset()
    titles: re.Pattern[str] | None = None  # searched in the title, as branches are
    exclude_titles: re.Pattern[str] | None = None
    authors: tuple[NamePattern, ...] = ()  # empty: any author
    exclude_authors: tuple[NamePattern, ...] = ()
    deploy_when: DeployWhen | None = None  # None: deploy every head at once
    health_check: HealthCheck | None = None
    environment_url: str | None = None
    report: ReportSettings = ReportSettings()
    reserved_namespaces: frozenset[str] = SYSTEM_NAMESPACES
    # Which PRs get an environment and where: see `config_identity`. Set by parse_config.
    identity: str = ""
    # The repository's own `.prgen.yaml` and what it may set (None: the central entry only).
    repo_config: RepoConfigSettings | None = None
    # The entry as written, `defaults` merged in: what a `.prgen.yaml` is merged over.
    entry: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    # Lifecycle (see lifecycle.py): seconds of no new head and no /preview command.
    expire_after: float | None = None  # None: never expires
    expire_warning: float = 86400.0
    keep_label: str | None = None  # a PR with it never expires
    sleep_after: float | None = None  # None: never sleeps for being idle
    sleep_schedule: SleepSchedule | None = None
    target: str = ""  # the target this entry renders into (`targets:`); "" for fleet.path

    @property
    def owner(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def short_name(self) -> str:
        return self.name.split("/", 1)[1]


@dataclass(frozen=True)
class Target:
    """One folder of the fleet (a cluster's previews) and the repositories rendered into it.

    `name` is "" for the one folder of `fleet.path` (no `targets:`): nothing names it then.
    """

    name: str
    path: str
    repositories: tuple[RepositorySettings, ...]


@dataclass(frozen=True)
class Config:
    github: GitHubSettings
    fleet: FleetSettings
    repositories: tuple[RepositorySettings, ...]
    source: str  # where the config came from, for messages
    probe: ProbeSettings = ProbeSettings()
    max_deletions: int | None = None  # None: more than half, and at least 5
    reserved_namespaces: frozenset[str] = SYSTEM_NAMESPACES
    server: ServerSettings = ServerSettings()
    targets: tuple[Target, ...] = ()  # `targets:`; empty: the one folder of fleet.path

    @property
    def fleet_targets(self) -> tuple[Target, ...]:
        """Every target; without `targets:`, the one folder of fleet.path (named "")."""
        return self.targets or (Target("", self.fleet.path, self.repositories),)

    def repository(self, name: str) -> RepositorySettings:
        for repo in self.repositories:
            if repo.name.lower() == name.lower():
                return repo
        raise ConfigError(f"repository {name!r} is not configured", source=self.source)


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            f"cannot read config: {exc.strerror} (`prgen init` writes one to start from)",
            source=str(path),
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror}", source=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", source=str(path)) from exc
    return parse_config(text, source=str(path), base_dir=path.parent)


def parse_config(text: str, *, source: str = "prgen.yaml", base_dir: Path | None = None) -> Config:
    document = load_yaml(text, source)
    if not isinstance(document, dict):
        raise ConfigError("the config must be a YAML mapping", source=source)
    check_schema(document, source)
    base = base_dir or Path.cwd()
    defaults = document.get("defaults", {})
    repositories = tuple(
        _compile_repository(merge_entries(defaults, entry), index, source, base)
        for index, entry in enumerate(document["repositories"])
    )
    _check_unique_names(repositories, source)
    check_namespaces_apart(repositories, source)
    targets_entry = document.get("targets")
    if targets_entry is not None:
        check_targets(document, source)
    else:
        check_no_target_placeholder(document, source)
    fleet = _compile_fleet(document["fleet"], base, targets_entry)
    safety = document.get("safety", {})
    reserved = SYSTEM_NAMESPACES | frozenset(safety.get("reservedNamespaces", ()))
    for index, repo in enumerate(repositories):
        check_namespace_not_reserved(repo, reserved, f"repositories[{index}]", source)
    repositories = tuple(
        dataclasses.replace(
            repo, reserved_namespaces=reserved, identity=config_identity(repo, fleet.path)
        )
        for repo in repositories
    )
    targets: tuple[Target, ...] = ()
    if targets_entry is not None:
        targets = tuple(
            Target(target["name"], target["path"].strip("/"), repos)
            for target, repos in zip(
                targets_entry,
                _compile_targets(document, targets_entry, reserved, source, base),
                strict=True,
            )
        )
    github = _compile_github(document.get("github", {}), base, source)
    _check_check_runs_have_an_app(repositories, github, source)
    return Config(
        github=github,
        fleet=fleet,
        repositories=repositories,
        source=source,
        max_deletions=safety.get("maxDeletions"),
        reserved_namespaces=reserved,
        probe=_compile_probe(document.get("probe", {}), source),
        server=_compile_server(document.get("server", {}), source),
        targets=targets,
    )


def _compile_targets(
    document: Mapping[str, Any],
    targets: list[dict[str, Any]],
    reserved: frozenset[str],
    source: str,
    base: Path,
) -> Iterator[tuple[RepositorySettings, ...]]:
    """Each target's repositories, each compiled from defaults < the target's values < its
    entry, with an identity of that target's folder (so each target keeps its own)."""
    defaults = document.get("defaults", {})
    for target in targets:
        layered = merge_entries(defaults, {"values": target.get("values", {})})
        compiled = []
        for index, entry in enumerate(document["repositories"]):
            merged = merge_entries(layered, entry)
            if target["name"] not in merged.get("targets", [target["name"]]):
                continue
            repo = _compile_repository(merged, index, source, base)
            path = target["path"].strip("/")
            compiled.append(
                dataclasses.replace(
                    repo,
                    reserved_namespaces=reserved,
                    identity=config_identity(repo, path),
                    target=target["name"],
                    report=target_report(repo.report, target["name"]),
                )
            )
        yield tuple(compiled)


def _compile_probe(entry: Mapping[str, Any], source: str) -> ProbeSettings:
    round_timeout = parse_duration(entry.get("roundTimeout", "120s"))
    if round_timeout <= 0:
        raise ConfigError("must be more than zero", "probe.roundTimeout", source)
    return ProbeSettings(
        concurrency=entry.get("concurrency", ProbeSettings.concurrency),
        closed_lookback=entry.get("closedLookback", 20),
        round_timeout=round_timeout,
    )


def _compile_server(entry: Mapping[str, Any], source: str) -> ServerSettings:
    durations = {}
    for name, field, default in (
        ("interval", "interval", "10m"),
        ("quietPeriod", "quiet_period", "1s"),
        ("maxDelay", "max_delay", "3s"),
        ("statusCacheTtl", "status_cache_ttl", "30s"),
        ("probeInterval", "probe_interval", "5m"),
    ):
        seconds = parse_duration(entry.get(name, default))
        if seconds <= 0 and name not in ("statusCacheTtl", "probeInterval"):
            raise ConfigError("must be more than zero", f"server.{name}", source)
        durations[field] = seconds
    if durations["max_delay"] < durations["quiet_period"]:
        raise ConfigError(
            "must be at least server.quietPeriod (a burst is synced no later than this)",
            "server.maxDelay",
            source,
        )
    defaults = ServerSettings()
    return ServerSettings(
        host=entry.get("host", defaults.host),
        port=entry.get("port", defaults.port),
        webhook_secret_env=entry.get("webhookSecretEnv", defaults.webhook_secret_env),
        api_token_env=entry.get("apiTokenEnv", defaults.api_token_env),
        max_body_bytes=entry.get("maxBodyBytes", defaults.max_body_bytes),
        **durations,
    )


def merge_entries(base: Any, override: Any) -> Any:
    """Deep-merge mappings; anything else in `override` replaces `base`."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = copy.deepcopy(base)
        for key, value in override.items():
            merged[key] = (
                merge_entries(merged.get(key), value) if key in merged else copy.deepcopy(value)
            )
        return merged
    return copy.deepcopy(override)


def _compile_regex(pattern: str | None, path: str, source: str) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"not a valid regular expression: {exc}", path, source) from exc


def _compile_name(written: str, path: str, source: str, *, logins: bool) -> NamePattern:
    """An entry written `/…/` is a regex that must match the whole name; any other entry is
    the name itself. Logins compare ignoring case, as GitHub compares them (their regexes
    too); check names exactly."""
    flags = re.IGNORECASE if logins else 0
    if len(written) > 2 and written.startswith("/") and written.endswith("/"):
        try:
            return NamePattern(written, re.compile(written[1:-1], flags))
        except re.error as exc:
            raise ConfigError(f"not a valid regular expression: {exc}", path, source) from exc
    if logins and "/" in written:
        raise ConfigError(
            f"{written!r} is neither a login (logins have no '/') nor a regex (written /…/)",
            path,
            source,
        )
    return NamePattern(written, re.compile(re.escape(written), flags))


def _compile_names(
    entries: Iterable[str], path: str, source: str, *, logins: bool
) -> tuple[NamePattern, ...]:
    return tuple(
        _compile_name(written, f"{path}[{index}]", source, logins=logins)
        for index, written in enumerate(entries)
    )


def _compile_deploy_when(
    entry: Mapping[str, Any] | None, own: Iterable[str | None], at: str, source: str
) -> DeployWhen | None:
    """None when nothing is required: not configured, or `{checks: [], approvals: 0}` (which
    lets a repository turn off a gate its `defaults` set).

    `own`: the names prgen reports under. Its own status never counts toward its gate, so
    naming one as a required check would hold every PR for good.
    """
    if entry is None:
        return None
    written = entry.get("checks")
    checks: Literal["all"] | tuple[re.Pattern[str], ...] | None
    entries: tuple[str, ...] = ()
    if written == "all":
        checks = "all"
    else:
        names = _compile_names(written or (), f"{at}.checks", source, logins=False)
        for index, name in enumerate(names):
            if name.written in own:
                raise ConfigError(
                    f"{name.written!r} is what prgen itself reports, which never counts toward "
                    "its own gate: no PR would ever be deployed",
                    f"{at}.checks[{index}]",
                    source,
                )
        checks = tuple(name.pattern for name in names) or None
        entries = tuple(name.written for name in names)
    approvals = entry.get("approvals", 0)
    if approvals < 0:  # the schema says so too; this keeps the dataclass honest on its own
        raise ConfigError("must be 0 or more", f"{at}.approvals", source)
    if checks is None and approvals == 0:
        return None
    return DeployWhen(checks, approvals, entries)


def _compile_repository(
    entry: dict[str, Any], index: int, source: str, base: Path
) -> RepositorySettings:
    return compile_repository(entry, f"repositories[{index}]", source, base)


def compile_repository(
    entry: Mapping[str, Any], at: str, source: str, base: Path
) -> RepositorySettings:
    """One repository entry, `defaults` merged in, checked as a whole; `at` is its path in
    the document, for messages."""
    has_chart, has_ref = "chart" in entry, "chartRef" in entry
    if has_chart == has_ref:
        why = (
            "both 'chart' and 'chartRef' are set" if has_chart else "neither 'chart' nor 'chartRef'"
        )
        raise ConfigError(f"{why}: exactly one is required (after merging defaults)", at, source)
    for field in (
        "namespace",
        "values",
        "chart",
        "chartRef",
        "healthCheck",
        "environmentUrl",
        "report",
    ):
        for where, name in unknown_placeholders(entry.get(field), f"{at}.{field}"):
            raise ConfigError(f"unknown placeholder <<{name}>>", where, source)
    if "<<TARGET>>" in entry.get("namespace", ""):
        raise ConfigError(
            "<<TARGET>> can't be used in the namespace: each target is a cluster of its own, "
            "so a PR's namespace may be the same in all of them",
            f"{at}.namespace",
            source,
        )
    if "<<NAMESPACE>>" in entry.get("namespace", ""):
        raise ConfigError(
            "<<NAMESPACE>> can't be used to make the namespace itself", f"{at}.namespace", source
        )
    namespace = entry.get("namespace", DEFAULT_NAMESPACE)
    if _made_of_pr_text(namespace) and not entry.get("namespaceFromPullRequestText", False):
        raise ConfigError(
            "a namespace made of nothing but PR text lets a PR choose any namespace; add a fixed "
            "part or <<PR_NUMBER>> (as in '<<REPO_NAME>>-<<PR_BRANCH_SLUG>>'), or set "
            "namespaceFromPullRequestText: true",
            f"{at}.namespace",
            source,
        )
    templates = _compile_templates(entry.get("templates", {}), f"{at}.templates", source, base)
    environment = (entry.get("report", {}).get("deployment") or {}).get("environment", "")
    for match in PLACEHOLDER.finditer(environment):
        if match.group(1) not in _ENVIRONMENT_PLACEHOLDERS:
            raise ConfigError(
                f"<<{match.group(1)}>> is not known once a PR is closed; use "
                + ", ".join(f"<<{name}>>" for name in sorted(_ENVIRONMENT_PLACEHOLDERS)),
                f"{at}.report.deployment.environment",
                source,
            )
    for field, url in (
        ("healthCheck.url", (entry.get("healthCheck") or {}).get("url")),
        ("environmentUrl", entry.get("environmentUrl")),
    ):
        problem = _url_problem(url) if url else None
        if problem:
            raise ConfigError(problem, f"{at}.{field}", source)
    for where, name in _unsafe_url_placeholders(entry, at):
        raise ConfigError(
            f"<<{name}>> is PR text and can't be used here; use a slug placeholder such as "
            "<<PR_BRANCH_SLUG>> or <<PR_NUMBER>>",
            where,
            source,
        )
    report = _compile_report(entry.get("report", {}))
    return RepositorySettings(
        name=entry["name"],
        labels=frozenset(entry.get("labels", ())),
        exclude_labels=frozenset(entry.get("excludeLabels", ())),
        branches=_compile_regex(entry.get("branches"), f"{at}.branches", source),
        target_branches=_compile_regex(entry.get("targetBranches"), f"{at}.targetBranches", source),
        drafts=entry.get("drafts", False),
        forks=entry.get("forks", False),
        max_environments=entry.get("maxEnvironments"),
        namespace=namespace,
        chart=entry.get("chart"),
        chart_ref=entry.get("chartRef"),
        values=entry.get("values", {}),
        templates=templates,
        trusted_fork_labels=frozenset(entry.get("trustedForkLabels", ())),
        titles=_compile_regex(entry.get("titles"), f"{at}.titles", source),
        exclude_titles=_compile_regex(entry.get("excludeTitles"), f"{at}.excludeTitles", source),
        authors=_compile_names(entry.get("authors", ()), f"{at}.authors", source, logins=True),
        exclude_authors=_compile_names(
            entry.get("excludeAuthors", ()), f"{at}.excludeAuthors", source, logins=True
        ),
        deploy_when=_compile_deploy_when(
            entry.get("deployWhen"),
            (report.commit_status_context, report.check_run),
            f"{at}.deployWhen",
            source,
        ),
        health_check=_compile_health_check(entry.get("healthCheck"), f"{at}.healthCheck", source),
        environment_url=entry.get("environmentUrl"),
        report=report,
        repo_config=_compile_repo_config(entry.get("repoConfig"), f"{at}.repoConfig", source, base),
        entry=copy.deepcopy(dict(entry)),
        **_compile_lifecycle(entry, at, source),
    )


def _compile_repo_config(
    entry: Mapping[str, Any] | None, at: str, source: str, base: Path
) -> RepoConfigSettings | None:
    if entry is None:
        return None
    known = set(schema()["$defs"]["repositorySettings"]["properties"]) - CENTRAL_ONLY
    for index, name in enumerate(entry.get("allow", ())):
        if name in CENTRAL_ONLY:
            raise ConfigError(
                f"'{name}' can only be set here, never by the repository",
                f"{at}.allow[{index}]",
                source,
            )
        if name not in known:
            guess = difflib.get_close_matches(name, sorted(known), n=1)
            hint = (
                f" (did you mean '{guess[0]}'?)"
                if guess
                else ": expected one of " + ", ".join(sorted(known))
            )
            raise ConfigError(f"unknown field '{name}'{hint}", f"{at}.allow[{index}]", source)
    path = entry.get("path", DEFAULT_REPO_CONFIG_PATH)
    return RepoConfigSettings(path, frozenset(entry.get("allow", ())), base)


def _compile_lifecycle(entry: Mapping[str, Any], at: str, source: str) -> dict[str, Any]:
    """expireAfter, expireWarning, keepLabel, sleepAfter, sleepSchedule: as fields."""
    fields: dict[str, Any] = {}
    for name, attribute in (
        ("expireAfter", "expire_after"),
        ("expireWarning", "expire_warning"),
        ("sleepAfter", "sleep_after"),
    ):
        if name in entry:
            seconds = parse_duration(entry[name])
            if seconds <= 0:
                raise ConfigError("must be more than zero", f"{at}.{name}", source)
            fields[attribute] = seconds
    fields["keep_label"] = entry.get("keepLabel")
    fields["sleep_schedule"] = compile_schedule(
        entry.get("sleepSchedule"), f"{at}.sleepSchedule", source
    )
    return fields


def _made_of_pr_text(template: str) -> bool:
    """A namespace template whose only letters and digits come from PR text."""
    fixed = PLACEHOLDER.sub(lambda m: "" if m.group(1) in PR_TEXT else "x", template)
    return not re.search(r"[A-Za-z0-9]", fixed)


def config_identity(repo: RepositorySettings, fleet_path: str) -> str:
    """A short hash of what decides which PRs of `repo` get an environment, and where.

    prgen records it in each HelmRelease it writes, so a prgen with other filters, another
    namespace template or another fleet path (a CronJob whose config has not caught up
    with the CI's, say) recognises environments it did not decide on and leaves them
    alone, instead of removing what the other creates, run after run. Values, chart and
    templates are not part of it: changing them updates environments as ever.
    """
    decides = {
        "labels": sorted(repo.labels),
        "excludeLabels": sorted(repo.exclude_labels),
        "branches": repo.branches.pattern if repo.branches else None,
        "targetBranches": repo.target_branches.pattern if repo.target_branches else None,
        "drafts": repo.drafts,
        "forks": repo.forks,
        "trustedForkLabels": sorted(repo.trusted_fork_labels),
        "maxEnvironments": repo.max_environments,
        "namespace": repo.namespace,
        "fleetPath": fleet_path,
    }
    # Filters added later count only when set: an identity must not change for a config
    # that does not use them, or its environments would look like another config's.
    later = {
        "titles": repo.titles.pattern if repo.titles else None,
        "excludeTitles": repo.exclude_titles.pattern if repo.exclude_titles else None,
        "authors": sorted(name.written for name in repo.authors) or None,
        "excludeAuthors": sorted(name.written for name in repo.exclude_authors) or None,
    }
    decides.update({key: value for key, value in later.items() if value is not None})
    canonical = json.dumps(decides, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def _unsafe_url_placeholders(entry: Mapping[str, Any], at: str) -> Iterator[tuple[str, str]]:
    """Placeholders carrying raw PR text where they would become part of a URL or a name."""
    places = {
        "healthCheck.url": (entry.get("healthCheck") or {}).get("url"),
        "healthCheck.contains": (entry.get("healthCheck") or {}).get("contains"),
        "environmentUrl": entry.get("environmentUrl"),
    }
    for field, value in places.items():
        for match in PLACEHOLDER.finditer(value or ""):
            if match.group(1) in UNTRUSTED:
                yield f"{at}.{field}", match.group(1)


def _url_problem(url: str) -> str | None:
    """What makes a probe or environment URL unsafe; both are shown on GitHub for anyone to read.

    Credentials in it would be shown too (the probe sends none). And placeholders may
    pick a host only inside a domain the config fixes: 'shop-pr-<<PR_NUMBER>>.preview.
    example.com' stays under preview.example.com whatever the PR is, while a host that is
    all placeholder ('<<PR_BRANCH_SLUG>>') or ends in one ('x.<<NAMESPACE>>') would let a
    branch name choose it: 'localhost', say.
    """
    _, at, host = urlsplit(url).netloc.rpartition("@")
    if at:
        return "credentials in the URL would be shown on GitHub; the probe sends no credentials"
    if not host.endswith("]"):
        host = host.rsplit(":", 1)[0]  # the port
    if ">>" not in host:
        return None
    fixed_domain = [label for label in host[host.rindex(">>") + 2 :].split(".")[1:] if label]
    if len(fixed_domain) >= 2:
        return None
    return (
        "a placeholder may choose the host only in front of a fixed domain of at least two "
        "labels, as in 'shop-pr-<<PR_NUMBER>>.preview.example.com'"
    )


# A deployment must be found again after its PR closed, from the fleet alone.
_ENVIRONMENT_PLACEHOLDERS = frozenset(
    {"PR_NUMBER", "REPO_OWNER", "REPO_NAME", "NAMESPACE", "TARGET"}
)
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Flux/Go duration ('90s', '15m', '1h30m') in seconds, or a lifetime with days ('7d');
    the schema has checked its form (days only where a lifetime is expected)."""
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def _expected_statuses(value: Any) -> tuple[tuple[int, int], ...]:
    if value is None:
        return ((200, 299),)
    if isinstance(value, int):
        return ((value, value),)
    if isinstance(value, list):
        return tuple((code, code) for code in value)
    low, high = (int(part) for part in str(value).split("-"))
    return ((low, high),)


def _compile_health_check(
    entry: Mapping[str, Any] | None, at: str, source: str
) -> HealthCheck | None:
    if entry is None:
        return None
    expect = _expected_statuses(entry.get("expectStatus"))
    if any(low > high for low, high in expect):
        raise ConfigError("a status range must go from low to high", f"{at}.expectStatus", source)
    timeout = parse_duration(entry.get("timeout", "5s"))
    deadline = parse_duration(entry.get("deadline", "15m"))
    if timeout <= 0:
        raise ConfigError("must be more than zero", f"{at}.timeout", source)
    return HealthCheck(entry["url"], expect, entry.get("contains"), timeout, deadline)


def _compile_report(entry: Mapping[str, Any]) -> ReportSettings:
    status = entry.get("commitStatus", {})
    deployment = entry.get("deployment", {})
    check_run = entry.get("checkRun", False)
    return ReportSettings(
        commit_status_context=None if status is False else status.get("context", "prgen/preview"),
        deployment_environment=None
        if deployment is False
        else deployment.get("environment", "pr-<<PR_NUMBER>>"),
        comment=entry.get("comment", True),
        check_run=None if check_run is False else check_run.get("name", DEFAULT_CHECK_RUN),
    )


def _check_check_runs_have_an_app(
    repositories: tuple[RepositorySettings, ...], github: GitHubSettings, source: str
) -> None:
    if github.app is not None:
        return
    for index, repo in enumerate(repositories):
        if repo.report.check_run is not None:
            raise ConfigError(
                "a check run can only be created by a GitHub App, and prgen authenticates "
                "with a token (github.tokenEnv): configure github.app, or report through "
                "report.commitStatus instead",
                f"repositories[{index}].report.checkRun",
                source,
            )


def _compile_templates(entry: Mapping[str, str], at: str, source: str, base: Path) -> Templates:
    paths = {}
    for field, default, kind in (
        ("helmRelease", "helmrelease.yaml", ("helm.toolkit.fluxcd.io/v2", "HelmRelease")),
        ("namespace", "namespace.yaml", ("v1", "Namespace")),
    ):
        path = base / entry[field] if field in entry else data_path("templates", default)
        _check_template(path, kind, f"{at}.{field}", source)
        paths[field] = path
    return Templates(helm_release=paths["helmRelease"], namespace=paths["namespace"])


@cache
def _template_problem(path: Path, kind: tuple[str, str]) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return f"cannot read template {path}: {exc.strerror}"
    except UnicodeDecodeError as exc:
        return f"template {path} is not UTF-8 text (byte {exc.start})"
    try:
        document = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        where, problem = yaml_problem(exc, str(path))
        return f"template is not valid YAML: {where}: {problem}"
    if not isinstance(document, dict) or "kind" not in document:
        return f"template {path} must be one Kubernetes object (a mapping with 'kind')"
    api_version, expected_kind = kind
    if document["kind"] != expected_kind or document.get("apiVersion", api_version) != api_version:
        found = f"{document.get('apiVersion', '(no apiVersion)')} {document['kind']}"
        return f"template {path} must be a {api_version} {expected_kind}, not {found}"
    for field in ("metadata", "spec"):
        if not isinstance(document.get(field, {}), dict):
            return f"template {path}: '{field}' must be a mapping"
    for where, name in unknown_placeholders(document, str(path)):
        return f"template {path}: unknown placeholder <<{name}>> at {where}"
    return None


def _check_template(path: Path, kind: tuple[str, str], at: str, source: str) -> None:
    problem = _template_problem(path, kind)
    if problem:
        raise ConfigError(problem, at, source)


def _check_unique_names(repositories: tuple[RepositorySettings, ...], source: str) -> None:
    seen: set[str] = set()
    for index, repo in enumerate(repositories):
        key = repo.name.lower()
        if key in seen:
            raise ConfigError(f"{repo.name} is listed twice", f"repositories[{index}].name", source)
        seen.add(key)


# The longest text a placeholder stands for in a namespace; PR text has no bound.
_BOUNDED_PLACEHOLDERS = {"PR_NUMBER": 10, "PR_HEAD_SHA": 40, "PR_HEAD_SHORT_SHA": 7}
# A name cut to fit keeps this many of its first characters (then a dash and a hash).
_KEPT_WHEN_CUT = 63 - 9


def _fixed_start(text: str) -> str:
    """What any namespace made from `text` + more is sure to start with.

    Namespaces are lower-cased and slugged, unless (from PR text) they are a valid name
    already, which keeps a `--`: so a `--` ends what is sure.
    """
    lowered = text.lower()
    if "--" in lowered and re.fullmatch(r"[a-z0-9-]*", lowered):
        lowered = lowered[: lowered.index("--")]
    return slug(lowered)[:_KEPT_WHEN_CUT].rstrip("-")


@dataclass(frozen=True)
class _NamespaceShape:
    """What all namespaces one repository entry can make have in common."""

    constant: str | None  # the one namespace, when nothing in the template varies
    prefix: str
    suffix: str | None  # None: a cut or a hash may take the end away

    def may_meet(self, other: _NamespaceShape) -> bool:
        if self.constant is not None and other.constant is not None:
            return self.constant == other.constant
        if self.constant is not None or other.constant is not None:
            fixed, shape = (self, other) if self.constant is not None else (other, self)
            name = fixed.constant or ""
            return name.startswith(shape.prefix) and (
                shape.suffix is None or name.endswith(shape.suffix)
            )
        if not (self.prefix.startswith(other.prefix) or other.prefix.startswith(self.prefix)):
            return False
        if self.suffix is not None and other.suffix is not None:
            return self.suffix.endswith(other.suffix) or other.suffix.endswith(self.suffix)
        return True


def _namespace_shape(repo: RepositorySettings) -> _NamespaceShape:
    text = repo.namespace.replace("<<REPO_OWNER>>", repo.owner).replace(
        "<<REPO_NAME>>", repo.short_name
    )
    pieces = PLACEHOLDER.split(text)  # fixed text, a placeholder's name, fixed text, ...
    varying = pieces[1::2]
    if not varying:
        constant = dns_label(text)  # as render makes it
        return _NamespaceShape(constant, constant, constant)
    longest = sum(len(part) for part in pieces[::2]) + sum(
        _BOUNDED_PLACEHOLDERS.get(name, 64) for name in varying
    )
    # Without PR text and never cut, a namespace keeps its slugged end as well.
    suffix = None
    if longest <= 63 and not PR_TEXT & set(varying):
        suffix = slug(pieces[-1])
    return _NamespaceShape(None, _fixed_start(pieces[0]), suffix)


def check_namespaces_apart(repositories: Sequence[RepositorySettings], source: str) -> None:
    """Refuse two entries whose templates might ever make the same namespace.

    One namespace (and folder) for PRs of two repositories would hand one PR's environment
    to the other: `acme/api` and `other/api` both make `api-pr-1` with the default template.
    Two templates are apart only when a fixed start or end tells their names apart.
    """
    shapes = [_namespace_shape(repo) for repo in repositories]
    for later in range(len(repositories)):
        for earlier in range(later):
            if shapes[earlier].may_meet(shapes[later]):
                first, second = repositories[earlier], repositories[later]
                raise ConfigError(
                    f"{second.name} and {first.name} (repositories[{earlier}]) can get the same "
                    f"namespace from '{second.namespace}' and '{first.namespace}': one PR's "
                    "environment would be handed to the other; give each a fixed part of its "
                    "own, as in '<<REPO_OWNER>>-<<REPO_NAME>>-pr-<<PR_NUMBER>>' with owners "
                    "that differ",
                    f"repositories[{later}].namespace",
                    source,
                )


def check_namespace_not_reserved(
    repo: RepositorySettings, reserved: frozenset[str], at: str, source: str
) -> None:
    shape = _namespace_shape(repo)
    if shape.constant is not None and shape.constant in reserved:
        raise ConfigError(
            f"{shape.constant} is a reserved namespace: prgen never writes into it "
            "(kube-system, kube-public, kube-node-lease, default, flux-system and "
            "safety.reservedNamespaces)",
            f"{at}.namespace",
            source,
        )


def _check_app_key(app: Mapping[str, Any], source: str) -> None:
    given = [key for key in ("privateKeyFile", "privateKeyEnv") if key in app]
    if not given:
        raise ConfigError(
            "'privateKeyFile' is a required property, or 'privateKeyEnv' (exactly one of them)",
            "github.app",
            source,
        )
    if len(given) == 2:
        raise ConfigError(
            "'privateKeyFile' and 'privateKeyEnv' are both set: use exactly one",
            "github.app",
            source,
        )


def _compile_github(entry: Mapping[str, Any], base: Path, source: str) -> GitHubSettings:
    app = entry.get("app")
    if app:
        _check_app_key(app, source)
    return GitHubSettings(
        api_url=entry.get("apiUrl", DEFAULT_API_URL).rstrip("/"),
        token_env=entry.get("tokenEnv", "GITHUB_TOKEN"),
        app=AppSettings(
            app_id=app["id"],
            installation_id=app["installationId"],
            private_key_file=base / app["privateKeyFile"] if "privateKeyFile" in app else None,
            private_key_env=app.get("privateKeyEnv"),
        )
        if app
        else None,
        timeout=float(entry.get("timeout", 30)),
        retries=entry.get("retries", 3),
        request_interval=float(entry.get("requestInterval", 0)),
        write_interval=float(entry.get("writeInterval", GitHubSettings.write_interval)),
        max_pages=entry.get("maxPages", DEFAULT_MAX_PAGES),
        listing_timeout=float(entry.get("listingTimeout", DEFAULT_LISTING_TIMEOUT)),
        concurrency=entry.get("concurrency", DEFAULT_CONCURRENCY),
        rate_limit_reserve=entry.get("rateLimitReserve", DEFAULT_RATE_LIMIT_RESERVE),
        cache_max_mb=entry.get("cacheMaxMegabytes", DEFAULT_CACHE_MAX_MB),
    )


def is_local_path(url: str) -> bool:
    """A fleet URL that is a path on disk, not https://, ssh://, file:// or scp-like host:path."""
    return not ("://" in url or url.startswith("git@") or ":" in url.split("/", 1)[0])


def _compile_fleet(
    entry: Mapping[str, Any], base: Path, targets: list[dict[str, Any]] | None = None
) -> FleetSettings:
    author = entry.get("author", {})
    paths = tuple(target["path"].strip("/") for target in targets or ())
    url = entry["url"]
    if is_local_path(url) and not Path(url).expanduser().is_absolute():
        url = str(base / url)  # like templates: relative to prgen.yaml, wherever prgen runs
    return FleetSettings(
        url=url,
        path=paths[0] if paths else entry["path"].strip("/"),
        branch=entry.get("branch", "main"),
        author_name=author.get("name", "prgen"),
        author_email=author.get("email", "prgen@localhost"),
        token_env=entry.get("tokenEnv"),
        push_retries=entry.get("pushRetries", 5),
        target_paths=paths if len(paths) > 1 else (),
    )


def default_config_path() -> Path:
    return Path(os.environ.get("PRGEN_CONFIG", "prgen.yaml"))
