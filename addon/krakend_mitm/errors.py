"""Errors shared by the stages. Each carries the JSON path of what it is about."""


class ConfigError(Exception):
    """A config KrakenD would refuse to run (or crash on). `path` is a JSON path like
    `endpoints[3].backend[0].url_pattern`; `message` uses KrakenD's own wording where it has one."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def describe(error: ConfigError, file: str) -> str:
    """The one line a user sees: KrakenD's `'<file>': <message>`, plus where in the file."""
    where = f" (at {error.path})" if error.path else ""
    return f"'{file}': {error.message}{where}"


class BackendError(Exception):
    """A backend call failed before a usable response arrived (connect, TLS, protocol, timeout).
    The text follows Go's net/http wording where we can, e.g.
    `Get "http://127.0.0.1:9/x": dial tcp 127.0.0.1:9: connect: connection refused`."""
