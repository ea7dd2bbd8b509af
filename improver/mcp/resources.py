"""MCP resources: an experiment's manifest, report, results and patch."""
from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from improver.errors import ImproverError
from improver.mcp.server import ImproverTools


def register(server: MCPServer, tools: ImproverTools) -> None:
    ws = tools.workspace

    def experiment_file(experiment_id: str, name: str) -> str:
        try:
            path = ws.experiments.get(experiment_id).path / name
        except ImproverError as error:
            raise ResourceError(str(error)) from error
        if not path.exists():
            raise ResourceError(f"{experiment_id} has no {name} yet: run score_experiment {experiment_id} first")
        return path.read_text(encoding="utf-8")

    @server.resource("improver://experiments/{experiment_id}/manifest", mime_type="application/yaml")
    def experiment_manifest(experiment_id: str) -> str:
        """An experiment's manifest.yaml: proposals with their evidence sessions and expected effect."""
        return experiment_file(experiment_id, "manifest.yaml")

    @server.resource("improver://experiments/{experiment_id}/report", mime_type="text/markdown")
    def experiment_report(experiment_id: str) -> str:
        """An experiment's mining report (report.md)."""
        return experiment_file(experiment_id, "report.md")

    @server.resource("improver://experiments/{experiment_id}/results", mime_type="application/json")
    def experiment_results(experiment_id: str) -> str:
        """An experiment's scores (results.json), once scored."""
        return experiment_file(experiment_id, "results.json")

    @server.resource("improver://experiments/{experiment_id}/patch", mime_type="text/x-diff")
    def experiment_patch(experiment_id: str) -> str:
        """An experiment's unified diff against the target's base config (patch.diff)."""
        return experiment_file(experiment_id, "patch.diff")
