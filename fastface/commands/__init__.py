"""Sub-commands of the `fastface` CLI, one module per feature area (see fastface.cli)."""
