"""Errors meant for the user: the CLI prints the message as one sentence and exits non-zero.

Exit codes, one per kind of trouble, so scripts can tell them apart:
  2  bad input: a flag, a config, a refused resume (`UserError`)
  3  this machine or cluster cannot run the job: a model, a key or resources missing (`NotReady`)
  4  the disk is full
  5  permission denied
  6  a source (manifest, folder) that cannot be read as one (`BadSource`)
  130 / 143  stopped by SIGINT / SIGTERM (committed shards are kept; the same command resumes)
"""

from __future__ import annotations

import errno

EXIT_DISK_FULL = 4
EXIT_PERMISSION = 5
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class UserError(Exception):
    """Bad input from the user (a missing source, a wrong flag value, a refused resume)."""

    exit_code = 2


class NotReady(UserError):
    """A stage cannot start here: a model is missing, a key unset, the cluster too small."""

    exit_code = 3


class BadSource(UserError):
    """A source that cannot be read as one: a manifest that is not JSONL / Parquet, a missing column."""

    exit_code = 6


class Stopped(Exception):
    """SIGINT or SIGTERM: the run stopped submitting work and ended cleanly."""

    def __init__(self, signum: int, shards: int):
        import signal

        self.signum = signum
        self.exit_code = EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT
        name = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"
        super().__init__(f"stopped by {name} after {shards} shard commits; run the same command to resume")


def os_error_message(err: OSError) -> tuple[str, int] | None:
    """One sentence and an exit code for the OS errors a user can fix, else None."""
    where = f" ({err.filename})" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full{where}; free some space (or use another --dataset) and run the same command " \
               "again: committed shards are kept", EXIT_DISK_FULL
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied{where}; make the folder writable by this user or choose another one, " \
               "then run the same command again", EXIT_PERMISSION
    return None
