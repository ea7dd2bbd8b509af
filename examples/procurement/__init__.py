"""The bundled procurement example: a LangGraph procurement agent, a request generator,
the simulated reviewer Vera Fye and a trace simulator (see README.md)."""
