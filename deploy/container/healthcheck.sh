#!/bin/bash
# The container's HEALTHCHECK: healthy when the agent answers GET /metrics with its
# exposition (netanom_build_info is always there). Needs only bash and grep, which the
# runtime image has anyway. NETANOM_HEALTHCHECK_ADDR is HOST:PORT ([v6]:PORT for IPv6).
set -o pipefail
addr="${NETANOM_HEALTHCHECK_ADDR:-127.0.0.1:9754}"
port="${addr##*:}"
host="${addr%:*}"
host="${host#[}"
host="${host%]}"
{ exec 3<>"/dev/tcp/${host}/${port}"; } 2>/dev/null || { echo "netanom: nothing listens on ${addr}" >&2; exit 1; }
printf 'GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n' "${addr}" >&3
if timeout 4 grep -q -m1 '^netanom_build_info' <&3; then
    exit 0
fi
echo "netanom: ${addr}/metrics did not answer with the exposition" >&2
exit 1
