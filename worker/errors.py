"""Errors of the job core that callers show as they are (the CLI and the HTTP API translate them once)."""

from __future__ import annotations


class JobError(Exception):
    """A job cannot run as asked (bad reference, missing folder)."""
