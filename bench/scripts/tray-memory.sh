#!/usr/bin/env bash
# The desktop app's memory with its window open, after the window is closed (the app stays in
# the tray), and the time to bring the window back; plus the headless engine (`countersign
# watch`) for comparison. docs/performance.md section 7b. Run on a virtual display and a
# private session bus, after building the binaries (debug, or BIN=target/release after
# `make deb`):
#
#   xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- bash bench/scripts/tray-memory.sh
#
# Needs xdotool (Debian) and python-xlib (PyPI): closing the window the way a window manager's
# close button does (WM_DELETE_WINDOW), which Xvfb alone has no window manager for.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${BIN:-${CARGO_TARGET_DIR:-$root/target}/debug}"
settle="${SETTLE:-12}"
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# PSS of a process and every process below it (WebKit's web and network processes).
pss() {
    local total=0 p v
    for p in "$1" $(pgrep -P "$1" || true); do
        v="$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)"
        [[ -n "$v" ]] || continue
        printf '  %-16s PSS %6d KiB\n' "$(cat "/proc/$p/comm")" "$v"
        total=$((total + v))
    done
    printf '  total            PSS %6d KiB (%d MiB)\n' "$total" "$((total / 1024))"
}

close_window() {
    python3 - "$1" <<'PY'
import sys
from Xlib import X, display
from Xlib.protocol import event
d = display.Display()
w = d.create_resource_object("window", int(sys.argv[1]))
protocols, delete = d.intern_atom("WM_PROTOCOLS"), d.intern_atom("WM_DELETE_WINDOW")
w.send_event(event.ClientMessage(window=w, client_type=protocols,
                                 data=(32, [delete, X.CurrentTime, 0, 0, 0])), event_mask=X.NoEventMask)
d.flush()
PY
}

mkdir -p "$work/gw"
"$bin/countersign-gateway" --data-dir "$work/gw" serve --listen 127.0.0.1:0 >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s "$work/gw/serving-url" ]] && break; sleep 0.1; done
invite() { "$bin/countersign-gateway" --data-dir "$work/gw" invite "$1"; }

export COUNTERSIGN_KEY_STORE=file COUNTERSIGN_AUTHENTICATOR=soft COUNTERSIGN_SOFT_TOUCH_MS=10
COUNTERSIGN_DATA_DIR="$work/app" COUNTERSIGN_PAIR_LINK="$(invite alice@example.com)" \
    "$bin/countersign-desktop" >"$work/app.log" 2>&1 &
app=$!
pids+=($app)
sleep "$settle"
echo "window open (paired, connected, showing the inbox):"
pss "$app"

wid="$(xdotool search --pid "$app" --onlyvisible --name Countersign | head -n1)"
close_window "$wid"
sleep "$settle"
kill -0 "$app" 2>/dev/null || { echo "the app exited when its window closed"; exit 1; }
echo "window closed (in the tray):"
pss "$app"

start="$(date +%s%N)"
COUNTERSIGN_DATA_DIR="$work/app" "$bin/countersign-desktop" "countersign://request/none" >/dev/null 2>&1
until xdotool search --pid "$app" --onlyvisible --name Countersign >/dev/null 2>&1; do sleep 0.01; done
echo "a deep link to the closed app: window mapped after $((($(date +%s%N) - start) / 1000000)) ms"

"$bin/countersign" --data-dir "$work/cli" pair "$(invite bob@example.com)" >/dev/null
"$bin/countersign" --data-dir "$work/cli" watch >/dev/null 2>&1 &
watch=$!
pids+=($watch)
sleep "$settle"
echo "the headless engine (countersign watch: engine, stream, outbox; no notifications, no tray):"
pss "$watch"
