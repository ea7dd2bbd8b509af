"""MCP prompts: the skills' instructions as prompts a client can offer its user (improve-agent, review-proposal)."""
from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from improver.mcp.server import ImproverTools


def skill_text(name: str) -> str:
    """A skill's instructions without its YAML frontmatter."""
    from improver.bundled import bundled

    text = (bundled("skills") / name / "SKILL.md").read_text(encoding="utf-8")
    return text.split("---", 2)[2].strip() if text.startswith("---") else text


def register(server: MCPServer, tools: ImproverTools) -> None:

    @server.prompt("improve-agent", title="Improve the agent from its reviews")
    def improve_agent() -> str:
        """Run improvement cycles on this project with improver's tools and report what was learned."""
        return ("Improve this project's agent from its human reviews with the improver tools, then report the "
                "agreement cycle by cycle and the proposals worth a human's review.\n\n" + skill_text("improvement-cycle"))

    @server.prompt("review-proposal", title="Review an experiment's proposals")
    def review_proposal(experiment_id: Annotated[str, Field(description="the experiment to review, e.g. 0002-cycle-1")]) -> str:
        """Walk a human through an experiment's proposals, with their evidence, before recording a decision."""
        return (f"Help me review the proposals of experiment {experiment_id}.\n\n" + skill_text("review-proposal"))
