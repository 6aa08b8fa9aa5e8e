#!/usr/bin/env bash
# The desktop app's memory with its window open (the window process, its WebKit processes and
# the background agent), after the window is closed (the agent alone, in the tray), and the
# time from a click on the tray icon (StatusNotifierItem.Activate over D-Bus) to the new
# window mapped and its page loaded; plus the headless engine (`countersign watch`) for
# comparison. docs/performance.md section 7b. Run on a virtual display and a private session
# bus, after building the binaries (debug, or BIN=target/release after `make deb`):
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
    # KEEP_LOG=<file>: keep the app's log (the agent's and the windows' lines, timestamped).
    [[ -n "${KEEP_LOG:-}" && -f "$work/app.log" ]] && cp "$work/app.log" "$KEEP_LOG"
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

# A desktop session runs the accessibility bus for its whole length, as here; a bare
# dbus-run-session would activate it on demand. A11Y_BUS=0 leaves it to activation.
if [[ "${A11Y_BUS:-1}" == 1 && -x /usr/libexec/at-spi-bus-launcher ]]; then
    /usr/libexec/at-spi-bus-launcher --launch-immediately >/dev/null 2>&1 &
    pids+=($!)
    sleep 1
fi

mkdir -p "$work/gw"
"$bin/countersign-gateway" --data-dir "$work/gw" serve --listen 127.0.0.1:0 >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s "$work/gw/serving-url" ]] && break; sleep 0.1; done
invite() { "$bin/countersign-gateway" --data-dir "$work/gw" invite "$1"; }

export COUNTERSIGN_KEY_STORE=file COUNTERSIGN_AUTHENTICATOR=soft COUNTERSIGN_SOFT_TOUCH_MS=10
export COUNTERSIGN_DATA_DIR="$work/app"
# The window starts the agent beside it (the agent pairs, in development mode).
COUNTERSIGN_PAIR_LINK="$(invite alice@example.com)" "$bin/countersign-desktop" >>"$work/app.log" 2>&1 &
app=$!
pids+=($app)
sleep "$settle"
agent="$(cat "$work/app/lock")"
pids+=($agent)
grep -q countersign-agent "/proc/$agent/cmdline" || { echo "no agent holds the data directory"; exit 1; }
echo "window open (paired, connected, showing the inbox; the agent is the window's child):"
pss "$app"

wid="$(xdotool search --pid "$app" --onlyvisible --name Countersign | head -n1)"
close_window "$wid"
for _ in $(seq 100); do kill -0 "$app" 2>/dev/null || break; sleep 0.1; done
kill -0 "$app" 2>/dev/null && { echo "the window process did not exit when its window closed"; exit 1; }
sleep "$settle"
kill -0 "$agent" 2>/dev/null || { echo "the agent exited with the window"; exit 1; }
echo "window closed (the agent in the tray; no window process runs):"
pss "$agent"

# A click on the tray icon, as a panel sends it (StatusNotifierItem.Activate), then: the new
# window mapped, its first paint (the header's dark text pixels on screen, read back from the
# X server every 10 ms) and its page's load event (the window's "page loaded" line; the window
# the agent starts logs to the agent's stderr, app.log).
for i in $(seq "${CLICKS:-5}"); do
    python3 - "$agent" "$work/app.log" <<'PY'
import subprocess, sys, time
from Xlib import X, display
agent, log = sys.argv[1], sys.argv[2]
d = display.Display()
root = d.screen().root
NAME = d.intern_atom("_NET_WM_NAME")

def countersign_window():
    for w in root.query_tree().children:
        try:
            if w.get_attributes().map_state != X.IsViewable:
                continue
            name = w.get_wm_name() or ""
            for c in w.query_tree().children if not name else []:
                name = c.get_wm_name() or ""
            if "Countersign" in name:
                return w
        except Exception:
            pass
    return None

def painted(w):
    # The header's "Countersign" title: dark text on the light header bar, top left of the
    # page. A window not drawn yet is black (Xvfb), or GTK's plain light background.
    try:
        img = w.get_image(20, 10, 240, 40, X.ZPixmap, 0xFFFFFFFF).data
    except Exception:
        return False
    px = [(img[k], img[k + 1], img[k + 2]) for k in range(0, len(img), 4)]
    light = sum(1 for p in px if min(p) > 200)
    dark = sum(1 for p in px if max(p) < 90)
    return light > len(px) // 2 and dark >= 20

loaded_before = open(log, errors="replace").read().count("page loaded")
start = time.monotonic()
subprocess.run(["dbus-send", "--session", "--type=method_call",
                f"--dest=org.kde.StatusNotifierItem-{agent}-1", "/StatusNotifierItem",
                "org.kde.StatusNotifierItem.Activate", "int32:0", "int32:0"], check=True)
w = None
while w is None:
    w = countersign_window()
    if w is None:
        time.sleep(0.005)
mapped = time.monotonic() - start
while not painted(w):
    time.sleep(0.01)
paint = time.monotonic() - start
while open(log, errors="replace").read().count("page loaded") <= loaded_before:
    time.sleep(0.002)
loaded = time.monotonic() - start
print(f"tray click: window mapped after {mapped*1000:.0f} ms, first paint after {paint*1000:.0f} ms, page loaded after {loaded*1000:.0f} ms")
PY
    win="$(pgrep -n -f "$bin/countersign-desktop")"
    [[ $i == 1 ]] && { echo "with the window open again:"; pss "$win" | grep total; }
    wid="$(xdotool search --pid "$win" --onlyvisible --name Countersign | head -n1)"
    close_window "$wid"
    for _ in $(seq 100); do kill -0 "$win" 2>/dev/null || break; sleep 0.1; done
    sleep "${PAUSE:-4}"
done

"$bin/countersign" --data-dir "$work/cli" pair "$(invite bob@example.com)" >/dev/null
"$bin/countersign" --data-dir "$work/cli" watch >/dev/null 2>&1 &
watch=$!
pids+=($watch)
sleep "$settle"
echo "the headless engine (countersign watch: engine, stream, outbox; no notifications, no tray):"
pss "$watch"
