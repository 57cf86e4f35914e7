"""``python -m remotetables.cli``."""

from remotetables.cli.main import main

main()
