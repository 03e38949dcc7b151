"""How a proxy URL may be shown: never with its credentials (a proxy URL may carry a password).

Pure, and imported by the transport interface (`SessionSpec`'s repr) and the neonize transport alike.
"""

from __future__ import annotations

import re

SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def masked(url: str) -> str:
    """`scheme://***@host:port`, or `scheme://host:port` without credentials: never a password.

    Everything up to the last `@` counts as credentials, so a password with an
    unescaped `/` or `@` is masked too.
    """
    m = SCHEME.match(url)
    if m is None:
        return "<proxy URL>"
    creds, at, rest = url[m.end():].rpartition("@")
    hostport = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return f"{m.group(1).lower()}://{'***@' if at else ''}{hostport}"
