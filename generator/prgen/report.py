"""What GitHub should show for an environment: pure.

`desired_report` turns an observation into the commit status, check run, deployment and
comment GitHub should show; `waiting_report` what a head held by its deploy gate should
show; prgen.github.channels reads what GitHub shows now and writes what differs.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import quote, urlsplit

from prgen.config import ReportSettings

log = logging.getLogger(__name__)

COMMENT_MARKER = "<!-- prgen:preview -->"
DEPLOYMENT_TASK = "deploy:prgen-preview"
DESCRIPTION_LIMIT = 140  # GitHub's limit for status descriptions


class Health(StrEnum):
    PENDING = "pending"
    READY = "success"
    FAILED = "failure"
    REMOVED = "removed"
    SLEEPING = "sleeping"  # kept, scaled to zero by its chart: not probed, never failing


_DEPLOYMENT_STATE = {
    Health.PENDING: "in_progress",
    Health.READY: "success",
    Health.FAILED: "failure",
    Health.REMOVED: "inactive",
    # GitHub: an inactive deployment is one no longer live; waking makes a new success.
    Health.SLEEPING: "inactive",
}
# A commit status has only error, failure, pending and success: a sleeping environment is
# no failure of its head, and pending would hold a required check for as long as it sleeps.
_STATUS_STATE = {Health.SLEEPING: "success"}
_HEADLINE = {
    Health.PENDING: "⏳ being deployed",
    Health.READY: "✅ ready",
    Health.FAILED: "❌ not healthy",
    Health.REMOVED: "🗑️ removed",
    Health.SLEEPING: "💤 asleep",
}
WAKE_HINT = "push a commit or comment `/preview wake` to wake it"


@dataclass(frozen=True)
class Observation:
    """One environment as prgen sees it from outside."""

    repository: str
    number: int
    head_sha: str | None
    namespace: str
    environment_url: str | None
    health: Health
    reason: str  # what the probe saw, or why the environment was removed
    paused: bool = False  # `/preview pause` keeps it at this head
    # Lifecycle (see lifecycle.py): when it expires, said only within expireWarning of it,
    # so the comment changes once; the keep label that would keep it.
    expires_at: datetime | None = None
    keep_label: str | None = None
    expired: bool = False  # a REMOVED one that expired: the comment says how to get it back
    opt_in_labels: tuple[str, ...] = ()  # labels a PR needs for an environment, to name there
    wakes_at: datetime | None = None  # a SLEEPING one: when its sleep schedule wakes it
    target: str = ""  # with `targets:`, the target (cluster) the environment is in


@dataclass(frozen=True)
class CommitStatusReport:
    context: str
    state: str
    description: str
    target_url: str | None


@dataclass(frozen=True)
class CheckRunReport:
    """prgen's check run on a head (GitHub Apps only): what the commit status says, and more."""

    name: str
    status: str  # in_progress or completed
    conclusion: str | None  # success or failure once completed
    details_url: str | None
    title: str
    summary: str  # Markdown: anything from outside is in a code span


@dataclass(frozen=True)
class DeploymentReport:
    environment: str
    state: str
    environment_url: str | None
    description: str


@dataclass(frozen=True)
class DesiredReport:
    status: CommitStatusReport | None
    deployment: DeploymentReport | None
    comment: str | None
    check_run: CheckRunReport | None = None


# -- text from outside in what GitHub shows ---------------------------------------------------
# A probe's reason quotes what an environment answered (a redirect's host), and a URL may
# carry a branch's slug: none of it may mention anyone, link, embed or break the layout.

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
VALUE_LIMIT = 200  # characters of one outside value in a comment
_URL_SAFE = ":/?#[]@!$&'()*+,;=%-._~"  # kept as they are; anything else is percent-encoded


def plain_text(text: str, limit: int) -> str:
    """One line of at most `limit` characters: control and bidi characters become spaces."""
    line = " ".join(_CONTROL.sub(" ", text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def markdown_code(text: str, *, cell: bool = False) -> str:
    """Any text as an inert Markdown code span.

    GitHub makes no mention, reference, link, image or HTML of what is in a code span. A
    longer backtick fence than any run inside keeps the text from closing it; in a table
    cell (`cell`) a `|` is escaped, and a backslash before it set apart, or it would end
    the cell (GFM splits a row before it reads code spans).
    """
    text = plain_text(text, VALUE_LIMIT)
    if not text:
        return ""
    if cell:
        text = re.sub(r"\\(?=\|)", "\\ ", text).replace("|", "\\|")
    fence = "`" * (max(map(len, re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_link(url: str | None) -> str:
    """An http(s) URL as an autolink, percent-encoded so that it cannot end early; else code."""
    if not url:
        return "(none configured)"
    try:
        parts = urlsplit(url)
    except ValueError:
        return markdown_code(url, cell=True)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return markdown_code(url, cell=True)
    return f"<{quote(plain_text(url, 2000), safe=_URL_SAFE)}>"


def _describe(observation: Observation) -> str:
    """A status or deployment description: plain text, within GitHub's 140 characters."""
    text = {
        Health.PENDING: "environment is being deployed",
        Health.READY: "environment is ready",
        Health.FAILED: f"environment is not healthy: {observation.reason}",
        Health.REMOVED: "environment expired and was removed"
        if observation.expired
        else "environment was removed",
        Health.SLEEPING: "environment is asleep: push a commit or comment /preview wake",
    }[observation.health]
    return plain_text(text, DESCRIPTION_LIMIT)


def comment_marker(target: str) -> str:
    """What prgen's comment starts with: one comment per target (cluster) of a PR."""
    return f"<!-- prgen:preview:{target} -->" if target else COMMENT_MARKER


def comment_body(observation: Observation) -> str:
    """Deterministic: the same state gives the same text, so an unchanged comment is never edited."""
    target = f" ({observation.target})" if observation.target else ""
    lines = [
        comment_marker(observation.target),
        f"### Preview environment{target}: {_HEADLINE[observation.health]}",
        "",
    ]
    if observation.health is Health.REMOVED:
        lines.append(
            f"The environment {markdown_code(observation.namespace)} was removed: "
            f"{markdown_code(observation.reason)}."
        )
        if observation.expired:
            ways = ["push a commit", "comment `/preview create`"]
            if observation.opt_in_labels:
                labels = ", ".join(markdown_code(label) for label in observation.opt_in_labels)
                ways.append(f"remove the label {labels} and add it again")
            lines += ["", f"To get it back: {', '.join(ways[:-1])} or {ways[-1]}."]
    else:
        lines += [
            "| | |",
            "|---|---|",
            f"| URL | {markdown_link(observation.environment_url)} |",
            f"| Commit | {markdown_code((observation.head_sha or '')[:7], cell=True)} |",
            f"| Namespace | {markdown_code(observation.namespace, cell=True)} |",
        ]
        if observation.health is Health.FAILED:
            lines.append(f"| Last check | {markdown_code(observation.reason, cell=True)} |")
        if observation.paused:
            lines.append(
                "| Paused | kept at this commit by `/preview pause`; "
                "`/preview resume` follows the pull request again |"
            )
        if observation.health is Health.SLEEPING:
            scheduled = (
                f"; its schedule wakes it on {observation.wakes_at.strftime('%Y-%m-%d at %H:%M UTC')}"
                if observation.wakes_at is not None
                else ""
            )
            lines.append(f"| Asleep | scaled down while idle; {WAKE_HINT}{scheduled} |")
        if observation.expires_at is not None:
            keep = ["push a commit", "comment a `/preview` command (such as `/preview wake`)"]
            if observation.keep_label:
                keep.append(f"add the label {markdown_code(observation.keep_label, cell=True)}")
            lines += [
                "",
                f"⏰ **This environment expires on "
                f"{observation.expires_at.strftime('%Y-%m-%d at %H:%M UTC')}** for lack of "
                f"activity. To keep it, {', '.join(keep[:-1])} or {keep[-1]}.",
            ]
    lines += ["", "<sub>Maintained by prgen; this comment is edited in place.</sub>"]
    return "\n".join(lines) + "\n"


_CHECK_RUN_STATE = {
    Health.PENDING: ("in_progress", None),
    Health.READY: ("completed", "success"),
    Health.FAILED: ("completed", "failure"),
    # GitHub's "neutral": completed, neither passed nor failed; branch protection lets it pass.
    Health.SLEEPING: ("completed", "neutral"),
}


def _check_run_summary(observation: Observation) -> str:
    """What the status says, as Markdown that nothing from outside can turn into a mention
    or a link: the probe's reason in a code span, the URL percent-encoded."""
    text = {
        Health.PENDING: "The environment is being deployed.",
        Health.READY: "The environment is ready.",
        Health.FAILED: f"The environment is not healthy: {markdown_code(observation.reason)}",
        Health.SLEEPING: f"The environment is asleep: {WAKE_HINT}.",
    }[observation.health]
    return (
        f"{text}\n\n"
        f"- URL: {markdown_link(observation.environment_url)}\n"
        f"- Commit: {markdown_code((observation.head_sha or '')[:7])}\n"
        f"- Namespace: {markdown_code(observation.namespace)}\n"
    )


def _check_run(name: str, observation: Observation) -> CheckRunReport | None:
    if observation.health is Health.REMOVED:
        return None  # as the status: a removed environment leaves its head's last word
    status, conclusion = _CHECK_RUN_STATE[observation.health]
    return CheckRunReport(
        name,
        status,
        conclusion,
        observation.environment_url,
        f"Preview environment: {_HEADLINE[observation.health]}",
        _check_run_summary(observation),
    )


def waiting_report(settings: ReportSettings, reason: str) -> DesiredReport:
    """What a head its deploy gate keeps from being deployed shows: why it waits.

    A pending commit status and an in-progress check run, each saying the gate's reason;
    no deployment and no comment (they are about an environment, and this head has none).
    """
    description = plain_text(reason, DESCRIPTION_LIMIT)
    status = None
    if settings.commit_status_context:
        status = CommitStatusReport(settings.commit_status_context, "pending", description, None)
    check_run = None
    if settings.check_run:
        check_run = CheckRunReport(
            settings.check_run,
            "in_progress",
            None,
            None,
            "Preview environment: ⏸️ waiting for its deploy gate",
            f"This commit is not deployed yet: {markdown_code(reason)}\n",
        )
    return DesiredReport(status, None, None, check_run)


PASSED = "deploy gate passed: the fleet carries this commit"


def passed_report(settings: ReportSettings) -> DesiredReport:
    """What a head that passed its deploy gate shows when no probe will report on it (no
    health check): success, so that what said it waits does not stay pending for ever."""
    status = None
    if settings.commit_status_context:
        status = CommitStatusReport(settings.commit_status_context, "success", PASSED, None)
    check_run = None
    if settings.check_run:
        check_run = CheckRunReport(
            settings.check_run,
            "completed",
            "success",
            None,
            "Preview environment: deploy gate passed",
            "The fleet repository carries this commit; no health check is configured.\n",
        )
    return DesiredReport(status, None, None, check_run)


def desired_report(
    settings: ReportSettings, observation: Observation, deployment_environment: str | None
) -> DesiredReport:
    description = _describe(observation)
    status = None
    if settings.commit_status_context and observation.health is not Health.REMOVED:
        status = CommitStatusReport(
            settings.commit_status_context,
            _STATUS_STATE.get(observation.health, str(observation.health)),
            description,
            observation.environment_url if observation.health is Health.READY else None,
        )
    deployment = None
    if deployment_environment:
        deployment = DeploymentReport(
            deployment_environment,
            _DEPLOYMENT_STATE[observation.health],
            observation.environment_url,
            description,
        )
    check_run = _check_run(settings.check_run, observation) if settings.check_run else None
    return DesiredReport(
        status, deployment, comment_body(observation) if settings.comment else None, check_run
    )


@dataclass
class ReportOutcome:
    writes: int = 0
    error: str | None = None  # the first channel that could not be reported, and why
    late: bool = False  # the round's time ran out before every channel was reported


NOT_IN_TIME = "not reported in time: the probe round's time ran out; the next round picks it up"
