"""Errors the CLI prints as one line, without a traceback: those a user can cause, and a source that cannot be read."""


class UserError(Exception):
    """A problem with the command line, the input or the environment that the user can fix; says how."""


class JobFailed(Exception):
    """The job ran but its result was refused (e.g. too many bad inputs); nothing was published. Exit code 1."""


class SourceReadError(Exception):
    """Reading a source file failed (a reset connection, a timeout, a denied or vanished file), not its content.

    No verdict on the file's records: never a dead letter. In a worker it fails the bundle, which the runner
    retries; in the launcher it ends the command (exit code 1) before anything is written. Deliberately no
    ``OSError``: handlers of damaged content (pyarrow and tarfile report some damage as ``OSError``) let it pass.
    """
