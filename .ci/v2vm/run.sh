#!/usr/bin/env bash
# Boots a pure cgroup v2 Linux VM (QEMU, software emulation, no KVM, no network) and runs
# SCRIPT inside it as root, next to a static stagebox, so stagebox can be tried on a
# pure-v2 host. Streams the serial console and exits with SCRIPT's status.
#
#   run.sh [--binary PATH] SCRIPT [FILES...]
#
# The binary goes to /usr/local/bin/stagebox, FILES to /work (the script's cwd), SCRIPT runs
# with `sh`. Environment: V2VM_CACHE (packages and kernels; /var/cache/stagebox-v2vm),
# V2VM_MEM (MiB; 1024), V2VM_CPUS (2), V2VM_TIMEOUT (seconds for the whole VM; 1200),
# V2VM_KERNEL (a linux-image package name; default the newest 6.1 amd64 one apt knows),
# V2VM_MODULES (kernel modules to insmod inside, with their dependencies; overlay),
# V2VM_APPEND (more kernel arguments; loglevel=7 undoes quiet).
# Needs root on Debian 12 (apt-get, mknod); touches no host mount, cgroup or module.
# Exit status: SCRIPT's; 124 when the VM ran out of time; 125 when no status came back.
set -euo pipefail
shopt -s inherit_errexit # failures inside $(...) stop the script too

here=$(cd "$(dirname "$0")" && pwd)
binary=$here/../../target/x86_64-unknown-linux-gnu/debug/stagebox
if [ "${1:-}" = --binary ]; then binary=${2:?--binary needs a path}; shift 2; fi
[ $# -ge 1 ] || { echo "usage: $0 [--binary PATH] SCRIPT [FILES...]" >&2; exit 2; }
script=$1; shift
cache=${V2VM_CACHE:-/var/cache/stagebox-v2vm}
mem=${V2VM_MEM:-1024} cpus=${V2VM_CPUS:-2} vm_timeout=${V2VM_TIMEOUT:-1200}
modules=${V2VM_MODULES:-overlay}
log() { echo "v2vm: $*" >&2; }
apt_get() { timeout 900 apt-get "$@"; } # the package registry is the only network used

[ "$(id -u)" = 0 ] || { log "run as root (apt-get, mknod)"; exit 2; }
[ -f "$binary" ] || { log "no binary at $binary (build it, or pass --binary)"; exit 2; }
ldd "$binary" 2>&1 | grep -q 'statically linked\|not a dynamic executable' ||
    { log "$binary is not statically linked (build with crt-static)"; exit 2; }
[ -f "$script" ] || { log "no script $script"; exit 2; }
for f in "$@"; do [ -e "$f" ] || { log "no file $f"; exit 2; }; done

# Host tools, installed only when missing.
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt_get update -qq
    apt_get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# fetch PKG: PKG's .deb extracted once into $cache/pkg/PKG; prints that directory.
fetch() {
    local dir=$cache/pkg/$1
    if [ ! -e "$dir/.done" ]; then
        log "downloading $1"
        rm -rf "$dir" && mkdir -p "$cache/deb" "$dir"
        (cd "$cache/deb" && { apt_get download -q "$1" 2>/dev/null ||
            { apt_get update -qq && apt_get download -q "$1"; }; }) >&2
        dpkg-deb -x "$(ls -t "$cache/deb/$1"_*.deb | head -n1)" "$dir"
        rm -f "$cache/deb/$1"_*.deb
        touch "$dir/.done"
    fi
    echo "$dir"
}
# The newest Debian 6.1 generic amd64 kernel in apt's lists (by pattern, to outlive bumps).
newest_kernel() {
    apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' | cut -d' ' -f1 | sort -V | tail -n1
}
kpkg=${V2VM_KERNEL:-$(newest_kernel)}
[ -n "$kpkg" ] || { apt_get update -qq; kpkg=$(newest_kernel); }
[ -n "$kpkg" ] || { log "apt knows no linux-image-6.1.0-*-amd64 package"; exit 2; }
kdir=$(fetch "$kpkg")
for old in "$cache"/pkg/linux-image-*; do [ "$old" = "$kdir" ] || rm -rf "$old"; done # ~400 MB each
bbdir=$(fetch busybox-static) # the package's static busybox, whatever the host has installed
vmlinuz=$(ls "$kdir"/boot/vmlinuz-* | head -n1)
moddir=$(ls -d "$kdir"/lib/modules/* | head -n1)

# The initramfs, built afresh each run in a temporary directory.
tmp=$(mktemp -d /tmp/v2vm.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,root,work,dev,proc,sys,v2vm/modules}
cp "$bbdir/bin/busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list-full); do # the links `busybox --install -s` makes
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
mknod -m 600 "$root/dev/console" c 5 1 # init's stdio before devtmpfs is mounted
cp "$here/init.sh" "$root/init" && chmod 755 "$root/init"
cp "$binary" "$root/usr/local/bin/stagebox"
cp "$script" "$root/v2vm/script.sh"
[ $# -eq 0 ] || cp -aL "$@" "$root/work/" # symlinks followed: host paths mean nothing inside
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
# Modules with their dependencies (the .ko's depends= field; the package has no modules.dep),
# dependencies first, uncompressed here. Nothing is loaded on this host.
load=()
add_module() {
    local path dep
    case " ${load[*]-} " in *" $1.ko "*) return ;; esac
    path=$(find "$moddir" -name "$1.ko" -o -name "$1.ko.[gxz]*" | head -n1)
    [ -n "$path" ] || { log "no module $1 in $moddir"; exit 2; }
    case $path in
        *.xz) xz -dc "$path" ;; *.zst) zstd -dc "$path" ;; *.gz) gzip -dc "$path" ;; *) cat "$path" ;;
    esac >"$root/v2vm/modules/$1.ko"
    for dep in $(tr '\0' '\n' <"$root/v2vm/modules/$1.ko" | sed -n 's/^depends=//p' | tr , ' '); do
        add_module "$dep"
    done
    load+=("$1.ko")
}
for m in $modules; do add_module "$m"; done
# The script's own limit leaves the VM a minute to report and power off.
script_timeout=$((vm_timeout > 120 ? vm_timeout - 60 : vm_timeout / 2))
printf 'V2VM_SCRIPT_TIMEOUT=%s\nV2VM_MODULES="%s"\n' "$script_timeout" "${load[*]-}" >"$root/v2vm/config"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$tmp/initrd.gz"
log "kernel $kpkg, initramfs $(du -h "$tmp/initrd.gz" | cut -f1), modules: ${load[*]-none}"

# Boot. The console is streamed (carriage returns and terminal escapes dropped) and kept,
# to find the marker. --foreground keeps qemu in our process group, so killing it stops qemu.
start=$(date +%s)
set +e
timeout --foreground -k 10 "$vm_timeout" qemu-system-x86_64 -accel tcg,thread=multi -cpu max \
    -smp "$cpus" -m "$mem" -nographic -nodefaults -serial stdio -no-reboot -nic none \
    -kernel "$vmlinuz" -initrd "$tmp/initrd.gz" \
    -append "console=ttyS0 cgroup_no_v1=all panic=-1 quiet ${V2VM_APPEND:-}" </dev/null |
    sed -u 's/\r$//; s/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' | tee "$tmp/console.log"
qemu_rc=${PIPESTATUS[0]}
set -e
rc=$(grep -a -o '^V2VM-EXIT=[0-9]*' "$tmp/console.log" | tail -n1 | cut -d= -f2 || true)
log "VM finished after $(($(date +%s) - start))s (qemu status $qemu_rc, script status ${rc:-none})"
if [ -z "$rc" ]; then
    [ "$qemu_rc" = 124 ] && { log "the VM ran past ${vm_timeout}s"; exit 124; }
    log "no V2VM-EXIT marker on the console"; exit 125
fi
exit "$rc"
