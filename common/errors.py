"""One error type for bad input (parameters, data roots, checkpoints).

Library code raises `ConfigError` with a single line naming the field or file and what was
expected; the command-line entry points catch it, print that line and exit with code 2.
"""
from __future__ import annotations

from contextlib import contextmanager


class ConfigError(ValueError):
    """Bad user input: a parameter, a data root, a checkpoint of the wrong kind."""


EXIT_BAD_INPUT = 2


@contextmanager
def settings_of(where: str):
    """Building something from the settings at `where` (e.g. `cq.simclr`): an error it raises is
    one ConfigError that names `where`, also an exception from inside torch (a negative size, a
    value of the wrong kind), since a bad setting is what makes a constructor fail."""
    try:
        yield
    except ConfigError as err:
        message = str(err)
        if message.startswith(where):
            raise
        raise ConfigError(f"{where}: {message}") from None
    except (TypeError, ValueError, RuntimeError) as err:
        message = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"{where}: {type(err).__name__}: {message}") from None
