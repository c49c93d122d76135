"""Reads of personal data over HTTP: the rule and the record live in the service layer
(`cityshare.identity.access`), which every door calls; here a refusal becomes its answer."""

from __future__ import annotations

from cityshare.api.errors import ApiError
from cityshare.identity.access import ReadRefused


def read_refused(exc: ReadRefused) -> ApiError:
    """403 for what the credential lacks, 404 for what is out of its reach (or missing)."""
    return ApiError(exc.status, exc.code, str(exc))
