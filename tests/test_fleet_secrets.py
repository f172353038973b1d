"""fleet-repo-example keeps prgen's own Secrets in git, encrypted with SOPS for an age key, and
Flux's kustomize-controller decrypts them (`decryption.provider: sops`).

The example's files are encrypted for a recipient nobody holds (tests/sops_example.py), so their
structure is checked as it stands: no value in plain text, the metadata Flux needs, names still
readable. What happens to them is checked with keys the tests make (pyrage) and the real sops
binary: the README's own commands write and encrypt the Secrets, kustomize builds the folders,
each built object is decrypted as kustomize-controller does it (no MAC check) and must be the
valid Secret prgen reads, with the values put in; the README's rotation leaves the files to the
new key alone.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyrage
import pytest

from prgen.testing.fake_github import app_key
from test_fleet_repo_example import (
    EXAMPLE,
    README,
    errors_of,
    flux_kustomizations,
    kustomization_dirs,
    load_all,
    load_one,
    prgen_container,
    readme_section,
    relative,
    server_container,
)

from manifest_validation import kustomize_build, require_kubectl
from sops_example import (
    ENCRYPTED_VALUE,
    EXAMPLE_SECRETS,
    SOPS_CONFIG,
    STAND_IN,
    example_recipient,
    flux_decrypted,
    is_sops_encrypted,
    sops,
    sops_binary,
    sops_config,
)

#: The Secret kustomize-controller takes the age key from, and the one thing it must be.
DECRYPTION = {"provider": "sops", "secretRef": {"name": "sops-age"}}
PRGEN = EXAMPLE / "infrastructure" / "prgen"
SERVER = EXAMPLE / "infrastructure" / "prgen-server"
AGE_ARMOR = re.compile(
    r"-----BEGIN AGE ENCRYPTED FILE-----\n(?P<body>[A-Za-z0-9+/=\n]+)\n"
    r"-----END AGE ENCRYPTED FILE-----\n?"
)


def encrypted_files() -> list[Path]:
    """The example's files sops encrypted: each holds a top-level `sops` entry."""
    return sorted(
        path
        for path in EXAMPLE.rglob("*.yaml")
        if path != SOPS_CONFIG and re.search(r"^sops:", path.read_text(), re.M)
    )


def creation_rule() -> dict[str, Any]:
    (rule,) = sops_config()["creation_rules"]
    return dict(rule)


def recipients(rule: Mapping[str, Any]) -> list[str]:
    return [r.strip() for r in str(rule["age"]).split(",")]


def new_identity(folder: Path, name: str = "fleet") -> tuple[Path, str]:
    """A fresh age key in `folder`: (its key file, its public key)."""
    identity = pyrage.x25519.Identity.generate()
    key_file = folder / f"{name}.agekey"
    key_file.write_text(f"{identity}\n")
    return key_file, str(identity.to_public())


def a_fleet_for(tmp_path: Path, recipient: str) -> Path:
    """A copy of the example whose .sops.yaml names `recipient`, as step 4 has a user edit it."""
    fleet = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, fleet)
    config = fleet / ".sops.yaml"
    text = config.read_text()
    assert text.count(example_recipient()) == 1
    config.write_text(text.replace(example_recipient(), recipient))
    return fleet


def assert_encrypted_for(text: str, wanted: list[str], rule: Mapping[str, Any]) -> dict[str, Any]:
    """One Secret whose every value is sops ciphertext, with the metadata kustomize-controller
    needs to decrypt it (age stanzas for `wanted`, mac, lastmodified, version, encrypted_regex).
    Returns the document."""
    (doc,) = load_all(text)
    # Readable without the key: what it is, what it is called, where it goes.
    assert (doc["apiVersion"], doc["kind"]) == ("v1", "Secret")
    assert isinstance(doc["metadata"]["name"], str) and isinstance(
        doc["metadata"]["namespace"], str
    )
    assert not ENCRYPTED_VALUE.search(str(doc["metadata"]))
    # No value in plain text: stringData only (plain strings once decrypted), each one sops'.
    assert "data" not in doc and doc["stringData"]
    for key, value in doc["stringData"].items():
        match = ENCRYPTED_VALUE.fullmatch(value)
        assert match and match["type"] == "str", key
    assert "PRIVATE KEY-----" not in text and "AGE-SECRET-KEY-" not in text
    # The metadata: the data key wrapped for each recipient, the MAC, and how it was made.
    metadata = doc["sops"]
    assert is_sops_encrypted(doc)
    stanzas = metadata["age"]
    assert [s["recipient"] for s in stanzas] == wanted
    for stanza in stanzas:
        armored = AGE_ARMOR.fullmatch(stanza["enc"])
        assert armored, stanza["enc"]
        header = base64.b64decode("".join(armored["body"].split()))
        assert header.startswith(b"age-encryption.org/v1\n-> X25519 ")
    assert ENCRYPTED_VALUE.fullmatch(metadata["mac"])
    assert datetime.datetime.fromisoformat(metadata["lastmodified"])
    assert re.fullmatch(r"3\.\d+\.\d+", metadata["version"])
    assert metadata["encrypted_regex"] == rule["encrypted_regex"]
    # Nothing else could decrypt it, and nothing was left out of the encryption.
    assert not {"kms", "gcp_kms", "azure_kv", "hc_vault", "pgp"} & {
        key for key, value in metadata.items() if value
    }
    assert not {"unencrypted_regex", "unencrypted_suffix", "encrypted_suffix"} & set(metadata)
    return dict(doc)


# --------------------------------------------------------------------------------------------
# The example as shipped
# --------------------------------------------------------------------------------------------


def test_sops_encrypts_exactly_the_secret_files_and_only_their_values() -> None:
    rule = creation_rule()
    assert rule["encrypted_regex"] == "^(data|stringData)$"
    # path_regex is matched against the path relative to .sops.yaml: it takes the Secrets'
    # files and nothing else of the example.
    every_file = {relative(p) for p in EXAMPLE.rglob("*") if p.is_file()}
    matched = {name for name in every_file if re.search(rule["path_regex"], name)}
    assert matched == set(EXAMPLE_SECRETS) == {relative(p) for p in encrypted_files()}


def test_the_recipient_is_a_labelled_example_key_and_no_private_key_is_in_the_repository() -> None:
    (recipient,) = recipients(creation_rule())
    # A valid age X25519 recipient, made from a hash: nobody can hold its private key.
    assert str(pyrage.x25519.Recipient.from_str(recipient)) == recipient
    assert recipient == example_recipient()
    text = SOPS_CONFIG.read_text()
    assert "EXAMPLE recipient" in text and "Nobody has its private key" in text
    assert f"`age: {recipient[:8]}…`" in README.read_text()  # step 4 says which to replace
    for path in (p for p in EXAMPLE.rglob("*") if p.is_file()):
        assert "AGE-SECRET-KEY-" not in path.read_text(), relative(path)


@pytest.mark.parametrize("path", encrypted_files(), ids=relative)
def test_every_encrypted_file_hides_its_values_and_carries_what_flux_needs(path: Path) -> None:
    text = path.read_text()
    doc = assert_encrypted_for(text, recipients(creation_rule()), creation_rule())
    name, namespace, values = EXAMPLE_SECRETS[relative(path)]
    assert (doc["metadata"]["name"], doc["metadata"]["namespace"]) == (name, namespace)
    assert set(doc["stringData"]) == set(values)
    for value in values.values():  # what tests/sops_example.py encrypted is not there
        assert value.strip() not in text
    # Once decrypted it is a valid Secret (errors_of validates it as Flux applies it).
    assert errors_of(text) == []
    assert flux_decrypted(doc)["stringData"] == dict.fromkeys(values, STAND_IN)


def test_the_kustomization_that_applies_them_decrypts_with_sops() -> None:
    require_kubectl()
    kustomizations = flux_kustomizations()
    # The folders whose build holds an encrypted object ...
    holding = {
        relative(directory)
        for directory in kustomization_dirs()
        if any(is_sops_encrypted(o) for o in load_all(kustomize_build(directory)))
    }
    assert holding == {relative(PRGEN), relative(SERVER)}
    # ... are applied by Kustomization prgen, the server's once the README switches its path.
    prgen = kustomizations["prgen"]
    assert prgen["spec"]["path"] == f"./{relative(PRGEN)}"
    assert f"`path: ./{relative(SERVER)}`" in readme_section("## Running as a server (optional)")
    assert prgen["spec"]["decryption"] == DECRYPTION
    others = {name: k["spec"].get("decryption") for name, k in kustomizations.items()}
    assert others == {name: DECRYPTION if name == "prgen" else None for name in kustomizations}
    # It validates against kustomize.toolkit.fluxcd.io/v1's CRD, decryption included.
    path = EXAMPLE / "clusters" / "preview" / "prgen-deployment.yaml"
    assert load_one(path)["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert errors_of(path.read_text()) == []


# --------------------------------------------------------------------------------------------
# With a key of our own: the real sops, kustomize, and decryption as Flux does it
# --------------------------------------------------------------------------------------------


def test_a_secret_encrypted_by_the_example_rules_decrypts_to_the_original(tmp_path: Path) -> None:
    key_file, recipient = new_identity(tmp_path)
    fleet = a_fleet_for(tmp_path, recipient)
    original = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: prgen-fleet-token\n"
        "  namespace: prgen\nstringData:\n"
        '  token: "github_pat_not-a-real-one"\n'
        "  private-key.pem: |\n    line one\n    line two\n"
    )
    name = "infrastructure/prgen/secrets/fleet-token.yaml"
    secret = fleet / name
    secret.write_text(original)
    encrypted = sops("--encrypt", "--in-place", name, cwd=fleet)
    assert encrypted.returncode == 0, encrypted.stderr
    text = secret.read_text()
    assert "github_pat_not-a-real-one" not in text and "line one" not in text
    rule = sops_config_of(fleet)
    assert_encrypted_for(text, [recipient], rule)

    decrypted = sops("--decrypt", name, cwd=fleet, key_file=key_file)
    assert decrypted.returncode == 0, decrypted.stderr
    (doc,) = load_all(decrypted.stdout)
    assert doc == load_all(original)[0]
    assert errors_of(decrypted.stdout) == []  # a valid Secret, at every supported Kubernetes
    # The stand-in the example's validation uses has the shape of the real thing.
    (as_encrypted,) = load_all(text)
    assert flux_decrypted(as_encrypted) == with_stand_ins(doc)
    # Without the key nothing comes out; outside the rule's paths sops encrypts nothing.
    assert sops("--decrypt", name, cwd=fleet).returncode != 0
    elsewhere = fleet / "infrastructure" / "prgen" / "token.yaml"
    elsewhere.write_text(original)
    refused = sops("--encrypt", "--in-place", "infrastructure/prgen/token.yaml", cwd=fleet)
    assert refused.returncode != 0 and elsewhere.read_text() == original


def sops_config_of(fleet: Path) -> dict[str, Any]:
    (rule,) = load_one(fleet / ".sops.yaml")["creation_rules"]
    return dict(rule)


def with_stand_ins(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {**doc, "stringData": dict.fromkeys(doc["stringData"], STAND_IN)}


def readme_heredocs() -> dict[str, str]:
    """Every `cat > FILE <<EOF ... EOF` of the README: the file and the shell text writing it."""
    found = re.findall(r"^(cat > (\S+) <<EOF\n.*?^EOF\n)", README.read_text(), re.M | re.S)
    return {path: script for script, path in found}


def readme_encrypts() -> list[str]:
    return re.findall(r"^sops --encrypt --in-place (\S+)$", README.read_text(), re.M)


def run_shell(script: str, cwd: Path, **env: str) -> None:
    """`script` under sh, as a user pastes it, with the test's sops first on PATH."""
    path = f"{Path(sops_binary()).parent}{os.pathsep}{os.environ['PATH']}"
    result = subprocess.run(
        ["sh", "-euc", script],
        cwd=cwd,
        env={**os.environ, "PATH": path, "HOME": str(cwd), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def flux_decrypts(built: str, cwd: Path, key_file: Path) -> list[dict[str, Any]]:
    """What kustomize-controller applies from a build: each SOPS-encrypted object decrypted
    with the key, without checking its MAC (kustomize's namespace and labels changed the
    unencrypted part, which the MAC covers: kustomize-controller skips that check)."""
    applied = []
    for obj in load_all(built):
        if is_sops_encrypted(obj):
            text = json.dumps(obj)
            args = ("--input-type", "json", "--output-type", "json", "/dev/stdin")
            checked = sops("--decrypt", *args, cwd=cwd, key_file=key_file, stdin=text)
            assert checked.returncode != 0 and "MAC mismatch" in checked.stderr
            result = sops(
                "--decrypt", "--ignore-mac", *args, cwd=cwd, key_file=key_file, stdin=text
            )
            assert result.returncode == 0, result.stderr
            (decrypted,) = load_all(result.stdout)
            # The stand-in the example's validation uses has the shape of the real thing.
            assert flux_decrypted(obj) == with_stand_ins(decrypted)
            obj = decrypted
        applied.append(obj)
    return applied


def test_the_readme_writes_and_encrypts_the_secrets_prgen_reads_and_flux_decrypts_them(
    tmp_path: Path,
) -> None:
    require_kubectl()
    key_file, recipient = new_identity(tmp_path)
    fleet = a_fleet_for(tmp_path, recipient)
    pem = app_key().private_pem
    (fleet / "acme-prgen.private-key.pem").write_text(pem)
    values = {
        "FLEET_TOKEN": "github_pat_fleet-token-for-the-test",
        "WEBHOOK_SECRET": "0123456789abcdef" * 4,
        "API_TOKEN": "fedcba9876543210" * 4,
    }
    # The README's step 4 and the server's step 1, as written: each Secret, then sops.
    heredocs = readme_heredocs()
    assert set(heredocs) == set(readme_encrypts()) == set(EXAMPLE_SECRETS)
    for path, script in heredocs.items():
        run_shell(script, fleet, **values)
        assert "sops:" not in (fleet / path).read_text()  # plain text until encrypted
    for path in readme_encrypts():
        run_shell(f"sops --encrypt --in-place {path}", fleet)
        text = (fleet / path).read_text()
        assert_encrypted_for(text, [recipient], sops_config_of(fleet))
        assert not any(value in text for value in [*values.values(), pem.splitlines()[1]])

    # Flux: kustomize build, then decryption of each encrypted object, then apply.
    variables = {**values, "GITHUB_APP_PRIVATE_KEY": pem}
    for folder, container in (
        ("infrastructure/prgen", prgen_container()),
        ("infrastructure/prgen-server", server_container()),
    ):
        applied = flux_decrypts(kustomize_build(fleet / folder), fleet, key_file)
        assert errors_of("".join(f"---\n{json.dumps(o)}\n" for o in applied)) == []
        secrets = [o for o in applied if o["kind"] == "Secret"]
        assert secrets and all(o["metadata"]["namespace"] == "prgen" for o in secrets)
        got = {(o["metadata"]["name"], k): v for o in secrets for k, v in o["stringData"].items()}
        # Exactly the Secret keys the pod reads, each holding the value the user put in.
        reads = {
            (ref["name"], ref["key"]): entry["name"]
            for entry in container["env"]
            if (ref := entry.get("valueFrom", {}).get("secretKeyRef"))
        }
        assert set(got) == set(reads), folder
        for where, value in got.items():
            assert value == variables[_variable_for(reads[where])], where


def _variable_for(env_name: str) -> str:
    """The README's shell variable holding the value of the pod's `env_name`."""
    return {
        "GITHUB_APP_PRIVATE_KEY": "GITHUB_APP_PRIVATE_KEY",
        "FLEET_TOKEN": "FLEET_TOKEN",
        "PRGEN_WEBHOOK_SECRET": "WEBHOOK_SECRET",
        "PRGEN_API_TOKEN": "API_TOKEN",
    }[env_name]


def test_the_readmes_rotation_leaves_the_files_to_the_new_key_alone(tmp_path: Path) -> None:
    old_key, old = new_identity(tmp_path, "old")
    new_key, new = new_identity(tmp_path, "new")
    fleet = a_fleet_for(tmp_path, old)
    for relative_path, (name, namespace, keys) in EXAMPLE_SECRETS.items():
        lines = [f"  {key}: 'value of {name}/{key}'" for key in keys]
        (fleet / relative_path).write_text(
            f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n"
            f"  namespace: {namespace}\nstringData:\n" + "\n".join(lines) + "\n"
        )
        assert sops("--encrypt", "--in-place", relative_path, cwd=fleet).returncode == 0
    before = {p: (fleet / p).read_text() for p in EXAMPLE_SECRETS}

    (loop,) = re.findall(r"^for f in .*?^done$", README.read_text(), re.M | re.S)
    run_shell(loop, fleet, OLD=old, NEW=new, SOPS_AGE_KEY_FILE=str(old_key))

    for path in EXAMPLE_SECRETS:
        text = (fleet / path).read_text()
        doc = assert_encrypted_for(text, [new], sops_config_of(fleet))
        (was,) = load_all(before[path])
        assert doc["stringData"] != was["stringData"]  # a new data key: new ciphertext
        assert sops("--decrypt", path, cwd=fleet, key_file=old_key).returncode != 0
        decrypted = sops("--decrypt", path, cwd=fleet, key_file=new_key)
        assert decrypted.returncode == 0, decrypted.stderr
        (plain,) = load_all(decrypted.stdout)
        name = plain["metadata"]["name"]
        assert plain["stringData"] == {k: f"value of {name}/{k}" for k in plain["stringData"]}


def test_without_sops_the_readmes_edits_leave_folders_that_build_without_any_secret(
    tmp_path: Path,
) -> None:
    require_kubectl()
    without = " ".join(readme_section("## Secrets without SOPS").split())
    fleet = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, fleet)
    # What the section says to delete: the decryption block, the secrets/ lines of both
    # kustomizations, the secrets/ folders and .sops.yaml.
    deployment = fleet / "clusters" / "preview" / "prgen-deployment.yaml"
    assert "`decryption` block from `clusters/preview/prgen-deployment.yaml`" in without
    text = deployment.read_text()
    block = "  decryption:\n    provider: sops\n    secretRef:\n      name: sops-age\n"
    assert text.count(block) == 1
    deployment.write_text(text.replace(block, ""))
    for folder in (PRGEN, SERVER):
        assert f"`{relative(folder)}/kustomization.yaml`" in without
        kustomization = fleet / relative(folder) / "kustomization.yaml"
        lines = kustomization.read_text().splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith("  - secrets/")]
        assert len(lines) - len(kept) == 2
        kustomization.write_text("".join(kept))
        shutil.rmtree(fleet / relative(folder) / "secrets")
    assert "`secrets/` folders and `.sops.yaml`" in without
    (fleet / ".sops.yaml").unlink()

    assert "decryption" not in load_one(deployment)["spec"]
    assert errors_of(deployment.read_text()) == []
    for folder in (PRGEN, SERVER):
        built = kustomize_build(fleet / relative(folder))
        assert errors_of(built) == []
        assert not [o for o in load_all(built) if o["kind"] == "Secret" or "sops" in o]
    # The Secrets come from the section's kubectl commands instead (their names and keys are
    # checked against what the pods read by test_the_readme_creates_exactly_the_secrets_...).
    assert without.count("kubectl create secret generic") == 2
