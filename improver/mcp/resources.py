"""MCP resources: an experiment's manifest, report, results and patch.

They are templates (``improver://experiments/{id}/manifest`` …), and resources/list names each
file of every experiment folder as it is when the client asks.
"""
from __future__ import annotations

from functools import partial

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.resources import FunctionResource
from mcp.server.mcpserver.exceptions import ResourceError

from improver.errors import ImproverError
from improver.mcp.server import ImproverTools


# (resource name, file, MIME type, what it holds)
FILES = (("manifest", "manifest.yaml", "application/yaml", "proposals with their evidence sessions and expected effect"),
         ("report", "report.md", "text/markdown", "the mining report"),
         ("results", "results.json", "application/json", "scores against the humans"),
         ("patch", "patch.diff", "text/x-diff", "unified diff against the target's base config"))


def register(server: MCPServer, tools: ImproverTools) -> None:
    ws = tools.workspace
    list_registered = server.list_resources

    def add_experiment_files() -> None:
        try:
            experiments = ws.experiments.all()
        except ImproverError:  # no project yet: nothing to list
            return
        for experiment in experiments:
            for name, file, mime, what in FILES:
                if (experiment.path / file).exists():
                    server.add_resource(FunctionResource(
                        uri=f"improver://experiments/{experiment.id}/{name}", name=f"{experiment.id}/{name}",
                        title=f"{experiment.id} {name}", description=f"{experiment.id}: {what} ({file})", mime_type=mime,
                        fn=partial(experiment_file, experiment.id, file)))

    async def list_resources():
        await anyio.to_thread.run_sync(add_experiment_files)
        return await list_registered()

    server.list_resources = list_resources  # resources/list names the experiments on disk now

    def experiment_file(experiment_id: str, name: str) -> str:
        try:
            path = ws.experiments.get(experiment_id).path / name
        except ImproverError as error:
            raise ResourceError(str(error)) from error
        if not path.exists():
            raise ResourceError(f"{experiment_id} has no {name} yet: run score_experiment {experiment_id} first")
        text = path.read_text(encoding="utf-8")
        try:
            ws.leak_scan.check(text, f"experiments/{experiment_id}/{name}")
        except ImproverError as error:
            raise ResourceError(str(error)) from error
        return text

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
