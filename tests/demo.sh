#!/usr/bin/env bash
# `make demo`: one ban (a real FastNetMon details text on stdin) and one unban through the
# built binary, against the project's loopback prefixd stand-in; prints what it received.
set -euo pipefail
bin=$1 stub=$2
tmp=$(mktemp -d)
"$stub" --seconds 120 >"$tmp/stub.out" &
stub_pid=$!
trap 'kill $stub_pid 2>/dev/null; wait $stub_pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do grep -q '^listening ' "$tmp/stub.out" && break; sleep 0.1; done
url=$(sed -n 's/^listening //p' "$tmp/stub.out")
[ -n "$url" ] || { echo "the prefixd stand-in did not start" >&2; exit 1; }
: >"$tmp/env"
export PREFIXD_API=$url PREFIXD_LOG=$tmp/log PREFIXD_ENV_FILE=$tmp/env UNBAN_QUERY_RETRIES=1

echo "== $("$bin" --version)"
echo "== prefixd stand-in at $url"
echo '== FastNetMon: prefixd-fastnetmon 192.0.2.10 incoming 412345 ban < tests/fixtures/ban_ipv4_udp_flood.txt'
rc=0; "$bin" 192.0.2.10 incoming 412345 ban <tests/fixtures/ban_ipv4_udp_flood.txt || rc=$?
echo "   exit $rc"
echo '== FastNetMon: prefixd-fastnetmon 192.0.2.10 incoming 412345 unban'
rc=0; "$bin" 192.0.2.10 incoming 412345 unban </dev/null || rc=$?
echo "   exit $rc"
echo '== what prefixd received (bodies cut at 240 characters)'
grep -v '^listening ' "$tmp/stub.out" | cut -c1-240
echo '== our log'
cat "$tmp/log"
