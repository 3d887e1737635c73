"""Errors a user can cause; the CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """A problem with the command line, the input or the environment that the user can fix; says how."""


class JobFailed(Exception):
    """The job ran but its result was refused (e.g. too many bad inputs); nothing was published. Exit code 1."""
