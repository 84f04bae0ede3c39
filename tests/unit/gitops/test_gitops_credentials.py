"""Credentials: parsing, redaction, how they reach git, and that they never reach error text."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from controller import errors
from controller.gitops.credentials import (
    PASSWORD_ENV,
    USERNAME_ENV,
    GitCredentials,
    git_environment,
    is_ssh_url,
    scrub,
    split_url_credentials,
)
from controller.gitops.errors import GitError, GitInputError
from controller.gitops.repo import RepoCache

PASSWORD = "hunter2-Sup3r.Secret"
KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\n"
    "bm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
KNOWN_HOSTS = "git.example.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"


def test_repr_and_str_redact_secrets() -> None:
    creds = GitCredentials(username="alice", password=PASSWORD, ssh_private_key=KEY, known_hosts=KNOWN_HOSTS)
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert PASSWORD not in text
        assert "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE" not in text
        assert "alice" in text
        assert "<redacted>" in text
    assert repr(GitCredentials()) == (
        "GitCredentials(username=None, password=None, ssh_private_key=None, known_hosts=None)"
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"token": "ghp_abc\n"}, GitCredentials(username="x-access-token", password="ghp_abc")),
        ({"token": b"glpat-xyz", "username": b"ci-bot"}, GitCredentials(username="ci-bot", password="glpat-xyz")),
        ({"username": "alice", "password": "pw", "token": "tok"}, GitCredentials(username="alice", password="pw")),
        ({"username": "alice\n", "password": b"pw\r\n"}, GitCredentials(username="alice", password="pw")),
        (
            {"ssh-privatekey": KEY.encode(), "known_hosts": KNOWN_HOSTS},
            GitCredentials(ssh_private_key=KEY + "\n", known_hosts=KNOWN_HOSTS),
        ),
        ({"identity": KEY + "\n\n"}, GitCredentials(ssh_private_key=KEY + "\n")),
        ({"password": ""}, GitCredentials()),
    ],
    ids=[
        "token",
        "token-bytes-with-username",
        "password-beats-token",
        "newlines",
        "ssh-auth",
        "flux-identity",
        "empty",
    ],
)
def test_from_secret_data(data: dict[str, str | bytes], expected: GitCredentials) -> None:
    assert GitCredentials.from_secret_data(data) == expected


def test_from_secret_data_rejects_binary_garbage_without_echoing_it() -> None:
    with pytest.raises(GitInputError, match="'password' is not UTF-8") as info:
        GitCredentials.from_secret_data({"password": b"\xff\xfesecret"})
    assert "secret" not in str(info.value)


def test_scrub_removes_userinfo_and_secrets() -> None:
    creds = GitCredentials(username="alice", password="p@ss word", ssh_private_key=KEY)
    text = (
        "fatal: unable to access 'https://alice:p%40ss%20word@git.example.test/x.git/': "
        "also https://TOKEN123@host/y and ssh://git:pw@host/z and ssh://git@host/ok "
        "and raw p@ss word and key line b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE"
    )
    out = scrub(text, creds)
    for secret in ("p@ss word", "p%40ss%20word", "TOKEN123", "git:pw", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE"):
        assert secret not in out
    assert "https://git.example.test/x.git/" in out
    assert "ssh://git@host/ok" in out  # a bare ssh user is not a secret


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://alice:pw%2F1@h:8443/r.git", ("https://h:8443/r.git", "alice", "pw/1")),
        ("https://TOKEN@h/r.git", ("https://h/r.git", "TOKEN", None)),
        ("ssh://git:pw@h/r.git", ("ssh://git@h/r.git", "git", "pw")),
        ("ssh://git@h/r.git", ("ssh://git@h/r.git", "git", None)),
        ("git@h:r.git", ("git@h:r.git", None, None)),
        ("file:///srv/r.git", ("file:///srv/r.git", None, None)),
    ],
    ids=["https-user-pass", "https-token", "ssh-pass", "ssh-user", "scp-like", "file"],
)
def test_split_url_credentials(url: str, expected: tuple[str, str | None, str | None]) -> None:
    assert split_url_credentials(url) == expected


@pytest.mark.parametrize(
    ("url", "ssh"),
    [("git@h:r.git", True), ("ssh://h/r", True), ("git+ssh://h/r", True), ("https://h/r", False),
     ("file:///r", False), ("git://h/r", False)],
)  # fmt: skip
def test_is_ssh_url(url: str, ssh: bool) -> None:
    assert is_ssh_url(url) is ssh


def test_https_credentials_go_through_askpass_env_only(tmp_path: Path) -> None:
    creds = GitCredentials(username="alice", password=PASSWORD)
    with git_environment(creds, "https://h/r.git", tmp_path / "scratch") as env:
        askpass = Path(env["GIT_ASKPASS"])
        assert PASSWORD not in askpass.read_text()
        assert env["GIT_TERMINAL_PROMPT"] == "0"
        answers = [
            subprocess.run(
                [str(askpass), prompt], env={**os.environ, **env}, capture_output=True, text=True, check=True
            ).stdout
            for prompt in ("Username for 'https://h': ", "Password for 'https://alice@h': ")
        ]
    assert answers == ["alice\n", f"{PASSWORD}\n"]
    assert env[USERNAME_ENV] == "alice"
    assert env[PASSWORD_ENV] == PASSWORD


def test_without_credentials_git_cannot_prompt(tmp_path: Path) -> None:
    with git_environment(None, "https://h/r.git", tmp_path) as env:
        assert env["GIT_ASKPASS"] == ""
        assert env["GIT_TERMINAL_PROMPT"] == "0"
        assert env[PASSWORD_ENV] == ""


def test_ssh_key_goes_to_a_private_temp_file_with_strict_host_checking(tmp_path: Path) -> None:
    creds = GitCredentials(ssh_private_key=KEY + "\n", known_hosts=KNOWN_HOSTS)
    with git_environment(creds, "git@git.example.test:shop/app.git", tmp_path) as env:
        command = env["GIT_SSH_COMMAND"]
        assert "StrictHostKeyChecking=yes" in command
        assert "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE" not in command
        key_file = Path(command.split(" -i ")[1].split()[0])
        known_hosts = Path(command.split("UserKnownHostsFile=")[1].split()[0])
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert key_file.read_text() == KEY + "\n"
        assert known_hosts.read_text() == KNOWN_HOSTS + "\n"
        assert PASSWORD_ENV not in {k for k, v in env.items() if v}
    assert not key_file.exists()
    assert not known_hosts.exists()


def test_ssh_key_without_known_hosts_is_a_clear_error(tmp_path: Path) -> None:
    with (
        pytest.raises(GitError, match="no known_hosts"),
        git_environment(GitCredentials(ssh_private_key=KEY), "ssh://git@h/r.git", tmp_path),
    ):
        pass  # pragma: no cover
    # the same Secret used for an https remote needs no known_hosts
    with git_environment(GitCredentials(ssh_private_key=KEY), "https://h/r.git", tmp_path) as env:
        assert env["GIT_SSH_COMMAND"] == "ssh -o BatchMode=yes"


def test_git_error_is_a_stopline_error() -> None:
    assert issubclass(GitError, errors.StoplineError)
    assert issubclass(GitError, errors.GitError)


def _files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.mark.parametrize("how", ["in-url", "in-creds", "both"])
def test_credentials_never_appear_in_exception_text(tmp_path: Path, how: str) -> None:
    url = (
        f"https://alice:{PASSWORD}@127.0.0.1:1/shop/app.git"
        if how != "in-creds"
        else "https://127.0.0.1:1/shop/app.git"
    )
    creds = GitCredentials(username="alice", password=PASSWORD) if how != "in-url" else None
    with RepoCache(tmp_path / "cache", timeout=30) as cache:
        for call in (
            lambda: cache.tip(url, "main", creds),
            lambda: cache.ensure_revision(url, "a" * 40, "main", creds),
            lambda: cache.revert(url, "main", "a" * 40, message="m", trailers={}, creds=creds),
        ):
            with pytest.raises(GitError) as info:
                call()
            text = f"{info.value}\n{info.value!r}\n{info.value.args}"
            assert PASSWORD not in text
            assert "alice:" not in text
            assert "127.0.0.1" in text  # still says where it failed
    assert _files_containing(tmp_path / "cache", PASSWORD) == []


def test_ssh_remote_with_key_but_no_known_hosts_fails_before_connecting(tmp_path: Path) -> None:
    with RepoCache(tmp_path / "cache") as cache, pytest.raises(GitError, match="known_hosts") as info:
        cache.tip("ssh://git@127.0.0.1:1/app.git", "main", GitCredentials(ssh_private_key=KEY))
    assert "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE" not in str(info.value)


@pytest.mark.parametrize("url", ["/srv/repo.git", "--upload-pack=evil", "ext::sh -c evil", "https://h/a b"])
def test_unsupported_urls_are_rejected(tmp_path: Path, url: str) -> None:
    with RepoCache(tmp_path / "cache") as cache, pytest.raises(GitInputError, match="unsupported git URL"):
        cache.tip(url, "main")
