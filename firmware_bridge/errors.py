"""Errors that reach the user as one clear line (exit code 2: bad usage or bad input; 1: the machine failed)."""


class InputError(Exception):
    """Bad input or configuration: a missing file, an unparsable DBC, an unknown config key.

    The message names the file, line or field; the command line prints it alone and exits with 2.
    """


class RunError(Exception):
    """Not the user's input but the machine: a spool that cannot be opened (disk full, I/O error).

    The command line prints the message alone and exits with 1.
    """
