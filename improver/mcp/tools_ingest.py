"""MCP tool for the ingest stage: trace files into the project's store."""
from __future__ import annotations

from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer

from improver.mcp.models import IngestResult
from improver.mcp.server import ADDITIVE, ImproverTools, tool


def register(server: MCPServer, tools: ImproverTools) -> None:
    ws = tools.workspace

    @tool(server, ADDITIVE)
    async def ingest_traces(source: str, ctx: Context) -> IngestResult:
        """Read agent decisions and human reviews from a trace file (native JSONL) into the project's store.
        `source` is a path relative to the project folder (or a URL for URL-based sources). Ingest is idempotent:
        events already stored are counted as duplicates; bad lines are quarantined with a reason."""
        def work() -> IngestResult:
            spec = source if "://" in source else str(tools.project.inside(Path(source)))
            report = ws.ingest(spec).as_dict()
            return IngestResult(**report, reviewed_sessions=len(ws.sessions))
        return await tools.call(work, ctx)
