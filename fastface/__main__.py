"""`python -m fastface` is the `fastface` command."""

from .cli import main

raise SystemExit(main())
