"""The one base class of partnercheck's own errors.

Every error whose message is written for users (a bad source, model, rules file, config,
output or training set) derives from :class:`PartnercheckError`, so the command line turns
any of them into one line on stderr and exit code 1, and anything else is a bug.
"""


class PartnercheckError(Exception):
    """An error whose message says what is wrong and how to fix it."""
