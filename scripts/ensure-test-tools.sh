#!/usr/bin/env bash
# Install the Debian packages the test suite needs, once. Idempotent and fast when present:
# each tool is probed first and apt-get only runs for what is missing.
# Not root and something missing: say what to install and exit 0, so the tests that need
# the tool report it themselves (skip locally, fail in CI).
set -euo pipefail

# command -> Debian package. chromium: the browser tests drive /usr/bin/chromium through
# Playwright (never a downloaded browser). /usr/bin/time (by path: `time` alone is bash's
# keyword): bench/startup.py times whole processes with it.
declare -A tools=(
    [docker-compose]=docker-compose
    [chromium]=chromium
    [/usr/bin/time]=time
    [pg_dump]=postgresql-client  # `endoseek backup|restore` on PostgreSQL (pg_dump, pg_restore)
    # DICOM peers (tests/app/dicom): DCMTK's echoscu/storescu/storescp, and Orthanc with its
    # DICOMweb plugin routing studies to EndoSeek the way a PACS does (never started as a service)
    [storescu]=dcmtk
    [/usr/sbin/Orthanc]=orthanc
    [/usr/share/orthanc/plugins/libOrthancDicomWeb.so]=orthanc-dicomweb
    [openssl]=openssl  # TLS certificates for the DICOM receiver's TLS tests
    [npm]=npm  # scripts/ensure-axe.sh installs axe-core (accessibility audits) with it
    # OpenLDAP for directory sign-in tests (tests/ldap_server.py starts slapd on loopback
    # ports from a generated config; the Debian service itself is never started)
    [/usr/sbin/slapd]=slapd
    [ldapsearch]=ldap-utils
)

missing=()
for cmd in "${!tools[@]}"; do
    if [[ "$cmd" == /* ]]; then
        [ -e "$cmd" ] || missing+=("${tools[$cmd]}")  # a path: a file (a plugin) or a program
    else
        command -v "$cmd" >/dev/null 2>&1 || missing+=("${tools[$cmd]}")
    fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "note: test tools missing: ${missing[*]}; install them with:" >&2
    echo "    sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 0
fi

echo "Installing test tools: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet; refresh only when the install cannot find them.
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
