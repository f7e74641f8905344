#!/usr/bin/env bash
# prefixd-fastnetmon(8), made at build time from its two sources so that neither drifts:
# the binary's --help (usage, every variable with its default, exit codes) and the README's
# operator sections (Invocation … Security notes), turned from Markdown into roff.
# usage: contrib/debian/manpage.sh BINARY README > prefixd-fastnetmon.8
set -euo pipefail
bin=$1
readme=$2
help=$("$bin" --help)
version=$(sed -n '1s/^prefixd-fastnetmon \([^ ]*\).*/\1/p' <<<"$help")
date=$(git log -1 --format=%cs 2>/dev/null || date -u +%F)

# roff-safe text: backslashes, and a leading dot or quote.
esc() { sed -e 's/\\/\\e/g' -e 's/^\./\\\&./' -e "s/^'/\\\\\\&'/" -e 's/-/\\-/g'; }

cat <<EOF
.TH PREFIXD\\-FASTNETMON 8 "$date" "prefixd\\-fastnetmon $version" "System Administration"
.SH NAME
prefixd\\-fastnetmon \\- FastNetMon notify hook that sends bans and unbans to prefixd
.SH SYNOPSIS
.nf
EOF
sed -n '/^usage:/,/^$/p' <<<"$help" | sed -e 's/^usage: //' -e 's/^       //' -e '/^$/d' | esc
cat <<'EOF'
.fi
.SH DESCRIPTION
FastNetMon runs this program as its notify_script_path on every ban and unban. It reads the
attack details, turns the call into prefixd HTTP API requests (a ban event; a lookup and
withdrawals for an unban), and keeps what prefixd could not take yet in a spool, delivered
later in order per victim.
.SH VARIABLES
Read from /etc/default/prefixd (or \-\-env\-file, PREFIXD_ENV_FILE), overridden by the
environment. Name, default and meaning:
.PP
.nf
EOF
sed -n '/^Variables/,/^$/p' <<<"$help" | sed -e '1d' -e '/^$/d' -e 's/^  //' | esc
echo ".fi"
echo ".SH OPTIONS AND EXIT STATUS"
sed -n '/^DIRECTION defaults/,$p' <<<"$help" | sed -e 's/^$/.PP/' | esc | sed -e 's/^\\&\.PP$/.PP/' -e 's/^\.PP$/.PP/'

# The README's operator sections.
awk '
function inline(s) {
    gsub(/\\/, "\\e", s)
    while (match(s, /`[^`]*`/)) s = substr(s, 1, RSTART - 1) "\\fB" substr(s, RSTART + 1, RLENGTH - 2) "\\fR" substr(s, RSTART + RLENGTH)
    while (match(s, /\*\*[^*]*\*\*/)) s = substr(s, 1, RSTART - 1) "\\fB" substr(s, RSTART + 2, RLENGTH - 4) "\\fR" substr(s, RSTART + RLENGTH)
    gsub(/-/, "\\-", s)
    if (s ~ /^[.\x27]/) s = "\\&" s
    return s
}
/^## Invocation/ { on = 1 }
/^## Appliances/ { on = 0 }
!on { next }
/^```/ { if (code) { print ".fi"; code = 0 } else { print ".PP"; print ".nf"; code = 1 }; next }
code { line = $0; gsub(/\\/, "\\e", line); gsub(/-/, "\\-", line); if (line ~ /^[.\x27]/) line = "\\&" line; print line; next }
/^\|/ {
    if ($0 ~ /^\|[-| ]+\|$/) next
    if (!table) { print ".PP"; print ".nf"; table = 1 }
    row = $0; sub(/^\| */, "", row); sub(/ *\|$/, "", row); gsub(/ *\| */, "  \\(bv  ", row)
    print inline(row); next
}
table { print ".fi"; table = 0 }
/^## / { print ".SH " toupper(inline(substr($0, 4))); next }
/^### / { print ".SS " inline(substr($0, 5)); next }
/^$/ { print ".PP"; next }
/^- / { print ".IP \\(bu 2"; print inline(substr($0, 3)); next }
/^[0-9]+\. / { n = $0; sub(/\..*/, "", n); print ".IP " n ". 4"; sub(/^[0-9]+\. /, ""); print inline($0); next }
{ sub(/^ +/, ""); print inline($0) }
END { if (code || table) print ".fi" }
' "$readme"

cat <<'EOF'
.SH FILES
.TP
/etc/default/prefixd
configuration (shared with prefixd itself); it holds the token: root and FastNetMon's group
may read it (0640)
.TP
/var/spool/prefixd\-fastnetmon
notices not delivered yet and leases, FastNetMon's user's (2770, files 0660)
.TP
/var/log/prefixd\-fastnetmon.log
the log, one line per step (FastNetMon's user's)
.TP
/usr/lib/prefixd\-fastnetmon/own\-files
gives FastNetMon's user the files above; run by the package, its trigger and
prefixd\-fastnetmon\-owner.path
.SH SEE ALSO
.BR fastnetmon (8)
EOF
