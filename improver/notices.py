"""Plain-words notes on a scored experiment: cases the agent raised on, and proposals that changed nothing.

They ride in the experiment's results (``notices``), so the CLI prints them and MCP clients read them.
"""
from __future__ import annotations

UNCHANGED = ("no decision changed from {parent}: does your agent read the learned rules? Call "
             "improver.runtime.load_overlay(config_dir).match(case) first in decide(), or read "
             "learned_rules.yaml from the config folder it is given")


def notices(results: dict, proposals: int) -> list[str]:
    """What a person should know about these scores, one sentence each."""
    found = []
    errors, total = results["errors"]["count"], results["all"]["sessions"]
    if errors:
        examples = results["errors"].get("examples") or []
        found.append(f"{errors} of {total} cases raised" + (f": {examples[0]}" if examples else "")
                     + (f" (and {len(examples) - 1} other kinds of error)" if len(examples) > 1 else "")
                     + f"; `improver score {results['experiment']} --json` lists the sessions")
    if results.get("parent") and proposals and results.get("changed") == 0:
        found.append(UNCHANGED.format(parent=results["parent"]))
    return found
