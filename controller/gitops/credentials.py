"""Git credentials: parsing from a Kubernetes Secret, handing them to git, keeping them out of text.

Credentials never go into argv, remote URLs, repository config, logs or exception messages:

* HTTPS: ``GIT_ASKPASS`` points at a static helper script that prints ``$STOPLINE_GIT_USERNAME`` /
  ``$STOPLINE_GIT_PASSWORD``; those variables exist only in the environment of one git call.
* SSH: ``GIT_SSH_COMMAND`` runs ``ssh`` with a private key written to a 0600 temporary file and strict
  host-key checking against the supplied ``known_hosts`` (required whenever a key is given).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from controller.gitops.errors import GitError, GitInputError

DEFAULT_TOKEN_USERNAME = "x-access-token"
"""Username sent with a bare ``token`` (what GitHub expects; GitLab/Gitea accept any non-empty name)."""

USERNAME_ENV = "STOPLINE_GIT_USERNAME"
PASSWORD_ENV = "STOPLINE_GIT_PASSWORD"

_REDACTED = "***"

_ASKPASS_SCRIPT = f"""#!/bin/sh
# stopline GIT_ASKPASS helper: answers git's prompts from per-call environment variables.
case "$1" in
  [Uu]sername*) printf '%s\\n' "${USERNAME_ENV}" ;;
  *) printf '%s\\n' "${PASSWORD_ENV}" ;;
esac
"""

# scheme://userinfo@ — userinfo with a password (any scheme), or any userinfo for http(s),
# where a bare user name is usually a token.
_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s@]*:[^/\s@]*@)"
    r"|(?P<hscheme>\bhttps?://)(?P<huser>[^/\s@]+@)",
    re.IGNORECASE,
)


@dataclass(frozen=True, repr=False)
class GitCredentials:
    """Credentials for one repository. ``repr``/``str`` never show the secrets."""

    username: str | None = None
    password: str | None = None
    ssh_private_key: str | None = None
    known_hosts: str | None = None

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str | bytes]) -> GitCredentials:
        """Build credentials from a Kubernetes Secret's data, values already base64-decoded (str or bytes).

        Keys: ``username``, ``password``, ``token`` (used as the password when ``password`` is absent;
        username then defaults to ``x-access-token``), ``ssh-privatekey`` or ``identity`` (SSH key),
        ``known_hosts``. Trailing newlines of username/password/token are dropped (``echo`` habits);
        the SSH key keeps its text and always ends with a newline, which ssh requires.
        """
        values = {key: _text(key, value) for key, value in data.items()}
        username = _line(values.get("username"))
        password = _line(values.get("password"))
        token = _line(values.get("token"))
        if password is None and token is not None:
            password = token
            username = username or DEFAULT_TOKEN_USERNAME
        key = values.get("ssh-privatekey") or values.get("identity") or None
        if key is not None:
            key = key.strip("\r\n") + "\n"
        known_hosts = values.get("known_hosts") or None
        return cls(username=username, password=password, ssh_private_key=key, known_hosts=known_hosts)

    def merged_with_url(self, url_username: str | None, url_password: str | None) -> GitCredentials:
        """Fill fields missing here from credentials that were embedded in the URL."""
        return replace(
            self,
            username=self.username or url_username,
            password=self.password or url_password,
        )

    def secrets(self) -> tuple[str, ...]:
        """Every string that must never appear in text we emit (longest first)."""
        return _secret_variants(self)

    def __repr__(self) -> str:
        return (
            f"GitCredentials(username={self.username!r}, "
            f"password={_mark(self.password)}, "
            f"ssh_private_key={_mark(self.ssh_private_key)}, "
            f"known_hosts={'<set>' if self.known_hosts else None})"
        )

    __str__ = __repr__


def _mark(value: str | None) -> str:
    return "<redacted>" if value else "None"


def _text(key: str, value: str | bytes) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GitInputError(f"git credentials Secret key {key!r} is not UTF-8 text") from exc
    return value


def _line(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.rstrip("\r\n")
    return value or None


def _secret_variants(creds: GitCredentials) -> tuple[str, ...]:
    found: set[str] = set()
    if creds.password:
        found.update({creds.password, quote(creds.password, safe=""), quote(creds.password)})
    if creds.ssh_private_key:
        key = creds.ssh_private_key
        found.add(key.strip())
        for line in key.splitlines():
            line = line.strip()
            if len(line) >= 8 and not line.startswith("-----"):
                found.add(line)
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def scrub(text: str, creds: GitCredentials | None = None) -> str:
    """Remove credentials from ``text``: ``user:pass@`` in URLs (and any userinfo of http(s) URLs),
    plus every secret held by ``creds`` (raw and percent-encoded)."""
    for secret in creds.secrets() if creds is not None else ():
        text = text.replace(secret, _REDACTED)
    return _URL_USERINFO.sub(lambda m: m.group("scheme") or m.group("hscheme"), text)


def is_ssh_url(url: str) -> bool:
    """``ssh://``, ``git+ssh://`` / ``ssh+git://`` or scp-like ``user@host:path``."""
    scheme = urlsplit(url).scheme.lower()
    if scheme:
        return "ssh" in scheme.split("+")
    return re.match(r"^[^/\s:]+:", url) is not None and not re.match(r"^[A-Za-z]:[\\/]", url)


def split_url_credentials(url: str) -> tuple[str, str | None, str | None]:
    """Return ``(url without secrets, username, password)``.

    The password is always removed; for http(s) the username is removed too (git then asks the askpass
    helper for it). For ssh the user name stays in the URL, it selects the remote account.
    """
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    raw_user, has_password, raw_password = userinfo.partition(":")
    username = unquote(raw_user) or None
    password = unquote(raw_password) if has_password and raw_password else None
    if parts.scheme.lower() in ("http", "https"):
        netloc = hostport
    else:
        netloc = f"{raw_user}@{hostport}" if raw_user else hostport
    return urlunsplit(parts._replace(netloc=netloc)), username, password


def _askpass_script(scratch: Path) -> Path:
    script = scratch / "askpass.sh"
    if not script.exists() or script.read_text() != _ASKPASS_SCRIPT:
        fd, tmp = tempfile.mkstemp(dir=scratch, prefix=".askpass-")
        with os.fdopen(fd, "w") as fh:
            fh.write(_ASKPASS_SCRIPT)
        os.chmod(tmp, stat.S_IRWXU)
        os.replace(tmp, script)
    return script


@contextlib.contextmanager
def git_environment(creds: GitCredentials | None, url: str, scratch: Path) -> Iterator[dict[str, str]]:
    """Environment for one git call against ``url``. Temporary key files live under ``scratch`` (a
    private directory) and are removed on exit, whatever happens."""
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
        USERNAME_ENV: "",
        PASSWORD_ENV: "",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
    }
    if creds is not None and creds.password and not is_ssh_url(url):
        env["GIT_ASKPASS"] = str(_askpass_script(scratch))
        env[USERNAME_ENV] = creds.username or DEFAULT_TOKEN_USERNAME
        env[PASSWORD_ENV] = creds.password
    if creds is None or not is_ssh_url(url) or not (creds.ssh_private_key or creds.known_hosts):
        yield env
        return
    if creds.ssh_private_key and not creds.known_hosts:
        raise GitError(
            "the git credentials hold an SSH private key but no known_hosts: add a 'known_hosts' key "
            "to the Secret (for example the output of ssh-keyscan for the git host)"
        )
    keydir = Path(tempfile.mkdtemp(dir=scratch, prefix="ssh-"))
    try:
        options = ["ssh", "-o", "BatchMode=yes"]
        if creds.known_hosts:
            known_hosts = keydir / "known_hosts"
            _write_private(known_hosts, creds.known_hosts.rstrip("\n") + "\n")
            options += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        if creds.ssh_private_key:
            key = keydir / "id"
            _write_private(key, creds.ssh_private_key)
            options += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
        env["GIT_SSH_COMMAND"] = shlex.join(options)
        yield env
    finally:
        shutil.rmtree(keydir, ignore_errors=True)


def _write_private(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)
