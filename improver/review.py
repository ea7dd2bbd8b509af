"""Humans decide what ships: experiments as pull requests, reviews, the experiment log and diffs.

``create_pr`` turns an experiment into a branch holding one commit (its ``patch.diff``
applied to the target's config) and a PR description carrying the evidence. The commit
is built in a temporary index, so the working tree and the current branch are never
touched, and the branch appears only once everything worked: nothing is half-applied.
``review`` keeps the accepted proposals in a child experiment that is rerun and
rescored, so what ships is what was measured. ``log`` and ``diff`` read experiments.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from improver.errors import ExperimentError, ImproverError
from improver.experiments import Experiment, Proposal, read_tree, tree_hash, unified_diff
from improver.models import ReviewedSession
from improver.scoring import confusion_table
from improver.workspace import Workspace

MIN_QUOTED_SESSIONS = 3
MAX_QUOTED_SESSIONS = 5


class GitError(ImproverError):
    """The target's git repository is not in a state where a PR branch can be made."""


# --- git ---------------------------------------------------------------------------
def git(repo: Path, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise GitError(f"`git {' '.join(args)}` failed in {repo}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def git_name(value: str, what: str) -> str:
    """A branch, ref or remote name from the user, refused when git could read it as an option
    (a leading ``-``) or it holds whitespace or control characters."""
    if not value or value.startswith("-") or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise GitError(f"{what} {value!r} is not a usable name: it must not be empty, start with '-' or hold "
                       f"spaces or control characters; pass another --{what}")
    return value


def resolve_commit(repo: Path, ref: str) -> str:
    """The commit id ``ref`` names (the ref travels after --end-of-options, never as an option)."""
    result = git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{git_name(ref, 'base')}^{{commit}}",
                 check=False)
    if result.returncode != 0:
        raise GitError(f"{ref!r} is not a branch or commit in {repo}; pass an existing --base")
    return result.stdout.strip()


def repository_of(folder: Path) -> Path:
    result = git(folder, "rev-parse", "--show-toplevel", check=False)
    if result.returncode != 0:
        raise GitError(f"the target's config {folder} is not in a git repository; "
                       f"run `git init` and commit it (`git -C {folder} add . && git commit`) first")
    return Path(result.stdout.strip()).resolve()


def gh_ready() -> bool:
    """True when the GitHub CLI is installed and logged in."""
    if not shutil.which("gh"):
        return False
    return subprocess.run(["gh", "auth", "status"], capture_output=True).returncode == 0


# --- pull requests -----------------------------------------------------------------
@dataclass
class PullRequest:
    """What ``create_pr`` made and what is left for the human to run."""

    experiment: str
    repository: Path
    branch: str
    base: str
    commit: str
    title: str
    description: str
    description_file: Path
    push_command: list[str]
    pr_command: list[str]
    pushed: bool = False
    url: str | None = None

    @property
    def commands(self) -> list[str]:
        """The exact shell commands still to run (none once the PR is open)."""
        steps = [] if self.pushed else [shlex.join(self.push_command)]
        if self.url is None:
            steps.append(f"cd {shlex.quote(str(self.repository))} && {shlex.join(self.pr_command)}")
        return steps


def create_pr(ws: Workspace, experiment_id: str, remote: str = "origin", branch: str | None = None,
              base: str | None = None, push: bool | None = None) -> PullRequest:
    """Make a branch with the experiment's patch committed and write its PR description.

    ``push``: None pushes and opens the PR when ``gh`` is installed and logged in, True
    pushes in any case, False never pushes (the commands are returned instead)."""
    experiment = ws.experiments.get(experiment_id)
    patch = (experiment.path / "patch.diff").read_text(encoding="utf-8")
    if not patch.strip():
        raise ExperimentError(f"{experiment.id} does not change the target's config, so there is nothing to review; "
                              "pick an experiment with proposals (see `improver log`)")
    config_dir = ws.project.base_config_dir
    repo = repository_of(config_dir)
    branch = git_name(branch or f"improver/{experiment.id}", "branch")
    base = git_name(base or current_branch(repo), "base")
    remote = git_name(remote, "remote")
    check_ready(repo, config_dir, remote, branch, need_remote=push is not False)
    base_commit = resolve_commit(repo, base)

    results = ws.score(experiment)
    parent = ws.experiments.get(experiment.manifest.parent) if experiment.manifest.parent else None
    title = pr_title(experiment, results)
    report_path, report_html = pr_report(ws, experiment, repo)
    description = pr_description(experiment, parent, results, {s.session_id: s for s in ws.sessions})
    description = report_link(description, report_path, report_html is not None, repo, remote, branch)
    for text, where in ((patch, f"the PR branch of {experiment.id} (patch.diff)"), (title, "the PR title"),
                        (description, "the PR description"), (commit_message(experiment, title), "the commit message")):
        ws.leak_scan.check(text, where)
    commit = commit_patch(repo, config_dir, patch, base_commit, commit_message(experiment, title),
                          {report_path: report_html} if report_html is not None else {})
    git(repo, "update-ref", f"refs/heads/{branch}", commit, "")  # "" = only if the branch does not exist

    description_file = ws.project.data_dir / f"pr-{experiment.id}.md"
    pr = PullRequest(experiment=experiment.id, repository=repo, branch=branch, base=base, commit=commit, title=title,
                     description=description, description_file=description_file,
                     push_command=["git", "-C", str(repo), "push", "--set-upstream", remote, branch],
                     pr_command=["gh", "pr", "create", "--base", base, "--head", branch, "--title", title,
                                 "--body-file", str(description_file)])
    open_with_gh = gh_ready() if push is None else (push and gh_ready())
    if push or open_with_gh:
        result = git(repo, "push", "--set-upstream", "--", remote, branch, check=False)
        if result.returncode != 0:
            git(repo, "update-ref", "-d", f"refs/heads/{branch}", commit)
            raise GitError(f"pushing {branch} to {remote} failed, so the branch was removed again: "
                           f"{result.stderr.strip()}; fix the remote and run `improver pr {experiment.id}` again")
        pr.pushed = True
    description_file.write_text(description, encoding="utf-8")
    if open_with_gh:
        result = subprocess.run(pr.pr_command, cwd=repo, capture_output=True, text=True)
        if result.returncode != 0:
            raise GitError(f"{branch} is pushed but `gh pr create` failed: {result.stderr.strip()}; "
                           f"open the PR yourself: cd {shlex.quote(str(repo))} && {shlex.join(pr.pr_command)}")
        pr.url = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else None
    return pr


def current_branch(repo: Path) -> str:
    result = git(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    if result.returncode != 0:
        raise GitError(f"{repo} is on a detached HEAD; check out the branch the PR should target, or pass --base")
    return result.stdout.strip()


def check_ready(repo: Path, config_dir: Path, remote: str, branch: str, need_remote: bool = True) -> None:
    """Refuse a dirty tree, a missing remote (unless nothing is pushed) or an existing branch, before anything
    is written."""
    if git(repo, "rev-parse", "--verify", "--quiet", "HEAD", check=False).returncode != 0:
        raise GitError(f"{repo} has no commit yet; commit the target's config first")
    relative = config_dir.relative_to(repo).as_posix()
    changed = git(repo, "status", "--porcelain", "--untracked-files=no").stdout.splitlines()
    changed += git(repo, "status", "--porcelain", "--untracked-files=all", "--", relative).stdout.splitlines()
    if changed:
        listed = ", ".join(sorted({line[3:] for line in changed})[:5])
        raise GitError(f"the working tree of {repo} has uncommitted changes ({listed}); the experiment was measured "
                       "against the committed config, so commit or discard them first")
    if need_remote and git(repo, "remote", "get-url", "--end-of-options", remote, check=False).returncode != 0:
        known = git(repo, "remote").stdout.split()
        raise GitError(f"{repo} has no remote {remote!r} (remotes: {', '.join(known) or 'none'}); "
                       f"add one with `git -C {shlex.quote(str(repo))} remote add {remote} <url>` or pass --remote")
    if git(repo, "check-ref-format", "--branch", git_name(branch, "branch"), check=False).returncode != 0:
        raise GitError(f"{branch!r} is not a valid branch name; pass another --branch")
    if git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False).returncode == 0:
        raise GitError(f"branch {branch} already exists in {repo}; delete it (`git branch -D {branch}`) "
                       "or pass another --branch")


def pr_report(ws: Workspace, experiment: Experiment, repo: Path) -> tuple[str, str | None]:
    """Where the experiment's HTML report goes on the branch (repo-relative), and its text (None
    when the report extra is missing: the PR is made without it)."""
    from improver.errors import MissingExtraError

    root = ws.project.root.resolve()
    folder = root.relative_to(repo).as_posix() if root == repo or repo in root.parents else "improver"
    path = ("" if folder == "." else f"{folder}/") + f"reports/{experiment.id}.html"
    try:
        from improver.report import release, render

        return path, release(ws, render(ws, experiment.id), f"branch of {repo}: {path}")
    except MissingExtraError:
        return path, None


def report_link(description: str, path: str, attached: bool, repo: Path, remote: str, branch: str) -> str:
    """The description with a line that links the HTML report on the branch."""
    if not attached:
        line = ("The HTML report is not attached: install the report extra (`pip install 'agent-improver[report]'`) "
                "and run `improver pr` again, or make it with `improver report`.")
    else:
        url = git(repo, "remote", "get-url", "--end-of-options", remote, check=False).stdout.strip()
        match = re.match(r"^(?:https://github\.com/|git@github\.com:|ssh://git@github\.com/)([^/]+/[^/]+?)(?:\.git)?/?$", url)
        where = f"[`{path}`](https://github.com/{match.group(1)}/blob/{branch}/{path})" if match else f"`{path}`"
        line = (f"**Report:** {where} on this branch: the agreement curve, the confusion table, a card per proposal "
                "and the context graph around each precedent (one self-contained HTML file; download it and open it "
                "in a browser).")
    head, _, rest = description.partition("\n## Proposals")
    return f"{head}\n{line}\n\n## Proposals{rest}" if rest else f"{description}\n{line}\n"


def commit_patch(repo: Path, config_dir: Path, patch: str, base: str, message: str,
                 files: dict[str, str] | None = None) -> str:
    """A commit on top of commit ``base`` with the patch applied and ``files`` (repo-relative path ->
    text) added, built in a temporary index (the working tree is untouched)."""
    base = resolve_commit(repo, base)
    relative = config_dir.relative_to(repo).as_posix()
    directory = [] if relative == "." else [f"--directory={relative}"]
    with tempfile.TemporaryDirectory(prefix="improver-pr-") as folder:
        env = {"GIT_INDEX_FILE": str(Path(folder) / "index")}
        (Path(folder) / "patch.diff").write_text(patch, encoding="utf-8")
        git(repo, "read-tree", "--end-of-options", base, env=env)
        applied = git(repo, "apply", "--cached", *directory, "--", str(Path(folder) / "patch.diff"), env=env, check=False)
        if applied.returncode != 0:
            raise GitError(f"the experiment's patch does not apply to {relative} on {base}, which changed since the "
                           f"experiment was made: {applied.stderr.strip()}; nothing was changed. Run a new cycle on "
                           "the current config (`improver cycle`) and open a PR for its experiment")
        for path, text in (files or {}).items():
            (Path(folder) / "file").write_text(text, encoding="utf-8")
            blob = git(repo, "hash-object", "-w", str(Path(folder) / "file")).stdout.strip()
            git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        tree = git(repo, "write-tree", env=env).stdout.strip()
    return git(repo, "commit-tree", tree, "-p", base, "-m", message).stdout.strip()


def pct(value) -> str:
    return "–" if value is None else f"{value:.1%}"


def pts(value) -> str:
    return "–" if value is None else f"{value * 100:+.1f} pts"


def pr_title(experiment: Experiment, results: dict) -> str:
    n = len(experiment.manifest.proposals)
    return (f"improver {experiment.id}: {n} learned rule{'s' * (n != 1)} from reviewer overrides "
            f"(held-out agreement {pct(results['heldout']['agreement'])})")


def commit_message(experiment: Experiment, title: str) -> str:
    lines = [f"- {p.id}: {p.decision} when {p.condition}" for p in experiment.manifest.proposals]
    return f"{title}\n\nApplies experiments/{experiment.id}/patch.diff to the target's config.\n\n" + "\n".join(lines) + "\n"


def quoted_sessions(proposal: Proposal, sessions: dict[str, ReviewedSession]) -> list[str]:
    """Markdown quote lines: the reviewers' own words in the proposal's evidence sessions."""
    lines = []
    for session_id in proposal.evidence_sessions:
        session = sessions.get(session_id)
        if session is None or not session.human_reasoning.strip():
            continue
        words = session.human_reasoning.strip().replace("\n", "\n> ")
        lines.append(f"> {words}\n>\n> — {session.reviewer}, session `{session_id}` "
                     f"(agent: {session.agent_decision}, human: {session.human_decision})")
        if len(lines) == MAX_QUOTED_SESSIONS:
            break
    if len(lines) < MIN_QUOTED_SESSIONS:  # sessions no longer in the store: fall back to the mined quotes
        lines += [f"> {quote}" for quote in proposal.quotes[:MIN_QUOTED_SESSIONS - len(lines)]]
    return lines


def pr_description(experiment: Experiment, parent: Experiment | None, results: dict,
                   sessions: dict[str, ReviewedSession]) -> str:
    """The PR body: summary, proposals with evidence and effect, regressions, confusion table, reproduce."""
    manifest = experiment.manifest
    before = parent.results if parent else None
    change = results.get("change") or {}

    def agreement(split: str) -> str:
        now = results[split]
        was = f"{pct(before[split]['agreement'])} → " if before else ""
        return f"{was}{pct(now['agreement'])} ({now['agree']}/{now['sessions']} sessions, {pts(change.get(split))})"

    out = ["## Summary", "",
           f"Experiment `{experiment.id}` ({manifest.kind} experiment of cycle {manifest.cycle}, parent `{manifest.parent}`) "
           f"changes the target's config with {len(manifest.proposals)} proposals mined from human overrides.", "",
           f"- Agreement with the human reviewers on **held-out** sessions (never mined): {agreement('heldout')}",
           f"- On training sessions: {agreement('train')}",
           f"- {results.get('fixed', 0)} sessions fixed, {len(results.get('regressions', []))} regressions, "
           f"{results['errors']['count']} errors."]
    if manifest.guidance:
        out += ["", "Prompt guidance added:", ""] + [f"- {line}" for line in manifest.guidance]
    out += ["", "## Proposals"]
    effects = results.get("per_proposal", {})
    for p in manifest.proposals:
        effect = effects.get(p.id)
        measured = (f"train {effect['train']:+d}, held-out {effect['heldout']:+d} agreements "
                    f"(leave-one-out, {effect['sessions_matched']} sessions match)" if effect else "not measured")
        out += ["", f"### `{p.id}`: {p.decision} when {p.condition}", "",
                f"- Condition: `{p.condition}` → **{p.decision}** (precedent `{p.precedent}`, from {p.source})",
                f"- Evidence: {p.support} sessions, precision {p.precision:.0%} over all reviewed matches"
                + (f"; conflicts: {', '.join(p.conflicts[:10])}" if p.conflicts else "; no conflicts"),
                f"- Measured effect: {measured}", "", "Reviewers' own words:", ""]
        out += [line for quote in quoted_sessions(p, sessions) for line in (quote, "")][:-1] or ["(none recorded)"]
    out += ["", "## Regressions", ""]
    regressions = results.get("regressions", [])
    if regressions:
        out += ["| session | split | human | before | now |", "|---|---|---|---|---|"]
        out += [f"| `{r['session_id']}` | {r['split']} | {r['human']} | {r['before']} | {r['now']} |" for r in regressions]
    else:
        out.append("None: every session that agreed with the reviewer before still agrees.")
    out += ["", "## Confusion table (all reviewed sessions)", "",
            f"| agent | human | | before (`{manifest.parent}`) | after |", "|---|---|---|---|---|"]
    out += [f"| {agent} | {human} | {status} | {'–' if was is None else was} | {now} |"
            for agent, human, status, now, was in confusion_table(results)]
    out += ["", "## Reproduce", "", "```", results.get("reproduce", f"improver score {experiment.id}")]
    if manifest.parent:
        out.append(f"improver diff {manifest.parent} {experiment.id}")
    return "\n".join(out + ["```", ""])


# --- review ------------------------------------------------------------------------
@dataclass
class ReviewOutcome:
    experiment: str
    accepted: list[str]
    rejected: list[str]
    shipped: str | None = None  # the experiment holding exactly the accepted proposals
    results: dict | None = None


def review(ws: Workspace, experiment_id: str, accept: list[str], reject: list[str]) -> ReviewOutcome:
    """Record a decision on every proposal; the accepted ones ship in a rerun, rescored experiment.

    All accepted: the experiment itself is accepted. None: it is rejected. Some: a child
    holding only those is made, rerun and rescored, and accepted in the experiment's place."""
    experiment = ws.experiments.get(experiment_id)
    ids = [p.id for p in experiment.manifest.proposals]
    if not ids:
        raise ExperimentError(f"{experiment.id} has no proposals to review")
    unknown = sorted((set(accept) | set(reject)) - set(ids))
    both = sorted(set(accept) & set(reject))
    undecided = [i for i in ids if i not in accept and i not in reject]
    if unknown:
        raise ExperimentError(f"{experiment.id} has no proposal {', '.join(unknown)}; its proposals are {', '.join(ids)}")
    if both:
        raise ExperimentError(f"{', '.join(both)} both accepted and rejected; decide each proposal once")
    if undecided:
        raise ExperimentError(f"no decision on {', '.join(undecided)}: pass --accept or --reject for each "
                              f"proposal of {experiment.id}, or run `improver review {experiment.id}` in a terminal")
    accepted = [i for i in ids if i in accept]
    rejected = [i for i in ids if i in reject]
    outcome = ReviewOutcome(experiment.id, accepted, rejected)
    if not accepted:
        experiment.set_status("rejected", "every proposal rejected in review")
        return outcome
    if not rejected:
        experiment.set_status("accepted", "every proposal accepted in review")
        outcome.shipped, outcome.results = experiment.id, ws.score(experiment)
        return outcome
    child = ws.subset(experiment, accepted, kind="review")
    outcome.shipped, outcome.results = child.id, ws.score(child)
    child.set_status("accepted", f"proposals accepted in review of {experiment.id}: {', '.join(accepted)}")
    experiment.set_status("rejected", f"partly accepted: {len(accepted)} of {len(ids)} proposals ship in {child.id}")
    return outcome


# --- log and diff ------------------------------------------------------------------
def mark_merged(ws: Workspace) -> list[str]:
    """Mark as merged every experiment whose config is now the target's own config (a
    merged PR, squashed or not, or a hand copy); returns their ids."""
    shipped = tree_hash(read_tree(ws.project.base_config_dir))
    merged = []
    for e in ws.experiments.all():
        if e.manifest.proposals and e.manifest.config_hash == shipped and e.status != "merged":
            e.set_status("merged", "its config is now the target's config")
            merged.append(e.id)
    return merged


def log(ws: Workspace) -> list[dict]:
    """Every experiment, parents before children (depth-first), with scores and status."""
    mark_merged(ws)
    experiments = ws.experiments.all()
    known = {e.id for e in experiments}
    children: dict[str | None, list[Experiment]] = {}
    for e in experiments:
        children.setdefault(e.manifest.parent if e.manifest.parent in known else None, []).append(e)
    rows: list[dict] = []

    def visit(parent: str | None, depth: int) -> None:
        for e in children.get(parent, []):
            results = e.results or {}
            rows.append({
                "experiment": e.id, "parent": e.manifest.parent, "depth": depth, "kind": e.manifest.kind,
                "cycle": e.manifest.cycle, "derived_from": e.manifest.mining.get("derived_from"),
                "status": e.status, "proposals": [p.id for p in e.manifest.proposals],
                "train": (results.get("train") or {}).get("agreement"),
                "heldout": (results.get("heldout") or {}).get("agreement"),
                "kappa": (results.get("heldout") or {}).get("kappa"),
                "all": (results.get("all") or {}).get("agreement"),
                "change_heldout": (results.get("change") or {}).get("heldout"),
                "cv": (results.get("cv") or {}).get("agreement"),
                "cv_low": (results.get("cv") or {}).get("low"), "cv_high": (results.get("cv") or {}).get("high"),
                "cv_change": (results.get("cv") or {}).get("change"),
                "regressions": len(results["regressions"]) if "regressions" in results else None,
                "scored": bool(results)})
            visit(e.id, depth + 1)
    visit(None, 0)
    return rows


def diff(ws: Workspace, a: str, b: str) -> dict:
    """What changed from experiment ``a`` to ``b``: config diff and, per session, the decision changes."""
    first, second = ws.experiments.get(a), ws.experiments.get(b)
    before, after = ws.run(first), ws.run(second)
    changed = []
    for s in ws.require_sessions():
        was, now = before[s.session_id]["decision"], after[s.session_id]["decision"]
        if was != now:
            changed.append({"session_id": s.session_id, "split": ws.split(s.session_id), "human": s.human_decision,
                            "before": was, "now": now, "agrees_now": now == s.human_decision,
                            "agreed_before": was == s.human_decision})
    return {"a": first.id, "b": second.id,
            "config_diff": unified_diff(read_tree(first.config_dir), read_tree(second.config_dir)),
            "sessions": changed,
            "fixed": sum(1 for c in changed if c["agrees_now"]),
            "broken": sum(1 for c in changed if c["agreed_before"]),
            "still_wrong": sum(1 for c in changed if not c["agrees_now"] and not c["agreed_before"])}
