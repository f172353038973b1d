"""The sync at organisation scale, driven by the in-memory source: real git, no HTTP.

What an idle run does not do (render, compare, read), what one push writes, what goes on
git's command lines, and the cache of the fleet's blobs. Counts, never timings.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

import prgen
import prgen.sync
from prgen.config import Config, parse_config
from prgen.fleet import INVENTORY_CACHE
from prgen.inventory import StoredFiles, read_inventory
from prgen.plan import Action
from prgen.render import HELMRELEASE_FILE, RenderedEnvironment
from prgen.sync import Syncer
from prgen.sync_result import MESSAGE_CHANGES
from prgen.testing.memory_source import MemorySource, make_pull_request

from conftest import git

REPOSITORY = """\
  - name: {name}
    chart: {{chart: app, sourceRef: {{kind: HelmRepository, name: charts, namespace: flux-system}}}}
    values: {{image: {{tag: '<<PR_HEAD_SHA>>'}}, title: '<<PR_TITLE>>', replicas: {replicas}}}
    {extra}
"""


def make_config(fleet: Path, names: list[str], replicas: int = 1, extra: str = "") -> Config:
    text = f"fleet: {{url: '{fleet}', path: previews/dev}}\nsafety: {{maxDeletions: 100000}}\n"
    text += "repositories:\n" + "".join(
        REPOSITORY.format(name=name, replicas=replicas, extra=extra) for name in names
    )
    return parse_config(text, base_dir=fleet.parent)


def source_with(names: list[str], pulls: int) -> MemorySource:
    source = MemorySource()
    for name in names:
        source.open_many(make_pull_request(name, number) for number in range(1, pulls + 1))
    return source


class Renders:
    """Counts the environments a run renders (prgen's own function, wrapped)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = prgen.sync.render_environment

        def counted(*args: object, **kwargs: object) -> RenderedEnvironment:
            self.count += 1
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(prgen.sync, "render_environment", counted)


class Reads:
    """Counts the blobs a run reads through the fleet (prgen's own method, wrapped)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = prgen.fleet.FleetRepo._read_blob

        def counted(fleet: prgen.fleet.FleetRepo, sha: str) -> bytes:
            self.count += 1
            return real(fleet, sha)

        monkeypatch.setattr(prgen.fleet.FleetRepo, "_read_blob", counted)


def changed_files(remote: Path, commit: str) -> list[str]:
    return git("show", "--name-only", "--format=", commit, cwd=remote).split()


def test_an_idle_run_renders_compares_and_reads_nothing(
    fleet_remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"org/repo-{index}" for index in range(3)]
    source = source_with(names, 20)
    syncer = Syncer(make_config(fleet_remote, names), source, tmp_path / "work")
    first = syncer.run()
    assert first.commit and len(first.plan.of(Action.CREATE)) == 60

    renders, reads = Renders(monkeypatch), Reads(monkeypatch)
    again = syncer.run()
    assert again.commit is None
    assert {c.action for c in again.plan.changes} == {Action.KEEP}
    assert renders.count == 0
    # Only the index is read (to compare the one prgen would write): no environment's files.
    assert reads.count == 1
    # Every kept environment is the fleet's own files, unread.
    assert all(isinstance(env.files, StoredFiles) for env in again.plan.rendered)


def test_one_push_renders_one_and_its_commit_touches_only_that_environment(
    fleet_remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["org/a", "org/b"]
    source = source_with(names, 30)
    syncer = Syncer(make_config(fleet_remote, names), source, tmp_path / "work")
    syncer.run()
    renders = Renders(monkeypatch)
    source.update("org/b", 7, head_sha="e" * 40)

    result = syncer.run()
    assert result.commit is not None and renders.count == 1
    assert changed_files(fleet_remote, result.commit) == ["previews/dev/b-pr-7/helmrelease.yaml"]
    release = git("show", "main:previews/dev/b-pr-7/helmrelease.yaml", cwd=fleet_remote)
    assert "e" * 40 in release


def test_one_close_removes_that_folder_and_touches_the_index_only(
    fleet_remote: Path, tmp_path: Path
) -> None:
    names = ["org/a"]
    source = source_with(names, 10)
    syncer = Syncer(make_config(fleet_remote, names), source, tmp_path / "work")
    syncer.run()
    source.close("org/a", 4)
    result = syncer.run()
    assert result.commit is not None
    assert sorted(changed_files(fleet_remote, result.commit)) == [
        "previews/dev/a-pr-4/helmrelease.yaml",
        "previews/dev/a-pr-4/kustomization.yaml",
        "previews/dev/a-pr-4/namespace.yaml",
        "previews/dev/kustomization.yaml",
    ]


@pytest.mark.parametrize(
    "change",
    ["head", "title", "label", "branch", "config value", "template", "version"],
)
def test_each_kind_of_input_change_renders_the_environment_again_and_a_label_does_not(
    change: str, fleet_remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "helmrelease.yaml"
    template.write_text("apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nspec: {}\n")
    extra = "templates: {helmRelease: helmrelease.yaml}"
    config = make_config(fleet_remote, ["org/a"], extra=extra)
    source = source_with(["org/a"], 3)
    Syncer(config, source, tmp_path / "work").run()

    if change == "head":
        source.update("org/a", 2, head_sha="c" * 40)
    elif change == "title":
        source.update("org/a", 2, title="a new title")
    elif change == "label":
        source.update("org/a", 2, labels=("preview",))
    elif change == "branch":
        source.update("org/a", 2, head_branch="feature/renamed")
    elif change == "config value":
        config = make_config(fleet_remote, ["org/a"], replicas=2, extra=extra)
    elif change == "template":
        template.write_text(
            "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nspec: {timeout: 5m}\n"
        )
    elif change == "version":
        monkeypatch.setattr(prgen.render, "__version__", prgen.__version__ + ".post1")
    renders = Renders(monkeypatch)
    result = Syncer(config, source, tmp_path / "work").run()

    per_pr = {c.number: c.action for c in result.plan.changes}
    if change == "label":
        # Labels decide eligibility, not content: nothing is rendered and nothing committed.
        assert renders.count == 0
        assert per_pr == {1: Action.KEEP, 2: Action.KEEP, 3: Action.KEEP}
        assert result.commit is None
    elif change in ("head", "title", "branch"):
        assert renders.count == 1
        assert per_pr == {1: Action.KEEP, 2: Action.UPDATE, 3: Action.KEEP}
        assert result.commit is not None
        assert changed_files(fleet_remote, result.commit) == [
            "previews/dev/a-pr-2/helmrelease.yaml"
        ]
    else:
        assert renders.count == 3
        assert per_pr == {1: Action.UPDATE, 2: Action.UPDATE, 3: Action.UPDATE}


def test_an_environment_written_before_input_hashes_is_rendered_once_then_kept(
    fleet_remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(fleet_remote, ["org/a"])
    source = source_with(["org/a"], 2)
    syncer = Syncer(config, source, tmp_path / "work")
    syncer.run()
    clone = tmp_path / "clone"
    git("clone", "--quiet", str(fleet_remote), str(clone))
    release = clone / "previews/dev/a-pr-1/helmrelease.yaml"
    release.write_text(
        "".join(
            line for line in release.read_text().splitlines(True) if "prgen.io/inputs" not in line
        )
    )
    git("commit", "--quiet", "-am", "an older prgen's environment", cwd=clone)
    git("push", "--quiet", "origin", "HEAD:main", cwd=clone)

    renders = Renders(monkeypatch)
    result = syncer.run()
    assert renders.count == 1 and result.commit is not None
    assert [c.action for c in result.plan.changes] == [Action.UPDATE, Action.KEEP]
    assert syncer.run().commit is None and renders.count == 1


def test_a_long_commit_message_lists_the_first_changes_then_how_many_more(
    fleet_remote: Path, tmp_path: Path
) -> None:
    names = [f"org/r{index}" for index in range(5)]
    source = source_with(names, 50)  # 250 creations
    result = Syncer(make_config(fleet_remote, names), source, tmp_path / "work").run()
    assert result.commit is not None
    message = git("log", "-1", "--format=%B", "main", cwd=fleet_remote).splitlines()
    assert message[0] == "prgen: 250 created, 0 updated, 0 removed"
    created = [line for line in message if line.startswith("created ")]
    assert len(created) == MESSAGE_CHANGES
    assert f"... and {250 - MESSAGE_CHANGES} more" in message


GIT_SPY = """#!{python}
import os, sys
with open({log!r}, "a") as log:
    log.write(str(sum(len(a) + 1 for a in sys.argv)) + " " + (sys.argv[1] if len(sys.argv) > 1 else "") + "\\n")
os.execv({git!r}, [{git!r}, *sys.argv[1:]])
"""


def test_no_git_command_line_grows_with_the_number_of_environments(
    fleet_remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_git = next(
        str(Path(folder) / "git")
        for folder in os.environ["PATH"].split(os.pathsep)
        if (Path(folder) / "git").is_file()
    )
    bin_dir, log = tmp_path / "bin", tmp_path / "git-argv.log"
    bin_dir.mkdir()
    spy = bin_dir / "git"
    spy.write_text(GIT_SPY.format(python=sys.executable, log=str(log), git=real_git))
    spy.chmod(spy.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("GIT_PYTHON_GIT_EXECUTABLE", str(spy))
    import git as gitpython

    gitpython.refresh(str(spy))
    try:
        names = [f"org/r{index}" for index in range(4)]
        source = source_with(names, 100)  # 400 environments, 1,200 files
        syncer = Syncer(make_config(fleet_remote, names), source, tmp_path / "work")
        assert syncer.run().commit is not None
        for name in names:
            source.close(name, 1)
        assert syncer.run().commit is not None
    finally:
        gitpython.refresh(real_git)
    lengths = [int(line.split()[0]) for line in log.read_text().splitlines()]
    assert lengths and max(lengths) < 1024, sorted(lengths)[-5:]


def _inventory_summary(syncer: Syncer) -> list[tuple[str, int, str | None, str, str | None]]:
    inventory = syncer.fleet.refresh().inventory
    return [
        (e.repository, e.number, e.head_sha, e.folder, e.inputs) for e in inventory.environments
    ]


def test_the_blob_cache_says_what_reading_the_blobs_says_and_a_broken_one_is_a_miss(
    fleet_remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["org/a", "org/b"]
    source = source_with(names, 5)
    syncer = Syncer(make_config(fleet_remote, names), source, tmp_path / "work")
    syncer.run()
    cache = tmp_path / "work" / ".git" / INVENTORY_CACHE
    assert json.loads(cache.read_text())["version"] == 3
    reads = Reads(monkeypatch)
    cached = _inventory_summary(syncer)
    assert reads.count == 1  # the index alone: every environment came from the cache

    wrong = b'{"version": 2, "blobs": {"x": [1, 2]}, "rendered": []}'
    for broken in (b"", b"{not json", wrong, b"[]", b'{"version": 1, "blobs": {}}'):
        cache.write_bytes(broken)
        reads.count = 0
        assert _inventory_summary(syncer) == cached
        assert reads.count > 10  # read from git again, not from the broken cache
    cache.unlink()
    assert _inventory_summary(syncer) == cached
    # And what the cache says equals what a plain reading of the contents says.
    files = {
        name.removeprefix("previews/dev/"): git("show", f"main:{name}", cwd=fleet_remote).encode()
        for name in git(
            "ls-tree", "-r", "--name-only", "main", "--", "previews/dev", cwd=fleet_remote
        ).split()
    }
    plain = read_inventory(files)
    assert [
        (e.repository, e.number, e.head_sha, e.folder, e.inputs) for e in plain.environments
    ] == cached
    assert all(e.inputs for e in plain.environments)
    assert {e.folder for e in plain.environments} == {
        f"{n[4:]}-pr-{i}" for n in names for i in range(1, 6)
    }
    assert HELMRELEASE_FILE in plain.environments[0].files


def test_a_hand_edit_that_keeps_the_input_hash_is_still_overwritten(
    fleet_remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = source_with(["org/a"], 3)
    syncer = Syncer(make_config(fleet_remote, ["org/a"]), source, tmp_path / "work")
    syncer.run()
    rendered = git("show", "main:previews/dev/a-pr-2/helmrelease.yaml", cwd=fleet_remote)
    clone = tmp_path / "clone"
    git("clone", "--quiet", str(fleet_remote), str(clone))
    release = clone / "previews/dev/a-pr-2/helmrelease.yaml"
    release.write_text(rendered.replace("replicas: 1", "replicas: 9"))  # inputs unchanged
    git("commit", "--quiet", "-am", "a hand edit", cwd=clone)
    git("push", "--quiet", "origin", "HEAD:main", cwd=clone)

    renders = Renders(monkeypatch)
    result = syncer.run()
    # The edited folder is no tree prgen rendered: rendered again, compared, written back.
    assert renders.count == 1
    assert {c.number: c.action for c in result.plan.changes}[2] == Action.UPDATE
    assert result.commit is not None
    assert git("show", "main:previews/dev/a-pr-2/helmrelease.yaml", cwd=fleet_remote) == rendered
    assert syncer.run().commit is None and renders.count == 1


def test_with_the_cache_lost_one_run_renders_and_compares_all_then_none(
    fleet_remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = source_with(["org/a", "org/b"], 5)
    syncer = Syncer(make_config(fleet_remote, ["org/a", "org/b"]), source, tmp_path / "work")
    syncer.run()
    (tmp_path / "work" / ".git" / INVENTORY_CACHE).unlink()
    renders = Renders(monkeypatch)
    lost = syncer.run()
    assert lost.commit is None and renders.count == 10
    assert {c.action for c in lost.plan.changes} == {Action.KEEP}
    assert syncer.run().commit is None and renders.count == 10


def test_the_tree_id_of_a_rendered_folder_is_the_one_git_gives_it(
    fleet_remote: Path, tmp_path: Path
) -> None:
    from prgen.inventory import tree_id
    from prgen.render import render_environment

    config = make_config(fleet_remote, ["org/a"])
    source = source_with(["org/a"], 1)
    Syncer(config, source, tmp_path / "work").run()
    env = render_environment(config.repositories[0], source.get("org/a", 1))
    assert (
        tree_id(env.files) == git("rev-parse", "main:previews/dev/a-pr-1", cwd=fleet_remote).strip()
    )
