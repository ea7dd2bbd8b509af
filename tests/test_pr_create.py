"""`improver pr`: a branch with the experiment's patch, a PR description with the evidence, clean refusals."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from improver.errors import ExperimentError
from improver.experiments import read_tree
from improver.review import GitError, create_pr, gh_ready, report_link
from improver.workspace import Workspace
from pr_helpers import git, git_env, repo, scored_project, snapshot  # noqa: F401 (fixtures)

CYCLE = "0002-cycle-1"


def branch_tree(repo, ref: str, folder: str = "config") -> dict[str, str]:
    names = git(repo, "ls-tree", "-r", "--name-only", ref, "--", folder).splitlines()
    return {name[len(folder) + 1:]: subprocess.run(["git", "-C", str(repo), "show", f"{ref}:{name}"], check=True,
                                                   capture_output=True, text=True).stdout for name in names}


def test_pr_commits_the_patch_on_a_branch_and_leaves_the_working_tree_alone(repo):
    before = snapshot(repo)
    ws = Workspace(repo)
    pr = create_pr(ws, CYCLE)

    assert pr.branch == f"improver/{CYCLE}" and pr.base == "main" and not pr.pushed and pr.url is None
    assert git(repo, "rev-parse", pr.branch) == pr.commit
    assert git(repo, "rev-parse", f"{pr.branch}^") == before["head"]
    assert branch_tree(repo, pr.branch) == read_tree(ws.experiments.get(CYCLE).config_dir)
    assert CYCLE in git(repo, "log", "-1", "--format=%B", pr.branch)
    after = snapshot(repo)
    after["status"] = after["status"].replace(f"?? .improver/pr-{CYCLE}.md\n", "")
    assert {k: v for k, v in after.items() if k != "branches"} == {k: v for k, v in before.items() if k != "branches"}
    assert git(repo.parent / "remote.git", "branch", "--list") == ""  # gh absent: nothing pushed


def test_pr_without_gh_prints_commands_that_push_the_branch(repo):
    assert not gh_ready()
    pr = create_pr(Workspace(repo), CYCLE)
    push, open_pr = pr.commands
    assert pr.description_file.read_text(encoding="utf-8") == pr.description
    assert f"--body-file {pr.description_file}" in open_pr and "--base main" in open_pr
    subprocess.run(shlex.split(push), check=True, capture_output=True)
    assert git(repo.parent / "remote.git", "rev-parse", pr.branch) == pr.commit


def test_pr_push_without_gh_pushes_and_leaves_only_the_pr_command(repo):
    pr = create_pr(Workspace(repo), CYCLE, push=True)
    assert pr.pushed and len(pr.commands) == 1 and "gh pr create" in pr.commands[0]
    assert git(repo.parent / "remote.git", "rev-parse", pr.branch) == pr.commit


def test_pr_description_cites_reviewers_words_effects_and_reproduction(repo):
    ws = Workspace(repo)
    experiment = ws.experiments.get(CYCLE)
    results = experiment.results
    text = create_pr(ws, CYCLE).description
    words = {s.session_id: s.human_reasoning for s in ws.sessions}
    for proposal in experiment.manifest.proposals:
        section = text.split(f"### `{proposal.id}`")[1].split("### ")[0]
        assert proposal.condition in section
        cited = [sid for sid in proposal.evidence_sessions if f"session `{sid}`" in section]
        assert len(cited) >= 3
        assert all(words[sid] in section for sid in cited)
        effect = results["per_proposal"][proposal.id]
        assert f"train {effect['train']:+d}, held-out {effect['heldout']:+d}" in section
    for heading in ("## Summary", "## Regressions", "## Confusion table", "## Reproduce"):
        assert heading in text
    assert results["reproduce"] in text
    for row in results["confusion"]:
        assert f"| {row['agent']} | {row['human']} |" in text


def test_pr_puts_the_html_report_on_the_branch_and_links_it_from_the_description(repo):
    pr = create_pr(Workspace(repo), CYCLE)
    page = git(repo, "show", f"{pr.branch}:reports/{CYCLE}.html")
    assert page.startswith("<!DOCTYPE html>") and f"<code>{CYCLE}</code>" in page and "<svg" in page
    assert f"**Report:** `reports/{CYCLE}.html` on this branch" in pr.description
    assert pr.description.index("**Report:**") < pr.description.index("## Proposals")
    assert not (repo / "reports").exists()  # on the branch only; the working tree is untouched


def test_pr_without_the_report_extra_opens_without_the_report_and_says_how_to_add_it(repo, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if matplotlib were not installed
    monkeypatch.delitem(sys.modules, "improver.report.charts", raising=False)
    pr = create_pr(Workspace(repo), CYCLE)
    assert "HTML report is not attached: install the report extra" in pr.description
    assert git(repo, "ls-tree", "-r", "--name-only", pr.branch, "--", "reports") == ""


def test_pr_report_link_points_at_the_branch_on_github(repo):
    git(repo, "remote", "set-url", "origin", "git@github.com:acme/procurement-agent.git")
    linked = report_link("## Summary\n\nok\n\n## Proposals\n", "reports/x.html", True, repo, "origin", "improver/x")
    assert "[`reports/x.html`](https://github.com/acme/procurement-agent/blob/improver/x/reports/x.html)" in linked


def test_pr_with_gh_logged_in_pushes_and_opens_the_pr(repo, git_env, tmp_path):
    calls = tmp_path / "gh-calls.jsonl"
    (git_env / "gh").write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1:3] == ['pr', 'create']:\n"
        "    print('https://github.example/acme/procurement/pull/7')\n")
    (git_env / "gh").chmod(0o755)
    pr = create_pr(Workspace(repo), CYCLE)

    assert pr.pushed and pr.url == "https://github.example/acme/procurement/pull/7" and pr.commands == []
    assert git(repo.parent / "remote.git", "rev-parse", pr.branch) == pr.commit
    args = [json.loads(line) for line in calls.read_text().splitlines()]
    assert args[0] == ["auth", "status"]
    assert args[1][:2] == ["pr", "create"] and args[1][args[1].index("--head") + 1] == pr.branch


def test_pr_push_failure_removes_the_branch_again(repo):
    git(repo, "remote", "set-url", "origin", str(repo.parent / "no-such-remote.git"))
    before = snapshot(repo)
    with pytest.raises(GitError, match="push"):
        create_pr(Workspace(repo), CYCLE, push=True)
    assert snapshot(repo) == before


def test_pr_refuses_a_dirty_working_tree(repo):
    policy = repo / "config" / "policy.yaml"
    policy.write_text(policy.read_text() + "# local edit\n")
    before = snapshot(repo)
    with pytest.raises(GitError, match="uncommitted changes.*policy.yaml"):
        create_pr(Workspace(repo), CYCLE)
    assert snapshot(repo) == before


def test_pr_refuses_untracked_files_in_the_config(repo):
    (repo / "config" / "extra.yaml").write_text("x: 1\n")
    before = snapshot(repo)
    with pytest.raises(GitError, match="uncommitted changes.*extra.yaml"):
        create_pr(Workspace(repo), CYCLE)
    assert snapshot(repo) == before


def test_pr_refuses_a_missing_remote(repo):
    git(repo, "remote", "remove", "origin")
    before = snapshot(repo)
    with pytest.raises(GitError, match="no remote 'origin'.*git .*remote add origin"):
        create_pr(Workspace(repo), CYCLE)
    assert snapshot(repo) == before


def test_pr_no_push_needs_no_remote(repo):
    git(repo, "remote", "remove", "origin")
    pr = create_pr(Workspace(repo), CYCLE, push=False)
    assert not pr.pushed and git(repo, "rev-parse", pr.branch) == pr.commit
    assert pr.commands[0].startswith("git -C") and "push --set-upstream origin" in pr.commands[0]


def test_pr_refuses_an_existing_branch(repo):
    git(repo, "branch", f"improver/{CYCLE}")
    before = snapshot(repo)
    with pytest.raises(GitError, match="already exists"):
        create_pr(Workspace(repo), CYCLE)
    assert snapshot(repo) == before


def test_pr_refuses_a_patch_that_conflicts_with_the_committed_config(repo):
    (repo / "config" / "learned_rules.yaml").write_text("rules: []\n")
    git(repo, "add", "config/learned_rules.yaml")
    git(repo, "commit", "-q", "-m", "hand-written rules")
    before = snapshot(repo)
    with pytest.raises(GitError, match="does not apply.*nothing was changed"):
        create_pr(Workspace(repo), CYCLE)
    assert snapshot(repo) == before


def test_pr_refuses_a_config_outside_git(scored_project, git_env):
    with pytest.raises(GitError, match="not in a git repository"):
        create_pr(Workspace(scored_project), CYCLE)


def test_pr_refuses_an_experiment_without_changes(repo):
    with pytest.raises(ExperimentError, match="nothing to review"):
        create_pr(Workspace(repo), "0001-baseline")


def test_pr_command_prints_description_and_commands_and_errors_exit_2(repo):
    command = [sys.executable, "-m", "improver.cli", "pr", CYCLE, "--project", str(repo)]
    shown = subprocess.run(command, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "## Proposals" in shown.stdout
    assert f"git -C {repo} push --set-upstream origin improver/{CYCLE}" in shown.stdout
    assert "gh pr create --base main" in shown.stdout
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 2 and "error:" in again.stderr and "already exists" in again.stderr
