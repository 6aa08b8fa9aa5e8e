#!/usr/bin/env bash
# Installs what building Countersign needs on a fresh Debian 12 / Ubuntu machine, and only what
# is missing, so that running it again (every `make demo` and `make test` does) takes a moment.
#
#   system packages: build-essential (cc, for the bundled SQLite and ring), pkg-config, curl,
#                    ca-certificates, git; libudev and libclang for security keys over USB;
#                    the WebKitGTK/GTK/tray/D-Bus libraries Tauri needs
#   Rust:            a toolchain new enough for the workspace's rust-version, with rustfmt and
#                    clippy (through rustup; rustup itself is installed if cargo is missing)
#   Node.js and npm: the UI, built into the desktop app (and checked by `make test`), from apt
#   cargo-fuzz:      for the fuzzing smoke run in `make test` (--with-lints), by cargo install
#   tauri-driver and webkit2gtk-driver: the desktop end-to-end test (--with-lints)
#   cargo-deny:      licences, bans and sources of the dependency graph (--with-lints)
#   xvfb, xauth, fonts, imagemagick: the app where there is no screen (demo on a server, tests)
#   mount, dbus-daemon: the storage-fault tests' tmpfs and the notification tests' session bus
#
# Uses sudo only when not running as root. Set COUNTERSIGN_SKIP_DEPS=1 to skip every check.
set -euo pipefail

if [[ "${COUNTERSIGN_SKIP_DEPS:-}" == 1 ]]; then
    exit 0
fi

# The rust-version in Cargo.toml; older toolchains cannot build the workspace.
min_rust="1.89"
# `make test` needs rustfmt, clippy and Node.js too; `make demo` does not.
want_components=0
[[ "${1:-}" == "--with-lints" ]] && want_components=1

say() { printf 'deps: %s\n' "$*" >&2; }

as_root() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root for: $*"
        say "run this script as root, or install sudo"
        exit 1
    fi
}

# ---- system packages -------------------------------------------------------------------------
# dbus-daemon: dbus-run-session, the private session bus the notification tests run on.
# mount: mount/umount, with which the storage-fault tests make a small tmpfs and a read-only
# bind mount (build-essential also brings g++, which the fuzz targets' libFuzzer needs).
packages=(build-essential pkg-config curl ca-certificates git dbus-daemon mount)
# Security keys over USB HID (webauthn-authenticator-rs's `usb` feature, built by default):
# fido-hid-rs links libudev and generates its bindings with bindgen (libclang).
packages+=(libudev-dev libclang-dev)
# The desktop shell (src-tauri, built on its own outside the workspace): Tauri 2's WebKitGTK,
# GTK, tray and D-Bus libraries, and `file` for bundling.
packages+=(libwebkit2gtk-4.1-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev libgtk-3-dev
    librsvg2-dev libayatana-appindicator3-dev libssl-dev libdbus-1-dev libxdo-dev file)
# A virtual display and fonts, for running the app where there is no screen (the demo on a
# server, the desktop tests), and ImageMagick's `import` for the demo's screenshots there.
packages+=(xvfb xauth fonts-dejavu-core imagemagick)
# The desktop end-to-end test drives the app through WebKitGTK's WebDriver.
((want_components)) && packages+=(webkit2gtk-driver)
# The device-key store test runs a throwaway Secret Service (gnome-keyring) on its private bus,
# and waits for it with dbus-send.
((want_components)) && packages+=(gnome-keyring dbus-bin)
# The security key test in an emulated guest (tests/guest/run.sh): QEMU, a static busybox for
# its initramfs, and cpio to pack it. Debian's kernel is downloaded (not installed) by the test.
((want_components)) && packages+=(qemu-system-x86 busybox-static cpio)
((want_components)) && packages+=(python3 python3-venv)
# systemd-analyze checks the gateway's systemd unit (deploy/systemd) without running systemd.
((want_components)) && packages+=(systemd)
# The gateway's PostgreSQL backend is tested against a real server, started by the tests as an
# unprivileged user in a temporary directory (crates/test-support/src/postgres.rs).
((want_components)) && packages+=(postgresql)
# The failover tests put the gateway replicas behind a real HAProxy (tests/tests/e2e/replicas.rs).
((want_components)) && packages+=(haproxy)
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for p in "${packages[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
            missing+=("$p")
        fi
    done
    if ((${#missing[@]})); then
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
else
    # Not Debian: check for the tools themselves and say what is missing.
    for t in cc make pkg-config curl git; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    if ((${#missing[@]})); then
        say "this is not a Debian-like system; please install: ${missing[*]}"
        exit 1
    fi
fi

# ---- Rust ------------------------------------------------------------------------------------
export PATH="$HOME/.cargo/bin:$PATH"

version_ge() { # version_ge A B: A >= B
    [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

install_rustup() {
    say "installing Rust with rustup (stable, minimal profile, rustfmt and clippy)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y --no-modify-path --profile minimal --default-toolchain stable \
            --component rustfmt --component clippy
}

if ! command -v cargo >/dev/null 2>&1; then
    install_rustup
fi
have="$(cargo --version | awk '{print $2}')"
if ! version_ge "${have%%-*}" "$min_rust"; then
    if command -v rustup >/dev/null 2>&1; then
        say "cargo $have is older than $min_rust; updating the stable toolchain"
        rustup toolchain install stable --profile minimal --component rustfmt --component clippy
        rustup default stable
    else
        # A distribution cargo that is too old: a rustup toolchain in ~/.cargo/bin comes first
        # on PATH (the Makefile puts it there).
        say "cargo $have is older than $min_rust"
        install_rustup
    fi
fi

if ((want_components)); then
    for c in fmt clippy; do
        if ! cargo "$c" --version >/dev/null 2>&1; then
            if command -v rustup >/dev/null 2>&1; then
                say "adding the rust component for cargo $c"
                rustup component add "$([[ $c == fmt ]] && echo rustfmt || echo clippy)"
            else
                say "cargo $c is missing and there is no rustup to add it"
                exit 1
            fi
        fi
    done
fi

# ---- cargo-fuzz (the fuzzing smoke run in `make test`) ----------------------------------------
if ((want_components)) && ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# ---- cargo-deny (licences, bans and sources in `make test`; deny.toml) -------------------------
if ((want_components)) && ! command -v cargo-deny >/dev/null 2>&1; then
    say "installing cargo-deny"
    cargo install cargo-deny --locked
fi

# ---- tauri-driver (the desktop end-to-end test's WebDriver front) -----------------------------
if ((want_components)) && ! command -v tauri-driver >/dev/null 2>&1; then
    say "installing tauri-driver"
    cargo install tauri-driver --locked
fi

# ---- Python (the second-language conformance test, tests/conformance) ------------------------
# A virtual environment of its own under the target directory, with the PyPI packages the
# independent verifier uses (the e2e test runs it from there), and aiosmtpd, the mail server
# of the gateway's mail tests (crates/test-support/smtp_sink.py).
if ((want_components)); then
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    venv="${CARGO_TARGET_DIR:-$here/target}/conformance-venv"
    if ! "$venv/bin/python3" -c 'import cryptography, rfc8785, fido2, jsonschema, aiosmtpd' >/dev/null 2>&1; then
        say "installing the conformance test's Python packages into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check 'cryptography==48.0.0' 'rfc8785==0.1.4' 'fido2==2.2.1' 'jsonschema==4.25.1' 'aiosmtpd==1.4.6'
    fi
fi

# ---- Node.js (the UI: built into the desktop app, and its checks in `make test`) --------------
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -f "$root/ui/package.json" ]]; then
    # Vite 7 and Vitest 3 need Node.js 20.19 or newer.
    min_node="20.19"
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1; then
            say "installing nodejs and npm"
            as_root apt-get update -q
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm
        else
            say "please install Node.js $min_node or newer with npm"
            exit 1
        fi
    fi
    node_have="$(node --version)"
    node_have="${node_have#v}"
    if ! version_ge "$node_have" "$min_node"; then
        say "Node.js $node_have is older than $min_node, which the UI's tools need;"
        say "install a newer Node.js (e.g. from your distribution's backports or nodesource)"
        exit 1
    fi
fi
