"""``python -m remotetables``: the same CLI as the ``remotetables`` command."""

from __future__ import annotations

from remotetables.cli import main

if __name__ == "__main__":
    main(prog_name="remotetables")
