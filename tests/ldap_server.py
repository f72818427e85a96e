"""A real OpenLDAP server (Debian's slapd) for tests, on loopback ports, with a generated
directory: never the system service, everything under a temporary folder.

The server speaks ldap:// (STARTTLS) and ldaps:// with a certificate of a throw-away CA, and
requires TLS for simple binds (`security simple_bind=128`): a test that signs in over ldap://
without STARTTLS is refused by the server itself. Users find nothing anonymously: the service
account `cn=reader` searches.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.timing import scaled

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA = Path("/etc/ldap/schema")
MODULES = Path("/usr/lib/ldap")
BASE = "dc=endoseek,dc=test"
READER_DN = f"cn=reader,{BASE}"


@dataclass(frozen=True)
class Person:
    uid: str
    password: str
    name: str
    groups: tuple[str, ...] = ()


@dataclass
class Slapd:
    """A running slapd: URLs, CA file, service account, and the people it knows."""

    url: str
    ldaps_url: str
    ca_file: Path
    reader_password: str
    people: dict[str, Person]
    proc: subprocess.Popen
    log: Path
    root: Path = field(repr=False)

    def settings(self, **extra: object) -> dict[str, object]:
        """Settings fields for app/accounts/ldap.py talking to this server over STARTTLS."""
        return {
            "ldap_url": self.url,
            "ldap_start_tls": True,
            "ldap_ca_file": self.ca_file,
            "ldap_bind_dn": READER_DN,
            "ldap_bind_password": self.reader_password,
            "ldap_user_base": f"ou=people,{BASE}",
            "ldap_group_base": f"ou=groups,{BASE}",
            "ldap_group_roles": {
                f"cn=qa-admins,ou=groups,{BASE}": "admin",
                "qa-reviewers": "reviewer",
                "qa-viewers": "viewer",
            },
            "ldap_timeout_s": scaled(10),
        } | extra

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=scaled(20))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=scaled(10))


def require_slapd() -> None:
    """Skip (locally) or fail (CI=true) when Debian's slapd is not installed."""
    missing = [p for p in (SLAPD, SLAPADD, str(SCHEMA / "core.schema")) if not Path(p).exists()]
    if shutil.which("openssl") is None:
        missing.append("openssl")
    if missing:
        why = f"OpenLDAP server missing ({', '.join(missing)}): scripts/ensure-test-tools.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(reason=why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ssha(password: str) -> str:
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - LDAP's {SSHA}
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _pki(d: Path) -> None:
    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
         "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "2", "-extfile", "server.ext",
         "-out", "server.crt")  # fmt: skip


def _config(root: Path, reader_password: str) -> str:
    schemas = "".join(
        f"include {SCHEMA / name}.schema\n" for name in ("core", "cosine", "inetorgperson", "nis")
    )
    return f"""{schemas}
modulepath {MODULES}
moduleload back_mdb
pidfile {root}/slapd.pid
argsfile {root}/slapd.args
TLSCACertificateFile {root}/ca.crt
TLSCertificateFile {root}/server.crt
TLSCertificateKeyFile {root}/server.key
security simple_bind=128

database mdb
maxsize 16777216
suffix "{BASE}"
rootdn "cn=admin,{BASE}"
rootpw {_ssha(secrets.token_urlsafe(16))}
directory {root}/data
access to attrs=userPassword by anonymous auth by self write by * none
access to * by dn.exact="{READER_DN}" read by self read by * none
"""


def _ldif(people: list[Person], reader_password: str) -> str:
    out = [
        f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: EndoSeek test\n"
        "dc: endoseek\n",
        f"dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: ou=groups,{BASE}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: reader\nuserPassword: {_ssha(reader_password)}\n",
    ]
    groups: dict[str, list[str]] = {}
    for p in people:
        dn = f"uid={p.uid},ou=people,{BASE}"
        out.append(
            f"dn: {dn}\nobjectClass: inetOrgPerson\nuid: {p.uid}\ncn: {p.name}\n"
            f"sn: {p.name.split()[-1]}\ndisplayName: {p.name}\nuserPassword: {_ssha(p.password)}\n"
        )
        for g in p.groups:
            groups.setdefault(g, []).append(dn)
    for g, members in groups.items():
        lines = "".join(f"member: {m}\n" for m in members)
        out.append(f"dn: cn={g},ou=groups,{BASE}\nobjectClass: groupOfNames\ncn: {g}\n{lines}")
    return "\n".join(out)


def start_slapd(root: Path, people: list[Person]) -> Slapd:
    """Generate a directory under `root` and start slapd on two free loopback ports."""
    require_slapd()
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir()
    _pki(root)
    reader_password = secrets.token_urlsafe(16)
    conf = root / "slapd.conf"
    conf.write_text(_config(root, reader_password))
    (root / "base.ldif").write_text(_ldif(people, reader_password))
    subprocess.run(
        [SLAPADD, "-f", str(conf), "-l", str(root / "base.ldif")],
        check=True,
        capture_output=True,
    )
    port, tls_port = _free_port(), _free_port()
    url, ldaps_url = f"ldap://127.0.0.1:{port}", f"ldaps://127.0.0.1:{tls_port}"
    log = root / "slapd.log"
    proc = subprocess.Popen(
        [SLAPD, "-f", str(conf), "-h", f"{url}/ {ldaps_url}/", "-d", "0"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    server = Slapd(url, ldaps_url, root / "ca.crt", reader_password,
                   {p.uid: p for p in people}, proc, log, root)  # fmt: skip
    deadline = time.monotonic() + scaled(30)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"slapd exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            for p in (port, tls_port):
                socket.create_connection(("127.0.0.1", p), timeout=scaled(1)).close()
            return server
        except OSError:
            time.sleep(0.05)  # poll interval, bounded by the deadline above
    server.stop()
    raise RuntimeError("slapd did not listen in time")


PEOPLE = [
    Person("alice", "alice-Directory-pw-1", "Alice Admin", ("qa-admins", "qa-viewers")),
    Person("bob", "bob-Directory-pw-22", "Bob Reviewer", ("qa-reviewers",)),
    Person("carol", "carol-Directory-pw-333", "Carol Viewer", ("qa-viewers",)),
    Person("dave", "dave-Directory-pw-4444", "Dave Nogroup"),
    Person("star*", "star-Directory-pw-55555", "Star Injection", ("qa-admins",)),
]
