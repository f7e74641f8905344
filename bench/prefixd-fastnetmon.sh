#!/usr/bin/env bash
# The baseline for `make bench`: what prefixd's bash notify script does, written here from its
# described behaviour (bash + curl + jq; see the README's Performance section). Not for use.
set -u
IP=${1:-}; DIRECTION=${2:-incoming}; PPS=${3:-0}; ACTION=${4:-ban}
API=${PREFIXD_API:-http://localhost:8080}
LOG=${PREFIXD_LOG:-/var/log/prefixd-fastnetmon.log}
OPERATOR=${PREFIXD_OPERATOR:-fastnetmon}
RETRIES=${UNBAN_QUERY_RETRIES:-5}; DELAY=${UNBAN_QUERY_DELAY_SECONDS:-1}
AUTH=(); [ -n "${PREFIXD_TOKEN:-}" ] && AUTH=(-H "Authorization: Bearer $PREFIXD_TOKEN")
log() { echo "$(date -u +%FT%TZ) $*" >> "$LOG"; }
[ -n "$IP" ] || { log "ERROR: no IP"; exit 1; }

if [ "$ACTION" != unban ]; then
    DETAILS=""; [ -t 0 ] || DETAILS=$(cat)
    LOWER=${DETAILS,,}
    case "$LOWER" in
        *udp*) VECTOR=udp_flood;; *syn*) VECTOR=syn_flood;; *ack*) VECTOR=ack_flood;;
        *icmp*) VECTOR=icmp_flood;; *) VECTOR=unknown;;
    esac
    EVENT_ID=$(cat /proc/sys/kernel/random/uuid)
    BODY=$(jq -n --arg id "$EVENT_ID" --arg ts "$(date -u +%FT%TZ)" --arg ip "$IP" --arg v "$VECTOR" \
        --argjson pps "$PPS" --arg raw "$DETAILS" --arg dir "$DIRECTION" \
        '{event_id:$id, timestamp:$ts, source:"fastnetmon", victim_ip:$ip, vector:$v, action:"ban",
          pps:$pps, raw_details:{raw:$raw, direction:$dir, original_action:"ban"}}')
    log "Sending ban for $IP ($VECTOR, $PPS pps, event_id=$EVENT_ID)"
    OUT=$(curl -s -w '\n%{http_code}' -X POST "$API/v1/events" -H 'Content-Type: application/json' "${AUTH[@]}" -d "$BODY")
    CODE=${OUT##*$'\n'}
    case "$CODE" in 2*) log "SUCCESS ($CODE): ${OUT%$'\n'*}"; exit 0;; *) log "ERROR ($CODE): ${OUT%$'\n'*}"; exit 1;; esac
fi

for i in $(seq 1 "$RETRIES"); do
    OUT=$(curl -s -w '\n%{http_code}' "$API/v1/mitigations?status=pending,active,escalated&victim_ip=$IP&limit=1000" "${AUTH[@]}")
    CODE=${OUT##*$'\n'}
    case "$CODE" in 2*) ;; *) log "ERROR ($CODE) listing mitigations"; exit 1;; esac
    IDS=$(printf '%s' "${OUT%$'\n'*}" | jq -r '.mitigations[].mitigation_id')
    [ -n "$IDS" ] && break
    [ "$i" -lt "$RETRIES" ] && sleep "$DELAY"
done
[ -n "$IDS" ] || { log "No active mitigations for $IP"; exit 0; }
FAILED=0
for ID in $IDS; do
    BODY=$(jq -n --arg op "$OPERATOR" --arg r "FastNetMon unban for $IP (direction=$DIRECTION)" '{operator_id:$op, reason:$r}')
    OUT=$(curl -s -w '\n%{http_code}' -X POST "$API/v1/mitigations/$ID/withdraw" -H 'Content-Type: application/json' "${AUTH[@]}" -d "$BODY")
    CODE=${OUT##*$'\n'}
    case "$CODE" in 2*) log "SUCCESS: Withdrew mitigation $ID for $IP ($CODE)";; *) log "ERROR withdrawing $ID ($CODE): ${OUT%$'\n'*}"; FAILED=1;; esac
done
exit $FAILED
