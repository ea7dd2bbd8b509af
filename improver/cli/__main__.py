"""``python -m improver.cli``."""
from improver.cli.app import main

main()
