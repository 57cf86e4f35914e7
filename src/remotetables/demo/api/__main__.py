"""``python -m remotetables.demo.api``: serve the demo incidents API."""

from remotetables.demo.api.server import main

raise SystemExit(main())
