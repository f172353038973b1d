"""`prgen init` through the real CLI: what it writes validates, a sync runs on it against the
fake GitHub and a bare fleet repository, and nothing that exists is overwritten without --force.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from prgen.config import load_config
from prgen.testing.fake_github import FakeGitHub, app_key

from conftest import APP_ID, INSTALLATION, git, run
from manifest_validation import kustomize_build, require_kubectl

EXAMPLE = Path(__file__).resolve().parents[1] / "fleet-repo-example"


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def pointed_at(config: Path, github: FakeGitHub) -> Path:
    """The written config, its apiUrl pointed at the fake GitHub (as for GitHub Enterprise)."""
    text = config.read_text()
    assert text.count("apiUrl: https://api.github.com\n") == 1
    config.write_text(text.replace("https://api.github.com", github.base_url))
    return config


def test_init_writes_a_commented_config_that_validates(tmp_path: Path) -> None:
    result = run("init", str(tmp_path / "here"), "--repo", "acme/shop", "--repo", "acme/Web_App")
    assert result.exit_code == 0, result.output
    config = tmp_path / "here" / "prgen.yaml"
    assert files_under(tmp_path / "here") == {"prgen.yaml"}
    text = config.read_text()
    assert text.startswith("# prgen.yaml, written by `prgen init`")
    assert "  # excludeTitles:" in text  # the options a user looks for are shown, commented
    loaded = load_config(config)
    assert [r.name for r in loaded.repositories] == ["acme/shop", "acme/Web_App"]
    assert loaded.github.token_env == "GITHUB_TOKEN" and loaded.github.app is None
    assert loaded.fleet.token_env == "FLEET_TOKEN"  # an https fleet URL takes a token
    validated = run("validate", "--config", str(config))
    assert validated.exit_code == 0, validated.output
    assert f"prgen validate --config {config}" in result.output


def test_a_sync_runs_on_what_init_wrote(
    tmp_path: Path, github: FakeGitHub, fleet_remote: Path
) -> None:
    github.add_repo("acme/shop")
    number = github.open_pull("acme/shop", title="Cart", head_branch="cart")
    folder = tmp_path / "new"
    made = run("init", str(folder), "--repo", "acme/shop", "--fleet-url", str(fleet_remote))
    assert made.exit_code == 0, made.output
    config = pointed_at(folder / "prgen.yaml", github)
    synced = run("sync", "--config", str(config))
    assert synced.exit_code == 0, synced.output
    listed = git("ls-tree", "-r", "--name-only", "main", cwd=fleet_remote).split()
    assert f"previews/dev/shop-pr-{number}/helmrelease.yaml" in listed


def test_init_fleet_writes_a_fleet_repository_prgen_syncs_into(
    tmp_path: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "fleet"
    key = app_key()
    github.add_app(APP_ID, key.public_pem, installation_id=INSTALLATION)
    monkeypatch.setenv("GITHUB_APP_PRIVATE_KEY", key.private_pem)
    made = run(
        "init", str(folder), "--fleet", "--repo", "acme/shop", "--path", "previews/staging",
        "--fleet-url", str(tmp_path / "fleet.git"),
        "--app-id", str(APP_ID), "--installation-id", str(INSTALLATION),
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    written = files_under(folder)
    shipped = {
        name
        for name in files_under(EXAMPLE)
        if not name.startswith("previews/dev/") and "__pycache__" not in name
    }
    assert written == shipped | {"previews/staging/kustomization.yaml"}
    assert os.access(folder / "charts" / "fingerprint.py", os.X_OK) == os.access(
        EXAMPLE / "charts" / "fingerprint.py", os.X_OK
    )
    # prgen.yaml where the CronJob reads it, authenticating as the App (as the CronJob does).
    config = load_config(folder / "infrastructure" / "prgen" / "prgen.yaml")
    assert config.fleet.path == "previews/staging" and config.github.app is not None
    assert config.github.app.private_key_env == "GITHUB_APP_PRIVATE_KEY"
    yaml = YAML(typ="safe", pure=True)
    previews = yaml.load((folder / "clusters" / "preview" / "previews.yaml").read_text())
    assert previews["spec"]["path"] == "./previews/staging"
    index = (folder / "previews" / "staging" / "kustomization.yaml").read_text()
    assert index.startswith("# prgen:managed") and "resources: []" in index

    # Pushed as the fleet repository, a sync writes into prgen's folder and nowhere else.
    bare = tmp_path / "fleet.git"
    git("init", "--bare", "--initial-branch=main", str(bare))
    git("init", "--initial-branch=main", cwd=folder)
    git("add", "-A", cwd=folder)
    git("commit", "-qm", "prgen init --fleet", cwd=folder)
    git("push", "-q", str(bare), "main", cwd=folder)
    github.add_repo("acme/shop")
    number = github.open_pull("acme/shop", title="Cart", head_branch="cart")
    config_path = pointed_at(folder / "infrastructure" / "prgen" / "prgen.yaml", github)
    synced = run("sync", "--config", str(config_path))
    assert synced.exit_code == 0, synced.output
    assert github.count_requests("POST", rf"/app/installations/{INSTALLATION}/access_tokens")
    changed = git("diff", "--name-only", "HEAD~1", "HEAD", cwd=bare).split()
    assert changed and all(name.startswith("previews/staging/") for name in changed)
    assert f"previews/staging/shop-pr-{number}/helmrelease.yaml" in changed


def test_the_fleet_init_writes_builds_with_its_config_in_the_configmap(tmp_path: Path) -> None:
    require_kubectl()
    folder = tmp_path / "fleet"
    assert run("init", str(folder), "--fleet", "--repo", "acme/api").exit_code == 0
    built = kustomize_build(folder / "infrastructure" / "prgen")
    config = (folder / "infrastructure" / "prgen" / "prgen.yaml").read_text()
    yaml = YAML(typ="safe", pure=True)
    documents = list(yaml.load_all(built))
    (config_map,) = [d for d in documents if d["kind"] == "ConfigMap"]
    assert config_map["data"] == {"prgen.yaml": config}
    # Every variable the config names is one the CronJob sets.
    (cronjob,) = [d for d in documents if d["kind"] == "CronJob"]
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    loaded = load_config(folder / "infrastructure" / "prgen" / "prgen.yaml")
    assert loaded.github.app is not None
    named = {loaded.github.app.private_key_env, loaded.fleet.token_env}
    assert named <= {entry["name"] for entry in container["env"]}


def test_nothing_that_exists_is_overwritten_without_force(tmp_path: Path) -> None:
    folder = tmp_path / "fleet"
    (folder / "clusters" / "preview").mkdir(parents=True)
    mine = folder / "clusters" / "preview" / "previews.yaml"
    mine.write_text("# mine\n")
    refused = run("init", str(folder), "--fleet")
    assert refused.exit_code == 2
    assert f"{mine} exist: nothing written (--force overwrites)" in refused.output
    assert files_under(folder) == {"clusters/preview/previews.yaml"}  # nothing else either
    assert mine.read_text() == "# mine\n"
    forced = run("init", str(folder), "--fleet", "--force")
    assert forced.exit_code == 0, forced.output
    assert mine.read_text() != "# mine\n"
    again = run("init", str(folder), "--fleet")
    written = len(files_under(folder))  # every one of them exists now
    assert again.exit_code == 2 and f"and {written - 1} more exist" in again.output


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--repo", "not-a-repository"], "--repo: 'not-a-repository' is not OWNER/NAME"),
        (["--repo", "acme/shop", "--repo", "other/shop"], "share the namespaces shop-pr-N"),
        (["--path", "../outside"], "fleet.path"),
        (["--fleet-url", ""], "fleet.url"),
        (["--app-id", "1"], "--app-id and --installation-id go together"),
    ],
)
def test_bad_arguments_are_named_and_nothing_is_written(
    tmp_path: Path, args: list[str], complaint: str
) -> None:
    result = run("init", str(tmp_path / "out"), *args)
    assert result.exit_code == 2
    assert complaint in result.output
    assert not (tmp_path / "out").exists()


def test_an_app_is_written_when_asked(tmp_path: Path) -> None:
    args = ["--app-id", "42", "--installation-id", "7"]
    assert run("init", str(tmp_path), *args).exit_code == 0
    app = load_config(tmp_path / "prgen.yaml").github.app
    assert app is not None and (app.app_id, app.installation_id) == (42, 7)


def test_a_missing_config_suggests_prgen_init(tmp_path: Path) -> None:
    result = run("validate", "--config", str(tmp_path / "prgen.yaml"))
    assert result.exit_code == 2
    assert "`prgen init` writes one to start from" in result.output


def test_the_commented_lifecycle_and_repo_config_lines_work_once_uncommented(
    tmp_path: Path,
) -> None:
    """What init shows commented is a working config when a user takes it as it is."""
    result = run("init", str(tmp_path / "here"), "--repo", "acme/shop")
    assert result.exit_code == 0, result.output
    config = tmp_path / "here" / "prgen.yaml"
    shown = ("expireAfter: 7d", "keepLabel: preview-keep", "sleepAfter: 12h", "repoConfig: {")
    text = config.read_text()
    for line in shown:
        assert f"    # {line}" in text, line
        text = text.replace(f"    # {line}", f"    {line}")
    config.write_text(text)
    (repo,) = load_config(config).repositories
    assert (repo.expire_after, repo.keep_label, repo.sleep_after) == (
        7 * 86400,
        "preview-keep",
        43200,
    )
    assert repo.repo_config is not None
    assert repo.repo_config.allow == frozenset({"values", "healthCheck"})
