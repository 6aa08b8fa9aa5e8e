#!/usr/bin/env bash
# The headless Countersign demo: one gateway, one approver, two requests, no set-up.
#
#   1. start `countersign-gateway serve` on a free loopback port
#   2. create a requester token and invite alice@example.com
#   3. pair an approver device (development-mode software passkey) and start `countersign watch`
#   4. a requester asks to run a command against prod-db with number matching; alice reads
#      the request, types the match code and approves with her passkey; the command runs (exit 0)
#   5. a second request is denied with a reason (exit 3); its command never runs
#   6. both audit logs are verified
#
# Everything lives in ./.demo (recreated on each run, kept afterwards for a look). Background
# processes are stopped on exit, whatever happens.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"

# ---- presentation ----------------------------------------------------------------------------
if [[ -t 1 ]]; then
    bold=$'\e[1m' dim=$'\e[2m' green=$'\e[32m' red=$'\e[31m' yellow=$'\e[33m' reset=$'\e[0m'
else
    bold='' dim='' green='' red='' yellow='' reset=''
fi
step=0
section() { step=$((step + 1)); printf '\n%s== %d. %s%s\n' "$bold" "$step" "$*" "$reset"; }
say() { printf '%s\n' "$*"; }
# Shows a command, then runs it with its output indented.
show_run() {
    printf '%s$ %s%s\n' "$dim" "$(display_cmd "$@")" "$reset"
    "$@" 2>&1 | sed 's/^/    /'
    return "${PIPESTATUS[0]}"
}
# A command line as a user would type it: the binaries by name, the data directories short.
plain_word='^[-A-Za-z0-9_./:=@%+,$]+$'
display_cmd() {
    local out="" w
    for w in "$@"; do
        w="${w#"$bin/"}"
        w="${w//"$root/"/}"
        if [[ "$w" =~ $plain_word ]]; then out+="$w "; else out+="'${w//\'/\'\\\'\'}' "; fi
    done
    printf '%s' "${out% }"
}
ok() { printf '%s✔ %s%s\n' "$green" "$*" "$reset"; }
fail() {
    printf '%s✘ %s%s\n' "$red" "$*" "$reset" >&2
    printf 'logs are in %s\n' "$demo" >&2
    exit 1
}
note() { printf '%s%s%s\n' "$yellow" "$*" "$reset"; }

# ---- state and clean-up ----------------------------------------------------------------------
demo="$root/.demo"
gw_dir="$demo/gateway"
ap_dir="$demo/approver"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until a file contains a pattern (grep -E), or fails after a timeout in seconds.
wait_for() {
    local file="$1" pattern="$2" secs="${3:-30}" what="${4:-$2}" i
    for ((i = 0; i < secs * 10; i++)); do
        if [[ -f "$file" ]] && grep -Eq -- "$pattern" "$file"; then
            return 0
        fi
        sleep 0.1
    done
    fail "timed out after ${secs}s waiting for $what (in $file)"
}
# Waits for a background process to end and sets `status` to its exit code; fails after a
# timeout. (Not used inside $(...): a subshell cannot wait for its parent's children.)
status=0
wait_exit() {
    local pid="$1" secs="${2:-60}" i
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && fail "process $pid did not finish within ${secs}s"
    status=0
    wait "$pid" || status=$?
}
# Reads a string field from the one-line JSON the request command prints with --json.
json_field() { sed -n "s/.*\"$2\":\"\\([^\"]*\\)\".*/\\1/p" "$1" | head -n1; }

# ---- 0. build --------------------------------------------------------------------------------
section "Build the two binaries"
say "countersign-gateway (the reference gateway and the requester CLI) and countersign (the"
say "headless approver). The first build takes a few minutes."
cargo build -p countersign-gateway -p countersign-approver --bins ||
    fail "cargo build failed"
bin="$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug"
[[ -x "$bin/countersign-gateway" && -x "$bin/countersign" ]] || bin="$root/target/debug"
gateway="$bin/countersign-gateway"
approver="$bin/countersign"
ok "built $(display_cmd "$gateway") and $(display_cmd "$approver")"

# A clean slate that cannot see the user's own configuration or data.
rm -rf "$demo"
mkdir -p "$demo/config"
export XDG_CONFIG_HOME="$demo/config" XDG_DATA_HOME="$demo/data"
unset COUNTERSIGN_DATA_DIR COUNTERSIGN_GATEWAY COUNTERSIGN_TOKEN COUNTERSIGN_LISTEN \
    COUNTERSIGN_PUBLIC_URL COUNTERSIGN_GATEWAY_NAME COUNTERSIGN_AUTHENTICATOR
export COUNTERSIGN_LOG="${COUNTERSIGN_LOG:-warn}"

# ---- 1. gateway ------------------------------------------------------------------------------
section "Start the gateway"
say "It stands in front of production and holds risky actions until an approver decides."
say "Port 0 lets the system pick a free loopback port; the gateway records its URL in"
say "$(display_cmd "$gw_dir")/serving-url."
printf '%s$ %s &%s\n' "$dim" "$(display_cmd "$gateway" --data-dir "$gw_dir" serve --listen 127.0.0.1:0)" "$reset"
"$gateway" --data-dir "$gw_dir" serve --listen 127.0.0.1:0 \
    >"$demo/gateway.out" 2>"$demo/gateway.log" &
pids+=($!)
gateway_pid=$!
for ((i = 0; i < 300; i++)); do
    grep -q '^listening on ' "$demo/gateway.out" 2>/dev/null && break
    kill -0 "$gateway_pid" 2>/dev/null || { cat "$demo/gateway.log" >&2; fail "the gateway exited"; }
    sleep 0.1
done
wait_for "$demo/gateway.out" '^listening on ' 1 "the gateway to listen"
url="$(tr -d '[:space:]' <"$gw_dir/serving-url")"
sed 's/^/    /' "$demo/gateway.out"
ok "gateway listening on $url"

# ---- 2. token and invite ---------------------------------------------------------------------
section "Create a requester token and invite an approver"
say "The token's name (deploy-bot) is the identity approvers see; the token is printed once"
say "and only its hash is stored."
printf '%s$ %s%s\n' "$dim" "$(display_cmd "$gateway" --data-dir "$gw_dir" token create deploy-bot)" "$reset"
token="$("$gateway" --data-dir "$gw_dir" token create deploy-bot)"
say "    ${token:0:12}…"
say "The invite is a one-time pairing link carrying the gateway URL, a one-time code and the"
say "fingerprint of the gateway's signing key, which the approver pins."
printf '%s$ %s%s\n' "$dim" "$(display_cmd "$gateway" --data-dir "$gw_dir" invite alice@example.com)" "$reset"
link="$("$gateway" --data-dir "$gw_dir" invite alice@example.com)"
say "    $link"
[[ "$link" == countersign://pair\?* ]] || fail "invite did not print a pairing link"

# ---- 3. pair and watch -----------------------------------------------------------------------
section "Pair Alice's approver device"
note "DEVELOPMENT MODE: --authenticator soft is a software passkey kept in a file in the data"
note "directory. It claims user verification without asking anybody: for demos and tests only."
note "(Security keys, --authenticator usb, are not supported by this version yet.)"
show_run "$approver" --data-dir "$ap_dir" --authenticator soft pair "$link" --device-name demo-laptop ||
    fail "pairing failed"
ok "paired: a device key was created and a passkey registered with the gateway"

watch_runs=0
watch_pid=""
# Starts `countersign watch` in the background with its own log, and waits until it is connected.
start_watch() {
    watch_runs=$((watch_runs + 1))
    watch_log="$demo/watch$watch_runs.log"
    printf '%s$ %s &%s\n' "$dim" "$(display_cmd "$approver" --data-dir "$ap_dir" watch)" "$reset"
    "$approver" --data-dir "$ap_dir" watch >"$watch_log" 2>&1 &
    pids+=($!)
    watch_pid=$!
    wait_for "$watch_log" '^connected to ' 30 "countersign watch to connect"
    kill -0 "$watch_pid" 2>/dev/null || fail "countersign watch exited"
    sed 's/^/    [watch] /' "$watch_log"
    watch_seen=$(wc -l <"$watch_log")
}
# Stops it as Ctrl-C would: one Countersign instance may use a data directory at a time, so the
# one-shot commands below run while watch is stopped.
stop_watch() {
    [[ -n "$watch_pid" ]] || return 0
    kill -INT "$watch_pid" 2>/dev/null || true
    wait "$watch_pid" 2>/dev/null || true
    watch_pid=""
}
# Prints what `watch` has printed since the last call.
watch_news() {
    local n
    n=$(wc -l <"$watch_log")
    if ((n > watch_seen)); then
        sed -n "$((watch_seen + 1)),${n}p" "$watch_log" | sed 's/^/    [watch] /'
    fi
    watch_seen=$n
}

say ""
say "Alice keeps a live stream open to the gateway (Server-Sent Events: push, not polling)."
start_watch

# ---- 4. approved request ---------------------------------------------------------------------
section "A requester asks to run a command on prod-db (number matching required)"
say "The requester (say, a CI job) is held until the request is decided; the command after"
say "-- runs only if it is approved."
req1=(request --gateway "$url" --token "$token" --action sql.exec --resource prod-db
    --reason "Mark invoice 1042 as paid (ticket OPS-77)" --approver alice@example.com
    --require-match --ttl 300 --json
    -- echo "UPDATE invoices SET status = 'paid' WHERE id = 1042 -> UPDATE 1")
printf '%s$ %s &%s\n' "$dim" "$(display_cmd countersign-gateway "${req1[@]//"$token"/\$TOKEN}")" "$reset"
"$gateway" "${req1[@]}" >"$demo/request1.out" 2>"$demo/request1.err" &
pids+=($!)
req1_pid=$!
wait_for "$demo/request1.out" '"id":' 30 "the first request to be created"
id1="$(json_field "$demo/request1.out" id)"
code1="$(json_field "$demo/request1.out" match_code)"
[[ -n "$id1" && -n "$code1" ]] || fail "could not read the request id and match code"
say "    request $id1 created"
say "    the requester is shown the match code: ${bold}$code1${reset}"

wait_for "$watch_log" "new request $id1" 30 "the request to reach countersign watch"
say ""
say "Alice's watch received it at once:"
watch_news
say ""
say "She stops watching (Ctrl-C) to decide: one Countersign instance may use a data directory"
say "at a time, and the desktop app would be that one."
stop_watch

say ""
say "Alice reads every field before deciding (untrusted text is shown escaped, never"
say "interpreted). --offline: watch already stored it, no need to ask the gateway again."
show_run "$approver" --data-dir "$ap_dir" --offline show "$id1" || fail "show failed"

say ""
say "She approves with her passkey (user verification), typing the code the requester sees."
say "The decision is signed with her device key over the request digest, the match code and"
say "the passkey assertion, written to her audit log, then sent."
rc=0
show_run "$approver" --data-dir "$ap_dir" --authenticator soft approve "$id1" --match-code "$code1" || rc=$?
if ((rc != 0)); then
    note "countersign approve exited $rc (see above); the requester's exit code below is what counts."
fi

wait_exit "$req1_pid" 60
rc1=$status
say ""
say "The requester was released; its stderr and the command's output:"
sed 's/^/    /' "$demo/request1.err"
sed '1d; s/^/    /' "$demo/request1.out"
[[ "$rc1" == 0 ]] || fail "the approved request exited $rc1, expected 0"
grep -q 'UPDATE 1' "$demo/request1.out" || fail "the approved command did not run"
ok "approved: the command ran and the requester exited 0"

# ---- 5. denied request -----------------------------------------------------------------------
section "A second request is denied with a reason"
start_watch
req2=(request --gateway "$url" --token "$token" --action sql.exec --resource prod-db
    --reason "Clean up old data" --approver alice@example.com --ttl 300 --json
    -- echo "DROP TABLE invoices -> this must never print")
printf '%s$ %s &%s\n' "$dim" "$(display_cmd countersign-gateway "${req2[@]//"$token"/\$TOKEN}")" "$reset"
"$gateway" "${req2[@]}" >"$demo/request2.out" 2>"$demo/request2.err" &
pids+=($!)
req2_pid=$!
wait_for "$demo/request2.out" '"id":' 30 "the second request to be created"
id2="$(json_field "$demo/request2.out" id)"
[[ -n "$id2" ]] || fail "could not read the second request id"
say "    request $id2 created"
wait_for "$watch_log" "new request $id2" 30 "the second request to reach countersign watch"
watch_news
stop_watch
say ""
say "Denying is one step and always possible; it is still signed with the device key."
rc=0
show_run "$approver" --data-dir "$ap_dir" deny "$id2" --reason "Not during the quarter-end freeze" || rc=$?
if ((rc != 0)); then
    note "countersign deny exited $rc (see above); the requester's exit code below is what counts."
fi
wait_exit "$req2_pid" 60
rc2=$status
say ""
say "The requester's stderr and output:"
sed 's/^/    /' "$demo/request2.err"
sed '1d; s/^/    /' "$demo/request2.out"
[[ "$rc2" == 3 ]] || fail "the denied request exited $rc2, expected 3"
if grep -q 'must never print' "$demo/request2.out"; then
    fail "the denied command ran"
fi
ok "denied: the requester exited 3 and the command did not run"

# ---- 6. audit --------------------------------------------------------------------------------
section "Verify both audit logs"
say "Settle anything still queued, then list what Alice has seen."
stop_watch
show_run "$approver" --data-dir "$ap_dir" sync || fail "sync failed"
show_run "$approver" --data-dir "$ap_dir" --offline list --all || fail "list failed"
say ""
say "Every request seen and every decision made is in a hash-chained, append-only log;"
say "verify names the first bad entry and the kind of damage (edit, deletion, insertion, reorder,"
say "truncation), checking the checkpoints Alice's device key signed over the log."
show_run "$approver" --data-dir "$ap_dir" audit verify || fail "the approver's audit log did not verify"
show_run "$gateway" --data-dir "$gw_dir" audit verify || fail "the gateway's audit chain did not verify"
ok "both audit logs are intact"

printf '\n%sDemo complete.%s Data, logs and audit logs are in %s\n' "$bold" "$reset" "$(display_cmd "$demo")"
say "Try: $(display_cmd "$approver") --data-dir .demo/approver audit export"
