"""Importing authenticators from the systems sites move off: google-authenticator-libpam,
pam_oath and Zimbra. Each source module reads its own format into ``Candidate`` values
(or ``Problem`` values, one per user it could not read); ``twostep import`` sends each
candidate to twostepd, which matches it to a directory user and writes it in one modify.
"""

from ..core.candidate import Candidate, LegacyPasscode, Problem

__all__ = ["Candidate", "LegacyPasscode", "Problem"]
