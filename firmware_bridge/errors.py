"""Errors that reach the user as one clear line (exit code 2: bad usage or bad input)."""


class InputError(Exception):
    """Bad input or configuration: a missing file, an unparsable DBC, an unknown config key.

    The message names the file, line or field; the command line prints it alone and exits with 2.
    """
