#!/usr/bin/env bash
# Install axe-core (the accessibility audits of tests/ui/test_accessibility.py) at the version
# pinned in tests/ui/package-lock.json, once: npm ci only runs when node_modules is missing or
# older than the lock file. --ignore-scripts: no package code runs at install time.
# No npm: say how to get it and exit 0, so the audits report it themselves (skip locally,
# fail in CI); scripts/ensure-test-tools.sh installs Debian's npm when run as root.
set -euo pipefail

ui_dir="$(cd "$(dirname "$0")/../tests/ui" && pwd)"
stamp="$ui_dir/node_modules/.package-lock.json"  # written by npm ci
if [ -f "$ui_dir/node_modules/axe-core/axe.min.js" ] && [ -f "$stamp" ] \
    && ! [ "$ui_dir/package-lock.json" -nt "$stamp" ]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "note: npm missing: install it (sudo apt-get install -y npm), then run $0" >&2
    exit 0
fi
echo "Installing axe-core for the accessibility tests (tests/ui/node_modules)"
npm ci --prefix "$ui_dir" --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error
