"""Issue 5, item 9: a bad configuration stops prgen before it touches anything.

Each malformed config goes through the CLI, `prgen sync --config X --workdir W`: in the
default suite through click's runner in this process, in stress mode as a real `prgen`
process, also with `--dry-run`, `--output json`, `probe` and `validate`. Each must exit 2 and name the offending field and the reason on
stderr, and nothing may be cloned, written or pushed: the work directory does not exist
afterwards, the bare fleet repository's refs are unchanged, and its own fake GitHub got
zero requests.

All configs run from one module fixture (processes four at a time: each starts Python,
PyGithub and GitPython afresh), and each config's test then checks its own results.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from prgen.cli import main
from prgen.testing.fake_github import FakeGitHub
from stress import STRESS

from conftest import TOKEN, git

CHART = (
    "{chart: shop, sourceRef: {kind: HelmRepository, name: shop-charts, namespace: flux-system}}"
)
GITHUB = "github: {apiUrl: '@API@', timeout: 5, retries: 0, requestInterval: 0}\n"
FLEET = "fleet: {url: '@FLEET@', path: previews/dev, author: {name: prgen-test, email: t@example.com}}\n"
HEADER = GITHUB + FLEET
SHOP = "  - name: acme/shop\n    chart: " + CHART + "\n"
HEALTH = "    healthCheck: {url: 'https://shop-pr-<<PR_NUMBER>>.preview.example.com/healthz'"
TEMPLATE = "    templates: {helmRelease: hr.yaml}\n"
HELMRELEASE = "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: x}\n"


def good(extra_repository: str = "", top: str = "") -> str:
    return HEADER + top + "repositories:\n" + SHOP + extra_repository


@dataclass(frozen=True)
class BadConfig:
    name: str
    text: str | bytes
    path: str | None  # the field named on stderr; None: the file as a whole
    reason: str
    files: dict[str, str | bytes] = field(default_factory=dict)  # beside the config


BAD_CONFIGS = [
    BadConfig(
        "wrong type: a number",
        good().replace("timeout: 5", "timeout: fast"),
        "github.timeout",
        "'fast' is not of type 'number'",
    ),
    BadConfig(
        "wrong type: a boolean",
        good("    drafts: 'yes'\n"),
        "repositories[0].drafts",
        "'yes' is not of type 'boolean'",
    ),
    BadConfig(
        "wrong type: a list",
        good("    labels: preview\n"),
        "repositories[0].labels",
        "'preview' is not of type 'array'",
    ),
    BadConfig(
        "wrong type: repositories is a mapping",
        HEADER + "repositories: {name: acme/shop}\n",
        "repositories",
        "is not of type 'array'",
    ),
    BadConfig(
        "unknown key at the top level",
        good(top="bogus: 1\n"),
        "bogus",
        "unknown field 'bogus': expected one of",
    ),
    BadConfig(
        "unknown key in fleet",
        good().replace("path: previews/dev", "path: previews/dev, branchName: main"),
        "fleet.branchName",
        "unknown field 'branchName' (did you mean 'branch'?)",
    ),
    BadConfig(
        "unknown key in a repository",
        good("    lables: [preview]\n"),
        "repositories[0].lables",
        "unknown field 'lables' (did you mean 'labels'?)",
    ),
    BadConfig(
        "unknown key in defaults",
        good(top="defaults: {maxEnvironmnets: 3}\n"),
        "defaults.maxEnvironmnets",
        "unknown field 'maxEnvironmnets' (did you mean 'maxEnvironments'?)",
    ),
    BadConfig(
        "unknown key deep in the chart",
        good().replace("namespace: flux-system}", "nmespace: flux-system}"),
        "repositories[0].chart.sourceRef.nmespace",
        "unknown field 'nmespace' (did you mean 'namespace'?)",
    ),
    BadConfig(
        "missing fleet",
        GITHUB + "repositories:\n" + SHOP,
        "(top level)",
        "'fleet' is a required property",
    ),
    BadConfig(
        "bad regex",
        good("    branches: '^feature/(unclosed'\n"),
        "repositories[0].branches",
        "not a valid regular expression",
    ),
    BadConfig(
        "unknown placeholder",
        good("    values: {image: {tag: '<<PR_SHA>>'}}\n"),
        "repositories[0].values.image.tag",
        "unknown placeholder <<PR_SHA>>",
    ),
    BadConfig(
        "raw PR text placeholder in healthCheck.url",
        good("    healthCheck: {url: 'https://<<PR_BRANCH>>.preview.example.com/healthz'}\n"),
        "repositories[0].healthCheck.url",
        "<<PR_BRANCH>> is PR text",
    ),
    BadConfig(
        "deployment environment that can't be found after close",
        good("    report: {deployment: {environment: 'pr-<<PR_BRANCH_SLUG>>'}}\n"),
        "repositories[0].report.deployment.environment",
        "<<PR_BRANCH_SLUG>> is not known once a PR is closed",
    ),
    BadConfig(
        "namespace made from itself",
        good("    namespace: 'preview-<<NAMESPACE>>'\n"),
        "repositories[0].namespace",
        "<<NAMESPACE>> can't be used to make the namespace itself",
    ),
    BadConfig(
        "missing chart",
        HEADER + "repositories:\n  - name: acme/shop\n",
        "repositories[0]",
        "neither 'chart' nor 'chartRef'",
    ),
    BadConfig(
        "both chart and chartRef",
        good("    chartRef: {kind: OCIRepository, name: shop, namespace: flux-system}\n"),
        "repositories[0]",
        "both 'chart' and 'chartRef' are set",
    ),
    BadConfig(
        "chart sourceRef kind",
        good().replace("kind: HelmRepository", "kind: OCIRepository"),
        "repositories[0].chart.sourceRef.kind",
        "'OCIRepository' is not one of ['HelmRepository', 'GitRepository', 'Bucket']",
    ),
    BadConfig(
        "fleet path with ..",
        good().replace("path: previews/dev", "path: previews/../../etc"),
        "fleet.path",
        "'previews/../../etc' does not match",
    ),
    BadConfig(
        "absolute fleet path",
        good().replace("path: previews/dev", "path: /srv/previews"),
        "fleet.path",
        "'/srv/previews' does not match",
    ),
    BadConfig(
        "empty repositories list",
        HEADER + "repositories: []\n",
        "repositories",
        "should be non-empty",
    ),
    BadConfig(
        "bad duration",
        good(HEALTH + ", timeout: 5 minutes}\n"),
        "repositories[0].healthCheck.timeout",
        "'5 minutes' does not match",
    ),
    BadConfig(
        "zero timeout",
        good(HEALTH + ", timeout: 0s}\n"),
        "repositories[0].healthCheck.timeout",
        "must be more than zero",
    ),
    BadConfig(
        "expectStatus range backwards",
        good(HEALTH + ", expectStatus: '500-200'}\n"),
        "repositories[0].healthCheck.expectStatus",
        "a status range must go from low to high",
    ),
    BadConfig(
        "expectStatus out of range",
        good(HEALTH + ", expectStatus: 700}\n"),
        "repositories[0].healthCheck.expectStatus",
        "700 is greater than the maximum of 599",
    ),
    BadConfig(
        "expectStatus list with a status out of range",
        good(HEALTH + ", expectStatus: [200, 999]}\n"),
        "repositories[0].healthCheck.expectStatus[1]",
        "999 is greater than the maximum of 599",
    ),
    BadConfig(
        "forks neither a boolean nor 'trusted'",
        good("    forks: sometimes\n"),
        "repositories[0].forks",
        "'trusted'",
    ),
    BadConfig(
        "empty deployment environment",
        good("    report: {deployment: {environment: ''}}\n"),
        "repositories[0].report.deployment.environment",
        "should be non-empty",
    ),
    BadConfig(
        "duplicate repositories",
        good() + SHOP.replace("acme/shop", "ACME/Shop"),
        "repositories[1].name",
        "ACME/Shop is listed twice",
    ),
    BadConfig(
        "negative maxEnvironments",
        good("    maxEnvironments: -1\n"),
        "repositories[0].maxEnvironments",
        "-1 is less than the minimum of 0",
    ),
    BadConfig(
        "negative safety.maxDeletions",
        good(top="safety: {maxDeletions: -3}\n"),
        "safety.maxDeletions",
        "-3 is less than the minimum of 0",
    ),
    BadConfig(
        "apiUrl that is not a URL",
        good().replace("apiUrl: '@API@'", "apiUrl: 'api.github.com'"),
        "github.apiUrl",
        "'api.github.com' does not match",
    ),
    BadConfig(
        "app config with both key sources",
        good().replace(
            "requestInterval: 0}",
            "requestInterval: 0, app: {id: 1, installationId: 2, privateKeyFile: key.pem, "
            "privateKeyEnv: APP_KEY}}",
        ),
        "github.app",
        "privateKeyEnv",
    ),
    BadConfig(
        "app config without a key",
        good().replace(
            "requestInterval: 0}", "requestInterval: 0, app: {id: 1, installationId: 2}}"
        ),
        "github.app",
        "'privateKeyFile' is a required property",
    ),
    BadConfig(
        "template file missing",
        good(TEMPLATE),
        "repositories[0].templates.helmRelease",
        "hr.yaml: No such file or directory",
    ),
    BadConfig(
        "template path is a directory",
        good(TEMPLATE),
        "repositories[0].templates.helmRelease",
        "hr.yaml: Is a directory",
        files={"hr.yaml/README": "a folder, not a template\n"},
    ),
    BadConfig(
        "template that is not YAML",
        good(TEMPLATE),
        "repositories[0].templates.helmRelease",
        "is not valid YAML",
        files={"hr.yaml": "kind: HelmRelease\nspec: {values: [unclosed\n"},
    ),
    BadConfig(
        "template that is not one object",
        good(TEMPLATE),
        "repositories[0].templates.helmRelease",
        "must be one Kubernetes object",
        files={"hr.yaml": "- kind: HelmRelease\n- kind: Namespace\n"},
    ),
    BadConfig(
        "template with an unknown placeholder",
        good(TEMPLATE),
        "repositories[0].templates.helmRelease",
        "unknown placeholder <<PR_LABEL>>",
        files={"hr.yaml": HELMRELEASE + "spec: {values: {labels: '<<PR_LABEL>>'}}\n"},
    ),
    BadConfig(
        "template whose metadata is not a mapping",
        good(TEMPLATE),
        "repositories[0].templates.helmRelease",
        "'metadata' must be a mapping",
        files={"hr.yaml": HELMRELEASE.replace("{name: x}", "preview") + "spec: {}\n"},
    ),
    BadConfig(
        "template whose spec is a list",
        good(TEMPLATE),
        "repositories[0].templates.helmRelease",
        "'spec' must be a mapping",
        files={"hr.yaml": HELMRELEASE + "spec: [interval, 5m]\n"},
    ),
    BadConfig(
        "template that is not UTF-8",
        good(TEMPLATE),
        "repositories[0].templates.helmRelease",
        "hr.yaml is not UTF-8 text",
        files={"hr.yaml": HELMRELEASE.encode() + b"  annotations: {a: '\xff\xfe'}\n"},
    ),
    BadConfig(
        "config that is not UTF-8",
        good().encode() + b"# caf\xe9\n",
        None,
        "not UTF-8 text",
    ),
    BadConfig(
        "not a mapping at the top level",
        "- fleet: {url: x, path: p}\n- repositories: []\n",
        None,
        "the config must be a YAML mapping",
    ),
    BadConfig("empty config file", "", None, "the config must be a YAML mapping"),
    BadConfig(
        "duplicate YAML keys",
        good().replace("path: previews/dev", "path: previews/dev, path: previews/prod"),
        None,
        'found duplicate key "path"',
    ),
    BadConfig(
        "invalid YAML syntax",
        good().replace("namespace: flux-system}}", "namespace: flux-system}"),
        None,
        "expected ',' or '}', but got '<stream end>' (while parsing a flow mapping at ",
    ),
]
COMMANDS: list[list[str]] = [["sync"]]
if STRESS:
    COMMANDS += [["sync", "--dry-run"], ["sync", "--output", "json"], ["probe"], ["validate"]]


@dataclass
class Run:
    command: list[str]
    exit_code: int
    stdout: str
    stderr: str
    requests: int
    workdir_left: list[str]  # what the work directory's parent holds afterwards
    refs_before: str
    refs_after: str


@dataclass
class Case:
    config: Path
    runs: list[Run]


def prgen_command() -> list[str]:
    script = Path(sys.executable).with_name("prgen")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from prgen.cli import main; main()"]


def execute(args: list[str], cwd: Path, environment: dict[str, str]) -> tuple[int, str, str]:
    """Stress mode: a real `prgen` process. Default: the same CLI in this process (faster)."""
    if STRESS:
        done = subprocess.run(
            [*prgen_command(), *args],
            cwd=cwd,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return done.returncode, done.stdout, done.stderr
    unset: dict[str, str | None] = {key: None for key in os.environ if key.startswith("PRGEN_")}
    result = CliRunner().invoke(main, args, env={**unset, **environment})
    return result.exit_code, result.stdout, result.stderr


def refs(bare: Path) -> str:
    return git("for-each-ref", "--format=%(refname) %(objectname)", cwd=bare)


def run_one(folder: Path, bad: BadConfig, seeded: Path, home: Path) -> Case:
    fleet = folder / "fleet.git"
    shutil.copytree(seeded, fleet)
    runs = []
    with FakeGitHub() as github:
        github.add_token(TOKEN)
        github.add_repo("acme/shop")
        github.open_pull("acme/shop", title="A PR", head_branch="feature/a")
        config = folder / "prgen.yaml"
        text = bad.text if isinstance(bad.text, bytes) else bad.text.encode()
        config.write_bytes(
            text.replace(b"@API@", github.base_url.encode()).replace(b"@FLEET@", bytes(fleet))
        )
        for name, content in bad.files.items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("PRGEN_")
        }
        environment.update(
            HOME=str(home),
            XDG_CACHE_HOME=str(home / "cache"),
            GIT_CONFIG_NOSYSTEM="1",
            GITHUB_TOKEN=TOKEN,
        )
        for command in COMMANDS:
            parent = folder / "runs" / "-".join(command)
            parent.mkdir(parents=True)
            workdir = ["--workdir", str(parent / "work")] if command[0] != "validate" else []
            before = refs(fleet)
            github.clear_requests()
            exit_code, stdout, stderr = execute(
                [*command, "--config", str(config), *workdir], folder, environment
            )
            runs.append(
                Run(
                    command,
                    exit_code,
                    stdout,
                    stderr,
                    len(github.requests),
                    sorted(p.name for p in parent.iterdir()),
                    before,
                    refs(fleet),
                )
            )
    return Case(config, runs)


@pytest.fixture(scope="module")
def seeded_fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("seeded")
    bare = base / "fleet.git"
    git("init", "--bare", "--initial-branch=main", str(bare))
    seed = base / "seed"
    git("clone", str(bare), str(seed))
    (seed / "README.md").write_text("fleet\n")
    git("add", "-A", cwd=seed)
    git("commit", "-m", "initial", cwd=seed)
    git("push", "origin", "HEAD:main", cwd=seed)
    return bare


@pytest.fixture(scope="module")
def outcomes(
    tmp_path_factory: pytest.TempPathFactory, seeded_fleet: Path
) -> Iterator[dict[str, Case]]:
    """Every bad config through every command, four processes at a time."""
    base = tmp_path_factory.mktemp("bad-configs")
    home = base / "home"
    home.mkdir()
    configs = [*BAD_CONFIGS, GOOD]
    folders = {bad.name: base / f"case-{index}" for index, bad in enumerate(configs)}
    for folder in folders.values():
        folder.mkdir()
    # Processes run four at a time; in-process runs one at a time (CliRunner swaps sys.stdout).
    with ThreadPoolExecutor(max_workers=4 if STRESS else 1) as pool:
        futures = {
            bad.name: pool.submit(run_one, folders[bad.name], bad, seeded_fleet, home)
            for bad in configs
        }
        yield {name: future.result() for name, future in futures.items()}


GOOD = BadConfig("control: a good config", good(), None, "")


@pytest.mark.reliability(
    "9. Bad configuration: control, a good config clones, lists and pushes (runs them all)"
)
def test_the_harness_sees_a_good_config_clone_list_and_push(outcomes: dict[str, Case]) -> None:
    """Without this, "nothing was cloned, listed or pushed" below could hold vacuously."""
    run = outcomes[GOOD.name].runs[0]
    assert run.exit_code == 0, run.stderr
    assert run.workdir_left == ["work", "work.lock"]
    assert run.requests > 0
    assert run.refs_after != run.refs_before


@pytest.mark.reliability("9. Bad configuration: exit 2, field and reason, nothing touched")
@pytest.mark.parametrize("bad", BAD_CONFIGS, ids=[bad.name for bad in BAD_CONFIGS])
def test_a_bad_config_exits_2_names_the_field_and_touches_nothing(
    outcomes: dict[str, Case], bad: BadConfig, cases: Any
) -> None:
    case = outcomes[bad.name]
    # A YAML error says the line and column, as editors do: prgen.yaml:6:1: …
    where = f"{case.config}: {bad.path}: " if bad.path else f"{case.config}:"
    for run in case.runs:
        command = " ".join(run.command)
        assert run.exit_code == 2, f"{command}: {run.stderr}"
        assert run.stderr.startswith("prgen: error: "), f"{command}: {run.stderr}"
        assert where in run.stderr and bad.reason in run.stderr, f"{command}: {run.stderr}"
        assert "Traceback" not in run.stderr
        assert run.stdout == "", command
        # Nothing cloned or locked, nothing asked of GitHub, nothing pushed.
        assert run.workdir_left == [], command
        assert run.requests == 0, command
        assert run.refs_after == run.refs_before, command
        cases.add()
