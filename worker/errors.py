"""Errors of the job core that callers show as they are (the CLI and the HTTP API translate them once)."""

from __future__ import annotations

from convlens.ml.errors import ConvlensError


class JobError(ConvlensError):
    """A job cannot run as asked (bad reference, missing folder)."""


class JobNotFound(JobError):
    http_status = 404


class AlreadyFinished(JobError):
    """A cancel of a job that has ended (and left nothing running): nothing was changed."""

    http_status = 409


class AmbiguousId(JobError):
    """A short id that more than one job's id starts with."""


class QuotaExceeded(ConvlensError):
    """A token already has as many unfinished jobs as its quota allows."""

    http_status = 429
