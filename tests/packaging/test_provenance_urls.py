"""Credentials never survive in a stored git remote URL, in any of the forms they come in."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest

from core.packaging import GitArchivePackager, Provenance, strip_url_credentials

SECRET = "s3cr3tTOKEN"

#: (url, what must be stored). The user name of ssh-style URLs is an account and stays.
TABLE = [
    ("https://user:s3cr3tTOKEN@github.com/o/r.git", "https://github.com/o/r.git"),
    ("https://s3cr3tTOKEN@github.com/o/r.git", "https://github.com/o/r.git"),
    ("https://oauth2:s3cr3tTOKEN@gitlab.com:8443/o/r.git", "https://gitlab.com:8443/o/r.git"),
    ("https://host/o/r.git?token=s3cr3tTOKEN", "https://host/o/r.git"),
    ("https://host/o/r.git?access_token=s3cr3tTOKEN&x=1", "https://host/o/r.git"),
    ("https://host/o/r.git?private_token=s3cr3tTOKEN", "https://host/o/r.git"),
    ("https://host?s3cr3tTOKEN", "https://host"),
    ("https://host/o/r.git#s3cr3tTOKEN", "https://host/o/r.git"),
    ("https://u:p@ss:s3cr3tTOKEN@host/r", "https://host/r"),
    ("HTTPS://s3cr3tTOKEN@Host/r", "HTTPS://Host/r"),
    ("http://s3cr3tTOKEN:x-oauth-basic@host/r", "http://host/r"),
    ("git+https://s3cr3tTOKEN@host/r.git", "git+https://host/r.git"),
    ("ftp://me:s3cr3tTOKEN@host/r", "ftp://host/r"),
    ("ssh://git:s3cr3tTOKEN@host:2222/o/r.git", "ssh://git@host:2222/o/r.git"),
    ("ssh://git@host/o/r.git?s3cr3tTOKEN", "ssh://git@host/o/r.git"),
    ("ssh://me:s3cr3tTOKEN@[::1]:22/r", "ssh://me@[::1]:22/r"),
    ("git://me:s3cr3tTOKEN@host/r", "git://me@host/r"),
    ("git@github.com:o/r.git", "git@github.com:o/r.git"),
    ("me:s3cr3tTOKEN@host:o/r.git", "me@host:o/r.git"),
    ("git@host:o/r.git#s3cr3tTOKEN", "git@host:o/r.git"),
    ("file:///srv/r.git?s3cr3tTOKEN", "file:///srv/r.git"),
    ("/srv/git/r.git", "/srv/git/r.git"),
    ("../sibling/r.git", "../sibling/r.git"),
    ("https://github.com/o/r.git", "https://github.com/o/r.git"),
    ("https://host/a@b/r.git", "https://host/a@b/r.git"),
    ("https://s3cr3tTOKEN@host?x@y", "https://host"),
    ("", ""),
]


@pytest.mark.parametrize(("url", "clean"), TABLE)
def test_table(url: str, clean: str) -> None:
    assert strip_url_credentials(url) == clean
    assert SECRET not in (strip_url_credentials(url) or "")


# Generated: every credential slot of every URL shape, with secrets of awkward alphabets.
SHAPES = [
    "{scheme}://{secret}@{host}{path}",
    "{scheme}://user:{secret}@{host}{path}",
    "{scheme}://:{secret}@{host}{path}",
    "{scheme}://{host}{path}?token={secret}",
    "{scheme}://{host}{path}?a=1&access_token={secret}",
    "{scheme}://{host}{path}#{secret}",
    "{scheme}://user:{secret}@{host}{path}?private_token={secret}#{secret}",
    "user:{secret}@{host}:o/r.git",
    "git@{host}:o/r.git?{secret}",
]
SCHEMES = ["https", "http", "HTTPS", "ssh", "git", "git+ssh", "git+https", "ftps", "file"]
HOSTS = ["github.com", "gitlab.example.com:8443", "[::1]", "10.0.0.1:22"]
PATHS = ["/o/r.git", "", "/~user/r", "/a@b/r.git"]
SECRETS = ["ghp_AbC123xyz987", "glpat-Zz_9-yy", "p%40ss%3Aword", "tok:en:with:colons", "x@y"]


WEB = {"https", "http", "git+https", "ftps"}


def _cases() -> list[str]:
    return [
        shape.format(scheme=scheme, host=host, path=path, secret=secret)
        for shape, scheme, host, path, secret in itertools.product(
            SHAPES, SCHEMES, HOSTS, PATHS, SECRETS
        )
        # A bare ssh/git user name is an account by policy (kept), not a token slot.
        if shape != SHAPES[0] or scheme.lower() in WEB
    ]


def test_no_secret_survives_any_generated_url() -> None:
    cases = _cases()
    assert len(cases) == 6480 - 4 * len(HOSTS) * len(PATHS) * len(SECRETS)
    leaks = []
    for url in cases:
        secret = next(s for s in SECRETS if s in url)
        clean = strip_url_credentials(url)
        if clean is None or secret in clean:
            leaks.append((url, clean))
        elif strip_url_credentials(clean) != clean:
            leaks.append((url, f"not idempotent: {clean}"))
    assert leaks == []


def test_ssh_user_names_are_kept() -> None:
    for host in HOSTS:
        assert strip_url_credentials(f"ssh://alice:pw@{host}/r") == f"ssh://alice@{host}/r"
    assert strip_url_credentials("alice:pw@host:r") == "alice@host:r"


def test_provenance_never_stores_one(tmp_path: Path, h) -> None:
    """Through the real packager and git config, and when reading an old record back."""
    repo = h.init_repo(tmp_path / "repo")
    url = f"https://oauth2:{SECRET}@gitlab.example.com/o/r.git?private_token={SECRET}#{SECRET}"
    subprocess.run(["git", "-C", str(repo), "remote", "add", "origin", url], check=True)
    result = GitArchivePackager(basepath=str(repo)).package(tmp_path / "out")
    stored = json.dumps(result.provenance.to_dict())
    assert SECRET not in stored
    assert result.provenance.git_remote_url == "https://gitlab.example.com/o/r.git"
    old = {**result.provenance.to_dict(), "git_remote_url": url}  # written by an old version
    assert SECRET not in json.dumps(Provenance.from_dict(old).to_dict())
