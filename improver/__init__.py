"""improver: make AI agents agree with the humans who review them.

The loop as a library: ``improver.workspace.Workspace`` runs its stages, ``improver.cycle``
runs whole cycles, ``improver.runtime.load_overlay`` is what a target agent imports.
"""
__version__ = "0.1.0"
