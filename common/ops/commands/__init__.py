"""The ``jenga`` commands, one module per area; :mod:`common.ops.cli` parses the command
line and calls them."""
