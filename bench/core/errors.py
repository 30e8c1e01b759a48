"""Errors that the CLI turns into a one-line message and a non-zero exit code."""


class BenchError(Exception):
    """A failure the user can fix; the message says how. Exit code 1."""

    exit_code = 1


class InputError(BenchError):
    """Bad input (unknown name, invalid value). Exit code 2; nothing is written."""

    exit_code = 2


def unknown_name(kind: str, name: str, known: list[str]) -> InputError:
    """Error for an unknown registry name that lists the valid names."""
    return InputError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(known))}")
