#!/bin/busybox sh
# /init of the v2vm initramfs (run.sh copies it in). Two stages:
#   1. on the initramfs root, which pivot_root cannot leave: copy everything onto a tmpfs
#      and switch_root to it;
#   2. on the tmpfs root: mount the pseudo filesystems (cgroup2 only), load the modules,
#      run /v2vm/script.sh in /work, print V2VM-EXIT=<status> and power off.
# No set -e here: any failure must still reach the marker (if init itself dies, the kernel
# panics and reboots, qemu exits on -no-reboot, and run.sh reports the missing marker).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

if [ "${1:-}" != stage2 ]; then
    /bin/busybox mkdir -p /newroot
    /bin/busybox mount -t tmpfs -o mode=0755 tmpfs /newroot
    for d in /*; do
        case "$d" in /newroot | /proc | /sys | /dev) continue ;; esac
        /bin/busybox cp -a "$d" /newroot/
    done
    /bin/busybox mkdir -p /newroot/proc /newroot/sys /newroot/dev
    exec /bin/busybox switch_root /newroot /init stage2
fi

finish() { # finish STATUS: the marker run.sh looks for, then power off
    printf "\nV2VM-EXIT=%s\n" "$1" # own line, even after a partial one
    sync
    poweroff -f
    sleep 10 # poweroff -f does not return; if it did, exiting init panics (panic=-1: reboot, qemu exits)
}

/bin/busybox --install -s 2>/dev/null # applet links (already there from run.sh; harmless)
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /sys/fs/cgroup /tmp /run
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup || finish 126
hostname v2vm
ip link set lo up 2>/dev/null || true
. /v2vm/config # V2VM_SCRIPT_TIMEOUT, V2VM_MODULES (file names, in load order)
for m in $V2VM_MODULES; do
    insmod "/v2vm/modules/$m" || echo "v2vm: insmod $m failed"
done
echo "v2vm: up after $(cut -d' ' -f1 /proc/uptime)s; kernel $(uname -r); $(nproc) cpus; $(grep ' /sys/fs/cgroup ' /proc/mounts)"

export HOME=/root STAGEBOX_STATE=/var/lib/stagebox
mkdir -p "$HOME" "$STAGEBOX_STATE"
cd /work
t0=$(cut -d. -f1 /proc/uptime)
timeout "$V2VM_SCRIPT_TIMEOUT" sh /v2vm/script.sh </dev/null # the console is no input
rc=$?
# busybox timeout says 143 (SIGTERM), not 124: tell a timeout by the clock.
if [ "$rc" = 143 ] && [ $(($(cut -d. -f1 /proc/uptime) - t0)) -ge "$V2VM_SCRIPT_TIMEOUT" ]; then
    echo "v2vm: the script ran past ${V2VM_SCRIPT_TIMEOUT}s"
    rc=124
fi
finish "$rc"
