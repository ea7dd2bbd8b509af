"""improver's MCP server: the loop's stages as tools with structured output, experiments as resources."""
from improver.mcp.server import TOOL_NAMES, build_server, parse_address

__all__ = ["TOOL_NAMES", "build_server", "parse_address"]
