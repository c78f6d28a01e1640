"""The `ct` command line by command group; `ct_assets.cli` assembles the parser and runs it.

Each module has one `register(commands)` that adds its sub-commands to the parser; a command
function takes the parsed arguments and returns the exit code, or raises `CliError` with the one
line the operator sees.
"""
