"""MCP tool that makes the project when the served folder has none (``improver init``)."""
from __future__ import annotations

from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from improver.mcp.models import InitResult
from improver.mcp.server import CREATES, ImproverTools, tool


def register(server: MCPServer, tools: ImproverTools) -> None:

    @tool(server, CREATES, "Make an improver project")
    async def init_project(
            traces: Annotated[str | None, Field(description="a trace file inside the folder; entity fields, bands and "
                                                            "decision labels are proposed from its data")] = None,
            agent: Annotated[Literal["callable", "command"], Field(
                description="the agent stub: a decide(case, config_dir) function, or a program reading JSONL")] = "callable",
            entity_fields: Annotated[list[str] | None, Field(description="case fields that name entities")] = None,
            decisions: Annotated[list[str] | None, Field(description="the decision labels")] = None) -> InitResult:
        """Scaffold an improver project in the served folder when it has no improver.yaml: improver.yaml, config/,
        an agent stub my_agent.py that reads the learned rules, and .gitignore. Existing files are kept; an existing
        improver.yaml is never replaced."""
        from improver.init import init_project as scaffold

        def work() -> InitResult:
            source = None
            if traces is not None:
                source = (tools.root / traces).resolve()
                if tools.root not in source.parents:
                    raise ToolError(f"{traces} is outside the project folder {tools.root}; use a path inside it")
            result = scaffold(tools.root, agent=agent, entity_fields=entity_fields, decisions=decisions, traces=source)
            data = result.as_dict()
            return InitResult(**data, next=f"put your agent into my_agent.py (keep its overlay lines), then "
                                           f"ingest_traces {traces or 'TRACES.jsonl'} and run_cycle")
        return await tools.call(work)
