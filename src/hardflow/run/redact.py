"""Keep credentials that sit in URLs out of what ``hardflow run`` prints.

A database or broker URL carries its password in the userinfo part (``scheme://user:pw@host``).
Engine output, container logs and HTTP errors may hold such URLs; every message the run package
builds from text it did not write goes through :func:`redact_userinfo` first.

The in-image scripts (``hardflow/image/entrypoint.py`` and ``health.py``) cannot import this
module and carry their own copy of the same rule.
"""

from __future__ import annotations

import re

# The userinfo runs to the last '@' before whitespace or a quote: a raw password may itself hold
# '@', '/' or '?'. Redacting a little too much (a path after a stray '@') is the safe mistake.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s'\"<>]*)@")


def _replace(match: re.Match[str]) -> str:
    userinfo = match.group("userinfo")
    if ":" not in userinfo:
        return match.group(0)  # a user name alone carries no secret
    user = userinfo.split(":", 1)[0]
    return f"{match.group('scheme')}{user}:***@"


def redact_userinfo(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` replaced by ``***``."""
    return _USERINFO.sub(_replace, text)
