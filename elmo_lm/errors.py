"""The one exception type that carries a message meant for the user."""


class ElmoError(Exception):
    """A problem with the user's input (a file, a line, a key): the CLI prints it without a traceback."""
