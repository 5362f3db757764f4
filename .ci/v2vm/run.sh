#!/usr/bin/env bash
# Boots a Linux VM (QEMU, software emulation, no KVM, no network) with a chosen cgroup layout
# (pure cgroup v2 by default, or pure v1) and runs SCRIPT inside it as root, next to a static
# stagebox, so stagebox can be tried on a host whose layout differs from this one. Streams
# the serial console and exits with SCRIPT's status.
#
#   run.sh [--binary PATH] [--tree PATH]... [--tree-list FILE] [--strip-debug] [--out DIR]
#          SCRIPT [FILES...]
#
# The binary goes to /usr/local/bin/stagebox, FILES to /work (the script's cwd), SCRIPT runs
# with `sh`. --tree copies a host file or directory (absolute path) into the VM at the same
# absolute path (a test binary that names its paths at compile time finds them there);
# --tree-list FILE does so for each absolute path listed in FILE, one a line. --strip-debug
# drops the debug sections of the binary and of each ELF file named by --tree or --tree-list
# (copies only; a debug build's test binary shrinks ~8 times, and the VM boots faster with a
# smaller initramfs; panics still name file:line, backtraces the functions). --out DIR:
# whatever SCRIPT leaves in /out comes back, as a tarball on the console between
# V2VM-OUT-BEGIN/END markers with its sha256, unpacked into DIR (made if missing).
# Environment: V2VM_LAYOUT (v2: only cgroup2, booted with cgroup_no_v1=all; v1: a tmpfs on
# /sys/fs/cgroup with the memory, cpu,cpuacct, pids and cpuset hierarchies, no cgroup2;
# hybrid: v1 plus cgroup2 at /sys/fs/cgroup/unified; default v2),
# V2VM_CACHE (packages and kernels; /var/cache/stagebox-v2vm),
# V2VM_MEM (MiB; 1024), V2VM_CPUS (2), V2VM_TIMEOUT (seconds for the whole VM; 1200),
# V2VM_KERNEL (a linux-image package name; default the newest 6.1 amd64 one apt knows),
# V2VM_MODULES (kernel modules to insmod inside, with their dependencies; overlay),
# V2VM_APPEND (more kernel arguments; loglevel=7 undoes quiet).
# Needs root on Debian 12 (apt-get, mknod); touches no host mount, cgroup or module.
# Exit status: SCRIPT's; 124 when the VM ran out of time; 125 when no status came back, or
# when --out was asked for and nothing intact came back from a script that passed.
set -euo pipefail
shopt -s inherit_errexit # failures inside $(...) stop the script too

here=$(cd "$(dirname "$0")" && pwd)
binary=$here/../../target/x86_64-unknown-linux-gnu/debug/stagebox
usage="usage: $0 [--binary PATH] [--tree PATH]... [--tree-list FILE] [--strip-debug] [--out DIR] SCRIPT [FILES...]"
log() { echo "v2vm: $*" >&2; }
trees=() out_dir= strip=0
while [ $# -gt 0 ]; do
    case $1 in
        --binary) binary=${2:?--binary needs a path}; shift 2 ;;
        --tree) trees+=("${2:?--tree needs a path}"); shift 2 ;;
        --tree-list)
            [ -f "${2:?--tree-list needs a file}" ] || { log "no tree list $2"; exit 2; }
            mapfile -t -O "${#trees[@]}" trees < <(grep -v '^$' "$2"); shift 2 ;;
        --out) out_dir=${2:?--out needs a directory}; shift 2 ;;
        --strip-debug) strip=1; shift ;;
        --) shift; break ;;
        -*) echo "$usage" >&2; exit 2 ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
script=$1; shift
cache=${V2VM_CACHE:-/var/cache/stagebox-v2vm}
mem=${V2VM_MEM:-1024} cpus=${V2VM_CPUS:-2} vm_timeout=${V2VM_TIMEOUT:-1200}
modules=${V2VM_MODULES:-overlay}
layout=${V2VM_LAYOUT:-v2}
case $layout in
    v2) cgroup_args=cgroup_no_v1=all ;;
    v1 | hybrid) cgroup_args= ;; # the kernel offers every v1 controller unless cgroup_no_v1 says not
    *) log "V2VM_LAYOUT is v2, v1 or hybrid, not '$layout'"; exit 2 ;;
esac
apt_get() { timeout 900 apt-get "$@"; } # the package registry is the only network used

[ "$(id -u)" = 0 ] || { log "run as root (apt-get, mknod)"; exit 2; }
[ -f "$binary" ] || { log "no binary at $binary (build it, or pass --binary)"; exit 2; }
ldd "$binary" 2>&1 | grep -q 'statically linked\|not a dynamic executable' ||
    { log "$binary is not statically linked (build with crt-static)"; exit 2; }
[ -f "$script" ] || { log "no script $script"; exit 2; }
for f in "$@"; do [ -e "$f" ] || { log "no file $f"; exit 2; }; done
for t in ${trees[@]+"${trees[@]}"}; do
    case $t in
        / | /proc | /proc/* | /sys | /sys/* | /dev | /dev/* | /v2vm | /v2vm/* | /init | /out | /out/*)
            log "--tree $t: not a path the VM can take from the host"; exit 2 ;;
        /*) [ -e "$t" ] || { log "no tree $t"; exit 2; } ;;
        *) log "--tree $t: give an absolute path (it keeps that path inside)"; exit 2 ;;
    esac
done

# Host tools, installed only when missing.
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
[ "$strip" = 0 ] || command -v objcopy >/dev/null || need+=(binutils)
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
if [ ${#trees[@]} -gt 0 ]; then # at the same absolute paths (tar keeps modes and symlinks)
    printf '%s\n' "${trees[@]#/}" >"$tmp/trees"
    tar -C / --no-wildcards -cf - -T "$tmp/trees" | tar -C "$root" -xpf -
    log "trees: ${#trees[@]} paths copied in at their own paths"
fi
if [ "$strip" = 1 ]; then
    for f in /usr/local/bin/stagebox ${trees[@]+"${trees[@]}"}; do
        [ -f "$root$f" ] && [ ! -L "$root$f" ] && [ "$(head -c 4 "$root$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
        objcopy --strip-debug "$root$f"
    done
fi
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
printf 'V2VM_SCRIPT_TIMEOUT=%s\nV2VM_MODULES="%s"\nV2VM_LAYOUT=%s\nV2VM_OUT=%s\n' \
    "$script_timeout" "${load[*]-}" "$layout" "${out_dir:+1}" >"$root/v2vm/config"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$tmp/initrd.gz"
log "kernel $kpkg, layout $layout, initramfs $(du -h "$tmp/initrd.gz" | cut -f1) ($(du -sh "$root" | cut -f1) unpacked), modules: ${load[*]-none}"

# Boot. The console is streamed (carriage returns and terminal escapes dropped, the lines of
# the /out tarball not shown) and kept, to find the markers. --foreground keeps qemu in our
# process group, so killing it stops qemu.
start=$(date +%s)
set +e
timeout --foreground -k 10 "$vm_timeout" qemu-system-x86_64 -accel tcg,thread=multi -cpu max \
    -smp "$cpus" -m "$mem" -nographic -nodefaults -serial stdio -no-reboot -nic none \
    -kernel "$vmlinuz" -initrd "$tmp/initrd.gz" \
    -append "console=ttyS0 $cgroup_args panic=-1 quiet ${V2VM_APPEND:-}" </dev/null |
    sed -u 's/\r$//; s/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' | tee "$tmp/console.log" |
    sed -u '/^V2VM-OUT-BEGIN /,/^V2VM-OUT-END$/{/^V2VM-OUT-/!d}'
qemu_rc=${PIPESTATUS[0]}
set -e
rc=$(grep -a -o '^V2VM-EXIT=[0-9]*' "$tmp/console.log" | tail -n1 | cut -d= -f2 || true)
# init's "up after Xs" and "script ran Ys" lines: the guest's clock.
boot=$(sed -n 's/.*v2vm: up after \([0-9.]*\)s.*/\1/p' "$tmp/console.log" | tail -n1)
ran=$(sed -n 's/.*v2vm: script ran \([0-9]*\)s.*/\1/p' "$tmp/console.log" | tail -n1)
log "VM finished after $(($(date +%s) - start))s: layout $layout, booted in ${boot:-?}s, script ran ${ran:-?}s (qemu status $qemu_rc, script status ${rc:-none})"
if [ -z "$rc" ]; then
    [ "$qemu_rc" = 124 ] && { log "the VM ran past ${vm_timeout}s"; exit 124; }
    log "no V2VM-EXIT marker on the console"; exit 125
fi

# --out: the last V2VM-OUT-BEGIN sha256=HEX bytes=N ... V2VM-OUT-END block, base64 lines
# in between (anything else there, such as a stray kernel line, is dropped; the checksum
# then says whether the tarball is whole).
bring_out() {
    local begin end header want_sum want_bytes got_sum got_bytes stray
    begin=$(grep -a -n '^V2VM-OUT-BEGIN ' "$tmp/console.log" | tail -n1 | cut -d: -f1)
    [ -n "$begin" ] || { log "--out: no V2VM-OUT-BEGIN marker on the console"; return 1; }
    end=$(tail -n +"$begin" "$tmp/console.log" | grep -a -n -m1 '^V2VM-OUT-END$' | cut -d: -f1)
    [ -n "$end" ] || { log "--out: V2VM-OUT-BEGIN without V2VM-OUT-END"; return 1; }
    header=$(sed -n "${begin}p" "$tmp/console.log")
    want_sum=$(sed -n 's/.* sha256=\([0-9a-f]\{64\}\).*/\1/p' <<<"$header")
    want_bytes=$(sed -n 's/.* bytes=\([0-9]*\).*/\1/p' <<<"$header")
    [ -n "$want_sum" ] && [ -n "$want_bytes" ] || { log "--out: bad header: $header"; return 1; }
    tail -n +"$((begin + 1))" "$tmp/console.log" | head -n "$((end - 2))" >"$tmp/out.b64"
    stray=$(grep -a -c -v '^[A-Za-z0-9+/=]*$' "$tmp/out.b64" || true)
    [ "$stray" = 0 ] || log "--out: dropped $stray lines that are not base64"
    grep -a '^[A-Za-z0-9+/=]*$' "$tmp/out.b64" | base64 -d >"$tmp/out.tgz" 2>/dev/null ||
        { log "--out: the base64 does not decode"; return 1; }
    got_sum=$(sha256sum "$tmp/out.tgz" | cut -d' ' -f1)
    got_bytes=$(stat -c %s "$tmp/out.tgz")
    [ "$got_sum" = "$want_sum" ] && [ "$got_bytes" = "$want_bytes" ] ||
        { log "--out: damaged on the way ($got_bytes bytes, sha256 $got_sum; sent $want_bytes, $want_sum)"; return 1; }
    mkdir -p "$out_dir"
    tar -C "$out_dir" -xzf "$tmp/out.tgz" --no-same-owner
    log "--out: $(tar -tzf "$tmp/out.tgz" | grep -vc '/$') files into $out_dir (sha256 checked)"
}
if [ -n "$out_dir" ] && ! bring_out; then
    [ "$rc" = 0 ] && exit 125
fi
exit "$rc"
