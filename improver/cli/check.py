"""``improver check``: the CI gate on agreement (over ``improver.check``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from improver.cli.app import app, ProjectOption, console, workspace


@app.command("check")
def check_command(project: Path = ProjectOption,
                  margin: float = typer.Option(0.0, help="Allowed drop in agreement, as a share (0.02 = 2 points)."),
                  split: str = typer.Option("all", help="Split to gate on: all, train or heldout."),
                  against: Optional[str] = typer.Option(None, help="Experiment to compare with (default: the last "
                                                                       "accepted or merged one)."),
                  junit: Optional[Path] = typer.Option(None, help="Write a JUnit XML report here."),
                  summary: Optional[Path] = typer.Option(None, help="Write a Markdown summary here "
                                                                    "(e.g. \"$GITHUB_STEP_SUMMARY\").")):
    """Rerun the target's current config; exit 1 when agreement falls below the accepted experiment's by more than --margin."""
    from improver.check import junit_xml, markdown, verdict

    with workspace(project) as ws:
        outcome = ws.check(margin=margin, split=split, against=against)
    for path, render in ((junit, junit_xml), (summary, markdown)):
        if path:
            text = render(outcome)
            ws.leak_scan.check(text, f"the check report {path}")  # CI shows it: no unmasked personal data
            path.write_text(text, encoding="utf-8")
    console.print(verdict(outcome), markup=False, highlight=False, soft_wrap=True)
    for r in outcome.regressions[:50]:
        console.print(f"  regressed {r['session_id']} ({r['split']}): human {r['human']}, "
                      f"accepted {r['before']}, now {r['now']}", markup=False, highlight=False)
    if len(outcome.regressions) > 50:
        console.print(f"  and {len(outcome.regressions) - 50} more")
    if not outcome.passed:
        raise typer.Exit(1)
