#!/usr/bin/env bash
# Runs inside the QEMU guest that tests/guest/run.sh boots, as root, on the host's binaries:
# the reference gateway on the guest's loopback and `countersign --authenticator usb` with a
# virtual FIDO2 key on /dev/uhid (PIN 1234). Prints `guest: ok: ...` per step; the first
# failure prints the logs and exits non-zero.
set -uo pipefail
bin="$1"
vfido="$2"
w=/run/cs
mkdir -p "$w/home"
cd "$w" || exit 1
export HOME="$w/home" XDG_CONFIG_HOME="$w/config" XDG_DATA_HOME="$w/data" COUNTERSIGN_LOG=warn
unset COUNTERSIGN_AUTHENTICATOR COUNTERSIGN_DATA_DIR

fail() {
    echo "guest: FAIL: $*"
    for f in "$w"/*.out "$w"/*.log; do
        [[ -f "$f" ]] && { echo "--- $f"; cat "$f"; }
    done
    exit 1
}
ok() { echo "guest: ok: $*"; }

vf=""
plug() {
    "$vfido" --pin 1234 --hold "$w/hold" >"$w/vfido.out" 2>&1 &
    vf=$!
    for _ in $(seq 200); do
        [[ -e /dev/hidraw0 ]] && return 0
        sleep 0.1
    done
    fail "the virtual key made no /dev/hidraw0"
}
unplug() {
    kill -9 "$vf" 2>/dev/null
    wait "$vf" 2>/dev/null
    for _ in $(seq 100); do
        [[ -e /dev/hidraw0 ]] || return 0
        sleep 0.1
    done
    fail "/dev/hidraw0 stayed after the key was pulled out"
}

# This gateway wants a passkey for denials too.
printf 'deny_requires_passkey = true\n' >"$w/gateway.toml"
gw=("$bin/countersign-gateway" --config "$w/gateway.toml" --data-dir "$w/gw")
cs=("$bin/countersign" --data-dir "$w/alice" --key-store file --authenticator usb)

plug
ok "virtual key on $(ls /dev/hidraw*)"

"${gw[@]}" serve --listen 127.0.0.1:0 >"$w/gateway.out" 2>"$w/gateway.log" &
for _ in $(seq 600); do
    grep -q '^listening on ' "$w/gateway.out" 2>/dev/null && break
    sleep 0.1
done
url="$(tr -d '[:space:]' <"$w/gw/serving-url")" || fail "the gateway did not start"
token="$("${gw[@]}" token create deploy-bot)" || fail "token create"
link="$("${gw[@]}" invite alice@example.com)" || fail "invite"
ok "gateway on $url"

# Pairing registers a passkey on the key, verified with the PIN.
echo 1234 | "${cs[@]}" --pin-stdin pair "$link" >"$w/pair.out" 2>&1 || fail "pair"
grep -q 'security key' "$w/pair.out" || fail "pair did not say it used the security key"
ok "paired with the security key (PIN)"

# A request; prints its id, waits for the outcome, exits 0 when approved.
request() {
    "${gw[@]}" request --gateway "$url" --token "$token" --action deploy --resource "prod/$1" \
        --approver alice@example.com --json --wait >"$w/req-$1.out" 2>"$w/req-$1.log" &
    req=$!
    for _ in $(seq 300); do
        id="$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p' "$w/req-$1.out" 2>/dev/null)"
        [[ -n "$id" ]] && return 0
        sleep 0.1
    done
    fail "request $1 was not created"
}

request approve
echo 1234 | "${cs[@]}" --pin-stdin approve "$id" >"$w/approve.out" 2>&1 || fail "approve"
wait "$req" || fail "the requester did not see the approval"
ok "approved with the security key; the requester saw it"

request deny
"${cs[@]}" deny "$id" --reason "not now" >"$w/deny-nokey.out" 2>&1 </dev/null &&
    fail "denied without the passkey the gateway wants"
grep -q 'wants this denial confirmed' "$w/deny-nokey.out" || fail "a deny without a PIN did not say why"
grep -q 'needs its PIN' "$w/deny-nokey.out" || fail "a deny without a PIN did not say pin_required"
echo 1234 | "${cs[@]}" --pin-stdin deny "$id" --reason "not now" >"$w/deny.out" 2>&1 || fail "deny"
grep -q 'security key' "$w/deny.out" || fail "the deny did not use the security key"
wait "$req" && fail "the requester saw an approval after a deny"
ok "denied with the security key (the gateway wants a passkey to deny); the requester saw it"

# A wrong PIN: refused with its code and the tries the key says are left, nothing signed.
request wrong-pin
echo 0000 | "${cs[@]}" --pin-stdin --json approve "$id" >"$w/wrong-pin.out" 2>&1 &&
    fail "a wrong PIN approved"
grep -q '"pin_invalid"' "$w/wrong-pin.out" || fail "a wrong PIN did not say pin_invalid"
grep -q '7 tries are left' "$w/wrong-pin.out" || fail "a wrong PIN did not count the tries"
echo 1234 | "${cs[@]}" --pin-stdin approve "$id" >"$w/approve2.out" 2>&1 || fail "approve after a wrong PIN"
wait "$req" || fail "the requester did not see the approval after a wrong PIN"
ok "a wrong PIN was refused (pin_invalid, 7 tries left), the right one approved"

# A backup key, added as a person at a terminal does it: the PIN of the registered key for the
# proof, then, when asked, the registered key pulled out, the new one plugged in, Enter and the
# new key's PIN. `script` gives the command a terminal whose input is this fifo.
mkfifo "$w/tty"
script -qfec "${cs[*]} passkey add" /dev/null <"$w/tty" >"$w/add.out" 2>&1 &
adding=$!
trap 'fail "passkey add ended before its input was given"' PIPE
exec 3>"$w/tty"
sleep 1
echo 1234 >&3
for _ in $(seq 600); do
    grep -q 'Now plug in the new security key' "$w/add.out" && break
    kill -0 "$adding" 2>/dev/null || break
    sleep 0.1
done
grep -q 'Now plug in the new security key' "$w/add.out" || fail "passkey add did not ask for the new key"
unplug
plug
echo >&3
sleep 1
echo 1234 >&3
wait "$adding" || fail "passkey add"
exec 3>&-
trap - PIPE
grep -q 'passkeys of alice@example.com: 2' "$w/add.out" || fail "the gateway does not list two passkeys"
ok "a backup key was added (proven by the registered key, then registered)"

request backup
echo 1234 | "${cs[@]}" --pin-stdin approve "$id" >"$w/approve-backup.out" 2>&1 || fail "approve with the backup key"
wait "$req" || fail "the requester did not see the approval by the backup key"
ok "the backup key alone approved"

# The key pulled out while the ceremony waits for its touch.
request pulled
touch "$w/hold"
echo 1234 | "${cs[@]}" --pin-stdin --json approve "$id" >"$w/pulled.out" 2>&1 &
approving=$!
sleep 8
unplug
rm -f "$w/hold"
wait "$approving" && fail "approved with a key pulled out"
grep -q '"key_removed"' "$w/pulled.out" || fail "a pulled key did not say key_removed"
ok "the key pulled out mid-ceremony was said so (key_removed)"

# Another key (a new virtual key holds no passkey of alice's): refused, saying for whom.
plug
echo 1234 | "${cs[@]}" --pin-stdin --json approve "$id" >"$w/other-key.out" 2>&1 &&
    fail "a key with no passkey approved"
grep -q '"no_matching_credential"' "$w/other-key.out" || fail "another key did not say no_matching_credential"
grep -q 'not registered for alice@example.com' "$w/other-key.out" || fail "no_matching_credential did not say for whom"
ok "a key without alice's passkey was refused (no_matching_credential)"
kill "$req" 2>/dev/null
echo "guest: all steps passed"
