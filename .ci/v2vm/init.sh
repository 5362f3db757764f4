#!/bin/busybox sh
# /init of the v2vm initramfs (run.sh copies it in). Two stages:
#   1. on the initramfs root, which pivot_root cannot leave: copy everything onto a tmpfs
#      and switch_root to it;
#   2. on the tmpfs root: mount the pseudo filesystems and the cgroups in the layout asked
#      for (V2VM_LAYOUT: cgroup2 only, v1 hierarchies only, or both; mounted as systemd
#      would, so that stagebox meets what it meets on a real host), load the modules, run
#      /v2vm/script.sh in /work, send /out back (V2VM_OUT=1), print V2VM-EXIT=<status> and
#      power off.
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
# /tmp is not a mount of its own: the root is a tmpfs already, and the trees copied in may
# live under /tmp (a CI checkout can), which a fresh mount would hide.
chmod 1777 /tmp
mount -t tmpfs tmpfs /run
. /v2vm/config # V2VM_SCRIPT_TIMEOUT, V2VM_MODULES (file names, in load order), V2VM_LAYOUT, V2VM_OUT
case "$V2VM_LAYOUT" in
v2) # and, as systemd does at boot, the root hands its controllers down to its children
    mount -t cgroup2 cgroup2 /sys/fs/cgroup || finish 126
    for c in cpuset cpu io memory pids; do
        grep -qw "$c" /sys/fs/cgroup/cgroup.controllers && echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control
    done ;;
v1 | hybrid) # as systemd mounts them on a v1 host: cpu and cpuacct share a hierarchy
    mount -t tmpfs -o mode=0755 cgroup /sys/fs/cgroup || finish 126
    for h in memory cpu,cpuacct pids cpuset; do
        mkdir "/sys/fs/cgroup/$h" && mount -t cgroup -o "$h" cgroup "/sys/fs/cgroup/$h" || finish 126
    done
    # The others systemd mounts too, where the kernel has them: the devices stage needs
    # devices, and the container must be in a cgroup of its own in every one of them.
    for h in devices freezer blkio net_cls,net_prio perf_event hugetlb; do
        grep -qw "^${h%%,*}" /proc/cgroups || continue
        mkdir "/sys/fs/cgroup/$h" && mount -t cgroup -o "$h" cgroup "/sys/fs/cgroup/$h" || finish 126
    done
    mkdir /sys/fs/cgroup/systemd && mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd || finish 126
    ln -s cpu,cpuacct /sys/fs/cgroup/cpu
    ln -s cpu,cpuacct /sys/fs/cgroup/cpuacct
    if [ "$V2VM_LAYOUT" = hybrid ]; then
        mkdir /sys/fs/cgroup/unified && mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified || finish 126
    fi ;;
*) echo "v2vm: unknown layout '$V2VM_LAYOUT'"; finish 126 ;;
esac
hostname v2vm
ip link set lo up 2>/dev/null || true
for m in $V2VM_MODULES; do
    insmod "/v2vm/modules/$m" || echo "v2vm: insmod $m failed"
done
printf '\n' # after the firmware's "Booting from ROM..." (no newline)
echo "v2vm: up after $(cut -d' ' -f1 /proc/uptime)s; kernel $(uname -r); $(nproc) cpus; $(free -m | awk '/^Mem:/ { print $2 }') MiB; layout $V2VM_LAYOUT:"
grep ' /sys/fs/cgroup' /proc/mounts | sed 's/^/v2vm:   /'
[ "$V2VM_LAYOUT" != v2 ] || echo "v2vm:   root cgroup.subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"

export HOME=/root STAGEBOX_STATE=/var/lib/stagebox
mkdir -p "$HOME" "$STAGEBOX_STATE"
[ "$V2VM_OUT" != 1 ] || mkdir -p /out # the script leaves here what goes back to the host
cd /work
t0=$(cut -d. -f1 /proc/uptime)
timeout "$V2VM_SCRIPT_TIMEOUT" sh /v2vm/script.sh </dev/null # the console is no input
rc=$?
t1=$(cut -d. -f1 /proc/uptime)
# busybox timeout says 143 (SIGTERM), not 124: tell a timeout by the clock.
if [ "$rc" = 143 ] && [ $((t1 - t0)) -ge "$V2VM_SCRIPT_TIMEOUT" ]; then
    echo "v2vm: the script ran past ${V2VM_SCRIPT_TIMEOUT}s"
    rc=124
fi
echo "v2vm: script ran $((t1 - t0))s"
# /out as a gzipped tarball in base64 lines between markers, with its size and sha256, so
# run.sh can tell a whole one from a damaged one. Kernel messages are silenced first: one
# printed in the middle of a line would break it.
if [ "$V2VM_OUT" = 1 ]; then
    dmesg -n 1 2>/dev/null
    if tar -C /out -czf /tmp/v2vm-out.tgz .; then
        printf "\nV2VM-OUT-BEGIN sha256=%s bytes=%s\n" \
            "$(sha256sum /tmp/v2vm-out.tgz | cut -d' ' -f1)" "$(wc -c </tmp/v2vm-out.tgz)"
        base64 /tmp/v2vm-out.tgz
        echo "V2VM-OUT-END"
    else
        echo "v2vm: could not tar /out"
    fi
fi
finish "$rc"
