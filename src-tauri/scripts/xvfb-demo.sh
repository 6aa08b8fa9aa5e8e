#!/usr/bin/env bash
# Runs the desktop app against a local gateway under a virtual display, with a private session
# bus and dunst for notifications, raises a request and takes screenshots.
#
#   src-tauri/scripts/xvfb-demo.sh [OUT_DIR]
#
# Needs: target/debug/countersign-desktop and countersign-gateway built, xvfb-run, dbus-run-session,
# dunst, ImageMagick's /usr/bin/import. Screenshots and logs land in OUT_DIR (default: a new
# temporary directory). The inner part runs inside `dbus-run-session` + `xvfb-run`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$(mktemp -d -t countersign-desktop-demo.XXXXXX)}"
bin="$root/target/debug"

if [[ "${DEMO_INNER:-}" != 1 ]]; then
    rm -rf "$out"
    mkdir -p "$out"
    export DEMO_INNER=1
    exec xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- "$0" "$out"
fi

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

gw="$out/gateway"
app_dir="$out/approver"
mkdir -p "$gw" "$app_dir"

dunst >"$out/dunst.log" 2>&1 &
pids+=($!)

"$bin/countersign-gateway" --data-dir "$gw" serve --listen 127.0.0.1:0 >"$out/gateway.out" 2>"$out/gateway.log" &
pids+=($!)
for _ in $(seq 100); do [[ -s "$gw/serving-url" ]] && break; sleep 0.1; done
url="$(tr -d '[:space:]' <"$gw/serving-url")"
token="$("$bin/countersign-gateway" --data-dir "$gw" token create deploy-bot)"
link="$("$bin/countersign-gateway" --data-dir "$gw" invite alice@example.com)"
echo "gateway $url"

COUNTERSIGN_DATA_DIR="$app_dir" COUNTERSIGN_AUTHENTICATOR=soft COUNTERSIGN_PAIR_LINK="$link" \
    COUNTERSIGN_KEY_STORE=file \
    COUNTERSIGN_LOG="${COUNTERSIGN_LOG:-info}" \
    "$bin/countersign-desktop" >"$out/desktop.out" 2>"$out/desktop.log" &
app_pid=$!
pids+=($app_pid)

for _ in $(seq 300); do grep -q "development pairing done\|already paired" "$out/desktop.log" && break; sleep 0.1; done
sleep 2
/usr/bin/import -window root "$out/1-started.png"

"$bin/countersign-gateway" request --gateway "$url" --token "$token" \
    --action sql.exec --resource prod-db --risk high --reason "Rotate the reporting role's password" \
    --summary "Rotate the reporting role's password on prod-db" \
    --detail "ALTER ROLE reporting WITH PASSWORD 'REDACTED';" \
    --approver alice@example.com --wait \
    >"$out/request.out" 2>"$out/request.log" &
pids+=($!)
sleep 4
/usr/bin/import -window root "$out/2-request.png"

# The notification's default action ("Review") opens the request in the window; it decides
# nothing.
if command -v dunstctl >/dev/null; then
    dunstctl action 0 >>"$out/dunst.log" 2>&1 || true
    sleep 2
    /usr/bin/import -window root "$out/2b-notification-review.png"
fi

# A second launch with a deep link: the first instance takes it and the second exits.
COUNTERSIGN_DATA_DIR="$app_dir" "$bin/countersign-desktop" "countersign://request/does-not-exist" \
    >"$out/second.out" 2>"$out/second.log" || true
COUNTERSIGN_DATA_DIR="$app_dir" "$bin/countersign-desktop" "https://evil.example/x" \
    >>"$out/second.out" 2>>"$out/second.log" || true
sleep 2
/usr/bin/import -window root "$out/3-deeplinks.png"
kill -0 "$app_pid" && echo "app still running after the second launches"
# DEMO_HOLD=N keeps everything running N more seconds, for driving the window by hand
# (DISPLAY and XAUTHORITY are in OUT_DIR/display.env).
printf 'export DISPLAY=%q XAUTHORITY=%q DBUS_SESSION_BUS_ADDRESS=%q\n' \
    "$DISPLAY" "${XAUTHORITY:-}" "${DBUS_SESSION_BUS_ADDRESS:-}" >"$out/display.env"
sleep "${DEMO_HOLD:-0}"
echo "screenshots and logs in $out"
