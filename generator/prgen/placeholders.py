"""`<<NAME>>` placeholders, substituted inside parsed YAML values, never into template text.

The syntax is the seed controller's, so its users' configs move over unchanged.
Values from the PR (branch, title, author, labels) are untrusted: they can only ever
become (part of) a string scalar, and a `${...}` they carry is reported so the
renderer can keep Flux's post-build substitution away from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap

from prgen.model import PullRequest
from prgen.naming import pr_text_label

PLACEHOLDER = re.compile(r"<<([A-Z][A-Z0-9_]*)>>")

KNOWN = frozenset(
    {
        "PR_NUMBER",
        "PR_HEAD_SHA",
        "PR_HEAD_SHORT_SHA",
        "PR_BRANCH",
        "PR_BRANCH_SLUG",
        "PR_BASE_BRANCH",
        "PR_AUTHOR",
        "PR_TITLE",
        "PR_LABELS",
        "REPO_OWNER",
        "REPO_NAME",
        "NAMESPACE",
        "TARGET",  # the target's name (`targets:`), as a cluster's hostnames need it
    }
)
# Free text someone outside the team may choose. Labels too: anyone with triage access
# names them, and a bot may copy them from elsewhere.
UNTRUSTED = frozenset({"PR_BRANCH", "PR_BASE_BRANCH", "PR_AUTHOR", "PR_TITLE", "PR_LABELS"})
# What a PR chooses, as names go: the free text, and the branch's slug made from it.
PR_TEXT = UNTRUSTED | {"PR_BRANCH_SLUG"}


def pr_made_flux_variable(text: str, from_pr: list[bool]) -> bool:
    """Would Flux's post-build substitution change anything PR characters are part of?

    `from_pr[i]` says whether character i came from PR text. Flux expands `${...}` and
    turns its escape `$$` into `$`. So every `${` counts, escaped or not, when PR text
    supplied one of its `$`s, its brace, its name or its closing brace: an escaped
    `$${X}` from a PR would reach the cluster as `${X}`. So does a `$$` with a PR `$`.
    """
    for index in range(len(text) - 1):
        if text[index] != "$" or text[index + 1] not in "${":
            continue
        if text[index + 1] == "$":
            if from_pr[index] or from_pr[index + 1]:
                return True
            continue
        start = index
        while start > 0 and text[start - 1] == "$":
            start -= 1
        close = text.find("}", index)
        end = close + 1 if close != -1 else len(text)
        if any(from_pr[start:end]):
            return True
    return False


def placeholders_in(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, name) of each placeholder in the string values of `value` (keys are never
    substituted, so a placeholder in a key is not one)."""
    if isinstance(value, str):
        for match in PLACEHOLDER.finditer(value):
            yield path, match.group(1)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from placeholders_in(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from placeholders_in(item, f"{path}[{index}]")


def unknown_placeholders(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, name) of each placeholder in `value` that prgen does not know."""
    for where, name in placeholders_in(value, path):
        if name not in KNOWN:
            yield where, name


def labels_text(labels: Iterable[str]) -> str:
    """`<<PR_LABELS>>`: sorted, so the order GitHub lists them in changes no byte."""
    return ",".join(sorted(labels))


BRANCH_SLUG_MAX = 40


class LazyValues(Mapping[str, str]):
    """pull_request_values, each computed only when a template asks for it: the
    namespace of every PR is worked out every run, and it rarely needs them all."""

    def __init__(self, pr: PullRequest) -> None:
        self._pr = pr
        self._all: dict[str, str] | None = None

    def __getitem__(self, name: str) -> str:
        pr = self._pr
        if name == "PR_NUMBER":
            return str(pr.number)
        if name == "REPO_NAME":
            return pr.repository.split("/", 1)[1]
        if name == "REPO_OWNER":
            return pr.repository.split("/", 1)[0]
        if self._all is None:
            self._all = pull_request_values(pr)
        return self._all[name]

    def __iter__(self) -> Iterator[str]:
        return iter(pull_request_values(self._pr))

    def __len__(self) -> int:
        return len(pull_request_values(self._pr))


def pull_request_values(pr: PullRequest, namespace: str = "", target: str = "") -> dict[str, str]:
    owner, name = pr.repository.split("/", 1)
    values = {
        "PR_NUMBER": str(pr.number),
        "PR_HEAD_SHA": pr.head_sha,
        "PR_HEAD_SHORT_SHA": pr.head_sha[:7],
        "PR_BRANCH": pr.head_branch,
        "PR_BRANCH_SLUG": pr_text_label(pr.head_branch, BRANCH_SLUG_MAX),
        "PR_BASE_BRANCH": pr.base_branch,
        "PR_AUTHOR": pr.author,
        "PR_TITLE": pr.title,
        "PR_LABELS": labels_text(pr.labels),
        "REPO_OWNER": owner,
        "REPO_NAME": name,
    }
    if namespace:
        values["NAMESPACE"] = namespace
    if target:
        values["TARGET"] = target
    return values


@dataclass
class Substitution:
    values: Mapping[str, str]
    # Set when PR text is part of a `${...}` Flux would expand: Flux must not expand it.
    introduced_flux_variable: bool = False

    def text(self, template: str) -> str:
        pieces: list[tuple[str, bool]] = []
        position = 0
        for match in PLACEHOLDER.finditer(template):
            name = match.group(1)
            pieces.append((template[position : match.start()], False))
            pieces.append((self.values.get(name, match.group(0)), name in UNTRUSTED))
            position = match.end()
        pieces.append((template[position:], False))
        result = "".join(piece for piece, _ in pieces)
        if not any(piece for piece, untrusted in pieces if untrusted):
            return result  # no character of it came from PR text
        from_pr = [untrusted for piece, untrusted in pieces for _ in piece]
        if pr_made_flux_variable(result, from_pr):
            self.introduced_flux_variable = True
        return result

    def apply(self, value: Any) -> Any:
        """A copy of `value` with placeholders substituted in every string scalar.

        Keys are left alone: PR text must never add, rename or merge fields.
        """
        if isinstance(value, str):
            # No placeholder, no PR text: the string as it is (and no `${` PR text made).
            return self.text(value) if "<<" in value else value
        if isinstance(value, Mapping):
            copied = CommentedMap() if isinstance(value, CommentedMap) else {}
            for key, item in value.items():
                copied[key] = self.apply(item)
            return copied
        if isinstance(value, list):
            return [self.apply(item) for item in value]
        return value
