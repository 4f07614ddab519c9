"""`python -m edge_package run --source ... --config ...` (see edge_package.cli)."""

from edge_package.cli import main

raise SystemExit(main())
