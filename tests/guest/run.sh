#!/usr/bin/env bash
# The real security key path, end to end: the product's `countersign --authenticator usb`
# (webauthn-authenticator-rs's CTAP2 over USB HID, /dev/hidraw) against a virtual FIDO2 key on
# /dev/uhid, inside a QEMU guest. These machines have no USB bus and their kernel no UHID; the
# guest runs Debian's own kernel, which has both, with the host's root file system shared
# read-only over 9p, so it runs the very binaries `cargo build --workspace --bins` made.
#
# The guest has no network device: the gateway runs inside it too, on the guest's loopback.
# The virtual key (tests/guest/vfido, soft-fido2, AGPL-3.0) is a test tool built and run as its
# own program; nothing of Countersign links it.
#
#   bash tests/guest/run.sh          (after `cargo build --workspace --bins`; `make test` runs it)
#
# Needs qemu-system-x86, busybox-static (its insmod), cpio, and apt-get to download
# the kernel package (cached in target/guest). Exits non-zero with the guest's log on failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
work="$target/guest"
bin="$target/debug"
mkdir -p "$work"
say() { printf 'guest-test: %s\n' "$*" >&2; }

for b in countersign countersign-gateway; do
    [[ -x "$bin/$b" ]] || { say "$bin/$b is missing: run cargo build --workspace --bins first"; exit 1; }
done
for t in qemu-system-x86_64 busybox dpkg-deb apt-get; do
    command -v "$t" >/dev/null || { say "$t is missing (scripts/deps.sh --with-lints installs it)"; exit 1; }
done

# ---- the virtual key ---------------------------------------------------------------------------
say "building the virtual FIDO2 key (tests/guest/vfido)"
CARGO_TARGET_DIR="$target/vfido" cargo build --quiet --locked \
    --manifest-path "$root/tests/guest/vfido/Cargo.toml"
vfido="$target/vfido/debug/countersign-vfido"

# ---- Debian's kernel, unpacked (not installed) -------------------------------------------------
kdir="$work/kernel"
if [[ ! -f "$kdir/done" ]]; then
    rm -rf "$kdir" && mkdir -p "$kdir"
    pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)"
    if [[ -z "$pkg" ]]; then
        say "updating the package lists to find Debian's kernel package"
        if [[ "$(id -u)" == 0 ]]; then apt-get update -q >/dev/null; else sudo apt-get update -q >/dev/null; fi
        pkg="$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)"
    fi
    [[ -n "$pkg" ]] || { say "no linux-image-*-amd64 package is known to apt"; exit 1; }
    say "downloading $pkg"
    (cd "$kdir" && apt-get download -q "$pkg" >/dev/null 2>&1) ||
        { say "apt-get download $pkg failed"; exit 1; }
    dpkg-deb -x "$kdir"/linux-image-*.deb "$kdir/root"
    rm -f "$kdir"/linux-image-*.deb
    touch "$kdir/done"
fi
vmlinuz="$(ls "$kdir"/root/boot/vmlinuz-* | head -n1)"
kver="${vmlinuz##*/vmlinuz-}"
mods="$kdir/root/lib/modules/$kver"

# ---- the initramfs: busybox, the modules for 9p and UHID, and /init ----------------------------
initrd="$work/init.cpio.gz"
ird="$work/initramfs"
rm -rf "$ird" && mkdir -p "$ird"/{bin,dev,proc,sys,host,modules}
cp "$(command -v busybox)" "$ird/bin/busybox"
: >"$ird/modules.order"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci netfs fscache \
    9pnet 9pnet_virtio 9p hid hid-generic uhid; do
    # The package has no modules.dep (depmod makes it at install): found by name, loaded in
    # this order, which is their dependency order.
    path="$(cd "$mods" && find kernel -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n1)"
    if [[ -z "$path" ]]; then
        # Built into this kernel.
        continue
    fi
    out="$ird/modules/$(basename "${path%.xz}")"
    out="${out%.zst}"
    case "$path" in
        *.xz) xz -dc "$mods/$path" >"$out" ;;
        *.zst) zstd -qdc "$mods/$path" >"$out" ;;
        *) cp "$mods/$path" "$out" ;;
    esac
    basename "$out" >>"$ird/modules.order"
done
cat >"$ird/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod "/modules/$m" || echo "guest: insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro hostfs /host || { echo "guest: no 9p root"; poweroff -f; }
for d in dev proc sys; do mount --bind "/$d" "/host/$d"; done
# Terminals, for the step that plays a person at one (`script`).
mkdir -p /host/dev/pts && mount -t devpts devpts /host/dev/pts
# The only writable place: a tmpfs over the host's /run.
mount -t tmpfs -o mode=0755 run /host/run
ip link set lo up
scenario="$(sed -n 's/.* cs_scenario=\([^ ]*\).*/\1/p' /proc/cmdline)"
args="$(sed -n 's/.* cs_args=\([^ ]*\).*/\1/p' /proc/cmdline | tr ',' ' ')"
chroot /host /bin/bash "$scenario" $args
echo "guest: scenario exit $?"
poweroff -f
INIT
chmod +x "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) >"$initrd"

# ---- boot -----------------------------------------------------------------------------------------
log="$work/guest.log"
say "booting $kver under emulation (TCG); the log is $log"
started=$(date +%s)
timeout 600 qemu-system-x86_64 -accel tcg -m 1024 -smp 1 -nographic -no-reboot -nic none \
    -kernel "$vmlinuz" -initrd "$initrd" \
    -append "console=ttyS0 panic=-1 quiet cs_scenario=$root/tests/guest/scenario.sh cs_args=$bin,$vfido" \
    -virtfs local,path=/,mount_tag=hostfs,security_model=none,readonly=on,multidevs=remap \
    </dev/null >"$log" 2>&1 || true
say "the guest ran $(($(date +%s) - started)) s"
if grep -q '^guest: scenario exit 0' "$log"; then
    grep '^guest: ' "$log" | sed 's/^/  /' >&2
    say "passed"
else
    cat "$log" >&2
    say "FAILED"
    exit 1
fi
