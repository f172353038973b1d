"""prgen.yaml -> a validated, compiled `Config`.

Validation happens in two passes, both before anything touches GitHub or git:
the JSON Schema in `schemas/` checks the document's shape, then each repository
entry is merged with `defaults` and checked again as a whole (regexes compile,
exactly one of chart/chartRef, placeholders are known, templates load).
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from prgen.errors import ConfigError
from prgen.placeholders import PLACEHOLDER, UNTRUSTED, unknown_placeholders
from prgen.resources import data_path

DEFAULT_API_URL = "https://api.github.com"
# Room for 30,000 open PRs at 100 a page; the time fits one run of the example CronJob.
DEFAULT_MAX_PAGES = 300
DEFAULT_LISTING_TIMEOUT = 180.0
DEFAULT_NAMESPACE = "<<REPO_NAME>>-pr-<<PR_NUMBER>>"


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
    request_interval: float = 0.25
    max_pages: int = DEFAULT_MAX_PAGES  # of one repository's listing
    listing_timeout: float = DEFAULT_LISTING_TIMEOUT  # seconds, one repository's listing


@dataclass(frozen=True)
class FleetSettings:
    url: str
    path: str
    branch: str = "main"
    author_name: str = "prgen"
    author_email: str = "prgen@localhost"
    token_env: str | None = None
    push_retries: int = 5


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


@dataclass(frozen=True)
class ProbeSettings:
    concurrency: int = 16
    closed_lookback: int = 20


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
    health_check: HealthCheck | None = None
    environment_url: str | None = None
    report: ReportSettings = ReportSettings()

    @property
    def owner(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def short_name(self) -> str:
        return self.name.split("/", 1)[1]


@dataclass(frozen=True)
class Config:
    github: GitHubSettings
    fleet: FleetSettings
    repositories: tuple[RepositorySettings, ...]
    source: str  # where the config came from, for messages
    probe: ProbeSettings = ProbeSettings()
    max_deletions: int | None = None  # None: more than half, and at least 5

    def repository(self, name: str) -> RepositorySettings:
        for repo in self.repositories:
            if repo.name.lower() == name.lower():
                return repo
        raise ConfigError(f"repository {name!r} is not configured", source=self.source)


@cache
def _schema() -> dict[str, Any]:
    with data_path("schemas", "prgen.schema.json").open(encoding="utf-8") as f:
        schema: dict[str, Any] = json.load(f)
    return schema


def _format_path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _yaml_load(text: str, source: str) -> Any:
    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}".replace("\n", " "), source=source) from exc


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror}", source=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", source=str(path)) from exc
    return parse_config(text, source=str(path), base_dir=path.parent)


def parse_config(text: str, *, source: str = "prgen.yaml", base_dir: Path | None = None) -> Config:
    document = _yaml_load(text, source)
    if not isinstance(document, dict):
        raise ConfigError("the config must be a YAML mapping", source=source)
    _check_schema(document, source)
    base = base_dir or Path.cwd()
    defaults = document.get("defaults", {})
    repositories = tuple(
        _compile_repository(_merge(defaults, entry), index, source, base)
        for index, entry in enumerate(document["repositories"])
    )
    _check_unique_names(repositories, source)
    return Config(
        github=_compile_github(document.get("github", {}), base, source),
        fleet=_compile_fleet(document["fleet"], base),
        repositories=repositories,
        source=source,
        max_deletions=document.get("safety", {}).get("maxDeletions"),
        probe=ProbeSettings(
            concurrency=document.get("probe", {}).get("concurrency", 16),
            closed_lookback=document.get("probe", {}).get("closedLookback", 20),
        ),
    )


def _check_schema(document: Mapping[str, Any], source: str) -> None:
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return
    problems = [_explain(error) for error in errors]
    raise ConfigError.many(problems, source=source)


_ABOUT_THE_VALUES_KIND = frozenset({"type", "const", "enum"})


def _explain(error: jsonschema.ValidationError) -> tuple[str, str]:
    """(path, reason) for one schema error.

    For a oneOf/anyOf, the reason comes from the alternative the value was meant
    for: the one whose complaint is not about the value's type. If every
    alternative rejects the type, the reason lists what each would accept.
    """
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        return _unknown_field(error, error.instance)
    if not error.context:
        return _format_path(error.absolute_path), error.message
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    meant = [
        subs
        for subs in branches.values()
        if any(sub.validator not in _ABOUT_THE_VALUES_KIND or sub.relative_path for sub in subs)
    ]
    if len(meant) == 1:
        return _explain(jsonschema.exceptions.best_match(meant[0]))
    reasons = " or ".join(dict.fromkeys(sub.message for subs in branches.values() for sub in subs))
    return _format_path(error.absolute_path), reasons


def _unknown_field(
    error: jsonschema.ValidationError, instance: Mapping[str, Any]
) -> tuple[str, str]:
    """The path of the first unknown key itself, and the known key it was probably meant to be."""
    known = sorted(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
    patterns = error.schema.get("patternProperties", {}) if isinstance(error.schema, dict) else {}
    unknown = sorted(
        str(key)
        for key in instance
        if key not in known and not any(re.search(p, str(key)) for p in patterns)
    )
    if not unknown:
        return _format_path(error.absolute_path), error.message
    name = unknown[0]
    guess = difflib.get_close_matches(name, known, n=1)
    reason = f"unknown field '{name}'" + (f" (did you mean '{guess[0]}'?)" if guess else "")
    if not guess and known:
        reason += ": expected one of " + ", ".join(known)
    return _format_path([*error.absolute_path, name]), reason


def _merge(base: Any, override: Any) -> Any:
    """Deep-merge mappings; anything else in `override` replaces `base`."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = copy.deepcopy(base)
        for key, value in override.items():
            merged[key] = _merge(merged.get(key), value) if key in merged else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def _compile_regex(pattern: str | None, path: str, source: str) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"not a valid regular expression: {exc}", path, source) from exc


def _compile_repository(
    entry: dict[str, Any], index: int, source: str, base: Path
) -> RepositorySettings:
    at = f"repositories[{index}]"
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
    if "<<NAMESPACE>>" in entry.get("namespace", ""):
        raise ConfigError(
            "<<NAMESPACE>> can't be used to make the namespace itself", f"{at}.namespace", source
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
    return RepositorySettings(
        name=entry["name"],
        labels=frozenset(entry.get("labels", ())),
        exclude_labels=frozenset(entry.get("excludeLabels", ())),
        branches=_compile_regex(entry.get("branches"), f"{at}.branches", source),
        target_branches=_compile_regex(entry.get("targetBranches"), f"{at}.targetBranches", source),
        drafts=entry.get("drafts", False),
        forks=entry.get("forks", False),
        max_environments=entry.get("maxEnvironments"),
        namespace=entry.get("namespace", DEFAULT_NAMESPACE),
        chart=entry.get("chart"),
        chart_ref=entry.get("chartRef"),
        values=entry.get("values", {}),
        templates=templates,
        trusted_fork_labels=frozenset(entry.get("trustedForkLabels", ())),
        health_check=_compile_health_check(entry.get("healthCheck"), f"{at}.healthCheck", source),
        environment_url=entry.get("environmentUrl"),
        report=_compile_report(entry.get("report", {})),
    )


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
_ENVIRONMENT_PLACEHOLDERS = frozenset({"PR_NUMBER", "REPO_OWNER", "REPO_NAME", "NAMESPACE"})
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Flux/Go duration ('90s', '15m', '1h30m') in seconds; the schema has checked its form."""
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
    return ReportSettings(
        commit_status_context=None if status is False else status.get("context", "prgen/preview"),
        deployment_environment=None
        if deployment is False
        else deployment.get("environment", "pr-<<PR_NUMBER>>"),
        comment=entry.get("comment", True),
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
        return f"template {path} is not valid YAML: {exc}".replace("\n", " ")
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
        request_interval=float(entry.get("requestInterval", 0.25)),
        max_pages=entry.get("maxPages", DEFAULT_MAX_PAGES),
        listing_timeout=float(entry.get("listingTimeout", DEFAULT_LISTING_TIMEOUT)),
    )


def is_local_path(url: str) -> bool:
    """A fleet URL that is a path on disk, not https://, ssh://, file:// or scp-like host:path."""
    return not ("://" in url or url.startswith("git@") or ":" in url.split("/", 1)[0])


def _compile_fleet(entry: Mapping[str, Any], base: Path) -> FleetSettings:
    author = entry.get("author", {})
    url = entry["url"]
    if is_local_path(url) and not Path(url).expanduser().is_absolute():
        url = str(base / url)  # like templates: relative to prgen.yaml, wherever prgen runs
    return FleetSettings(
        url=url,
        path=entry["path"].strip("/"),
        branch=entry.get("branch", "main"),
        author_name=author.get("name", "prgen"),
        author_email=author.get("email", "prgen@localhost"),
        token_env=entry.get("tokenEnv"),
        push_retries=entry.get("pushRetries", 5),
    )


def default_config_path() -> Path:
    return Path(os.environ.get("PRGEN_CONFIG", "prgen.yaml"))
