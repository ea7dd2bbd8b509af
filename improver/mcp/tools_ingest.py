"""MCP tool for the ingest stage: trace files into the project's store."""
from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from improver.mcp.models import IngestResult
from improver.mcp.server import ADDITIVE, ImproverTools, tool


def register(server: MCPServer, tools: ImproverTools) -> None:
    ws = tools.workspace

    @tool(server, ADDITIVE)
    async def ingest_traces(source: Annotated[str, Field(description="a trace file inside the project folder, or a remote "
                                                                     "source named in improver.yaml (sources.remote)")],
                            ctx: Context) -> IngestResult:
        """Read agent decisions and human reviews from a trace file (native JSONL, OpenInference or OTLP spans,
        Arize annotations, LangSmith or Langfuse exports; see docs/traces.md) into the project's store;
        annotations join their spans across files and ingests.
        `source` is a path inside the project folder, or a remote source named in improver.yaml
        (sources.remote). Ingest is idempotent:
        events already stored are counted as duplicates; bad lines are quarantined with a reason."""
        def work() -> IngestResult:
            report = ws.ingest(tools.project.untrusted_source(source)).as_dict()
            return IngestResult(**report, reviewed_sessions=len(ws.sessions))
        return await tools.call(work, ctx)
