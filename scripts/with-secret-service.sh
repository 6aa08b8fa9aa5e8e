#!/usr/bin/env bash
# Runs a command with a Secret Service on the current session bus: gnome-keyring-daemon, its
# keyrings in a temporary directory, unlocked with a throwaway password. Use it inside a private
# bus (`dbus-run-session -- scripts/with-secret-service.sh CMD ...`), never on a desktop's own.
# Sets COUNTERSIGN_REQUIRE_SECRET_SERVICE=1 so the key-store test fails instead of skipping.
set -euo pipefail

[[ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ]] || { echo "no session bus: run under dbus-run-session" >&2; exit 1; }
command -v gnome-keyring-daemon >/dev/null || { echo "gnome-keyring-daemon is missing (apt install gnome-keyring)" >&2; exit 1; }

home="$(mktemp -d -t countersign-keyring.XXXXXX)"
printf 'countersign-tests\n' | HOME="$home" XDG_DATA_HOME="$home/data" XDG_RUNTIME_DIR="$home" \
    gnome-keyring-daemon --foreground --unlock --components=secrets >/dev/null 2>"$home/daemon.log" &
daemon=$!
cleanup() { kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; rm -rf "$home"; }
trap cleanup EXIT

# Ready once it owns org.freedesktop.secrets on this bus.
for _ in $(seq 100); do
    if dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q "boolean true"; then
        break
    fi
    sleep 0.1
done
export COUNTERSIGN_REQUIRE_SECRET_SERVICE=1
"$@"
