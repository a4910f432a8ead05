"""One error type for bad input (parameters, data roots, checkpoints).

Library code raises `ConfigError` with a single line naming the field or file and what was
expected; the command-line entry points catch it, print that line and exit with code 2.
"""


class ConfigError(ValueError):
    """Bad user input: a parameter, a data root, a checkpoint of the wrong kind."""


EXIT_BAD_INPUT = 2
