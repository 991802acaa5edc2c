"""The one rule for every URL a config gives a model call: no credential in it.

A URL is written to the run record, the baseline (committed to the
repository), the reports, the PR comment and the terminal (so to CI logs).
A key or password inside it would go everywhere the URL goes, so
:func:`credential_free_url` refuses, at load time, a URL with a user or
password (``http://alice:pw@host/v1``) or with a query or fragment parameter
whose name looks like a credential (``?api-key=…``, ``?sig=…``,
``#access_token=…``). Nothing is stripped or rewritten: a URL is accepted
exactly as given, or refused with a message that shows neither the user,
the password nor any parameter's value. Keys go in ``api_key_env`` (the
*name* of an environment variable).

Used by every ``api_base`` of the config (the model's, each judge's, the
embedding's, each deployment's and fallback's) through a pydantic validator.
``cache.url`` (Redis) has its own rule (:func:`llmops_cli.core.cache.redis.check_url`):
its password is allowed and redacted wherever it is shown.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

# A parameter is credential-looking when one of its parts (split at - _ . and case changes) is one of these ...
_CREDENTIAL_PARTS = frozenset({
    "key", "apikey", "token", "secret", "password", "passwd", "pwd", "pass", "sig", "signature", "credential",
    "credentials", "auth", "authorization", "bearer", "jwt", "session", "sessionid", "cookie", "private",
    "accesskey", "secretkey", "accesstoken", "apitoken", "code",
})
# ... or when its whole name, letters and digits only, ends with one of these (apikey, xapikey, accesstoken, ...).
_CREDENTIAL_ENDINGS = ("key", "token", "secret", "password", "passwd", "signature", "credential", "credentials")
_PARTS = re.compile(r"[^a-z0-9]+")


def is_credential_name(name: str) -> bool:
    """Whether a query parameter named ``name`` looks like it carries a
    credential (case-insensitive): ``key``, ``api_key``, ``api-key``,
    ``apiKey``, ``token``, ``access_token``, ``password``, ``secret``,
    ``sig``, ``signature``, ``X-Amz-Security-Token``, ``subscription-key``,
    ``code``, ... — but not ``api-version`` or ``deployment``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name).lower()  # apiKey → api key
    parts = [p for p in _PARTS.split(spaced) if p]
    if any(p in _CREDENTIAL_PARTS for p in parts):
        return True
    joined = "".join(parts)
    return joined in _CREDENTIAL_PARTS or joined.endswith(_CREDENTIAL_ENDINGS)


def url_problem(url: str) -> str | None:
    """Why ``url`` holds a credential, in words that repeat none of it; None
    when it holds none. Only the user, the password and the *names* of
    query/fragment parameters are looked at; the URL need not be valid."""
    try:
        parts = urlsplit(url)
        has_user = parts.username is not None or parts.password is not None
    except ValueError:
        has_user = "@" in url.partition("://")[2].partition("/")[0]
        parts = None
    if has_user:
        return ("holds a user name or password (not shown); give the URL without it and the key's environment "
                "variable's name in api_key_env")
    for where, text in (("query", parts.query if parts else url.partition("?")[2]),
                        ("fragment", parts.fragment if parts else "")):
        for name, _ in parse_qsl(text, keep_blank_values=True):
            if is_credential_name(name):
                shown = name if re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name) else "?"
                return (f"its {where} parameter {shown!r} looks like a credential (value not shown); give the URL "
                        "without it and the key's environment variable's name in api_key_env")
    return None


def shown_url(url: str) -> str:
    """``url`` safe to print in an error message: user/password and every
    query and fragment value replaced by ``***``."""
    head, sep, rest = url.partition("://")
    if sep:
        host, slash, path = rest.partition("/")
        if "@" in host:
            host = "***@" + host.rpartition("@")[2]
        rest = host + slash + path
        url = head + sep + rest
    return re.sub(r"([?&#;][^=&#;]*=)[^&#;]*", r"\1***", url)


def credential_free_url(url: str | None) -> str | None:
    """``url`` unchanged if it is None or an http(s) URL with a host and no
    credential (:func:`url_problem`); the pydantic validator of every
    ``api_base`` of the config.

    Raises:
        ValueError: not an http(s) URL with a host (the URL shown with
            :func:`shown_url`), or it holds a credential (nothing of it shown)."""
    if url is None:
        return url
    problem = url_problem(url)
    if problem:
        raise ValueError(problem)
    try:
        u = urlsplit(url)
        ok = u.scheme in ("http", "https") and bool(u.hostname) and not any(c.isspace() or ord(c) < 32 for c in url)
        u.port  # noqa: B018 — raises ValueError for a port that is not a number in 0–65535
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{shown_url(url)!r} is not an http(s) URL with a host, e.g. http://127.0.0.1:8000/v1")
    return url
