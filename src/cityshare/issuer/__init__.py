"""The reference identity issuer (the stand-in for the national identity authority).

It keeps its own files and database; the platform never reads them and only ever sees the
signed enrolment assertions it hands out (`cityshare.identity.assertion`).
"""

from cityshare.issuer.service import DEFAULT_NAME, Enrolment, Issuer, IssuerError, VidRecord

__all__ = ["DEFAULT_NAME", "Enrolment", "Issuer", "IssuerError", "VidRecord"]
