#!/bin/sh
# Runs inside the v2vm (as root, busybox sh): checks stagebox on a pure cgroup v2 host.
#   V2VM_TIMEOUT=600 .ci/v2vm/run.sh .ci/v2vm/smoke.sh   (about 45 s on an idle 2-core host)
# Prints PASS/FAIL per check, `stagebox doctor`, and the trace of one run; exits 1 if any failed.
set -euo pipefail
failed=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
section() { printf '\n===== %s =====\n' "$*"; }
# expect STATUS WHAT CMD...: CMD's exit status must be STATUS (any non-zero for "nonzero").
expect() {
    want=$1 what=$2; shift 2
    set +e; "$@" >/tmp/out 2>&1; got=$?; set -e
    if [ "$got" = "$want" ] || { [ "$want" = nonzero ] && [ "$got" != 0 ]; }; then
        pass "$what (exit $got)"
    else
        fail "$what: exit $got, wanted $want; output:"; tail -n 20 /tmp/out
    fi
}

section "the host is pure cgroup v2"
fstype=$(awk '$2 == "/sys/fs/cgroup" { print $3 }' /proc/mounts)
[ "$fstype" = cgroup2 ] && pass "/sys/fs/cgroup is cgroup2" || fail "/sys/fs/cgroup is '$fstype'"
awk '$3 == "cgroup"' /proc/mounts | grep -q . && fail "a v1 cgroup hierarchy is mounted" || pass "no v1 hierarchy mounted"
[ "$(cat /proc/self/cgroup)" = "0::/" ] && pass "/proc/self/cgroup is only 0::/" ||
    { fail "/proc/self/cgroup:"; cat /proc/self/cgroup; }
echo "controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
echo "v1 disabled by cgroup_no_v1=all: $(awk 'NR > 1 && $2 == 0 { printf "%s ", $1 }' /proc/cgroups)"
grep -qw overlay /proc/filesystems && pass "overlay filesystem available" || fail "no overlay filesystem"

section "stagebox doctor"
set +e; stagebox doctor; echo "(doctor exit $?)"; set -e

section "stagebox rootfs"
set +e; stagebox rootfs; echo "(rootfs exit $?)"; set -e

section "trace of: stagebox run --rm -- /bin/true"
set +e; stagebox run --rm -- /bin/true; rc=$?; set -e
[ "$rc" = 0 ] && pass "run /bin/true (exit 0)" || fail "run /bin/true: exit $rc"

section "checks"
expect 137 "-m 32m: a 64 MiB buffer is OOM-killed" \
    stagebox run --rm -m 32m -- sh -c 'dd if=/dev/zero of=/dev/null bs=64M count=1'
expect 0 "-m 256m: the same 64 MiB buffer fits" \
    stagebox run --rm -m 256m -- sh -c 'dd if=/dev/zero of=/dev/null bs=64M count=1'
expect nonzero "--pids-limit 5: the 6 background sleeps cannot all fork" \
    stagebox run --rm --pids-limit 5 -- sh -c 'for i in 1 2 3 4 5 6; do sleep 1 & done; wait'
grep -q "refused" /tmp/out && pass "--pids-limit 5: stagebox reports the refused forks" ||
    fail "--pids-limit 5: no refused fork reported"
grep "can't fork\|refused" /tmp/out | tail -n 2
expect 0 "--pids-limit 50: the same 6 sleeps fork" \
    stagebox run --rm --pids-limit 50 -- sh -c 'for i in 1 2 3 4 5 6; do sleep 1 & done; wait'
expect 0 "--cpus 0.5: run" stagebox run --rm --cpus 0.5 -- cat /proc/self/cgroup
grep -qx '0::/' /tmp/out && pass "--cpus 0.5: cgroupns shows 0::/" ||
    { fail "--cpus 0.5: /proc/self/cgroup:"; cat /tmp/out; }
expect 0 "plain run: cat /proc/self/cgroup" stagebox run --rm -- cat /proc/self/cgroup
grep -qx '0::/' /tmp/out && pass "plain run: cgroupns shows 0::/" ||
    { fail "plain run: /proc/self/cgroup:"; cat /tmp/out; }
# The limits as the host sees them in the container's cgroup while it runs.
stagebox run --rm -m 32m --pids-limit 7 --cpus 0.5 -- sleep 6 >/tmp/bg 2>&1 &
bg=$!
for _ in $(seq 40); do # the container's pids.max, whatever stagebox's layout (not its parent's "max")
    cg=$(grep -lx 7 /dev/null $(find /sys/fs/cgroup -mindepth 2 -name pids.max) 2>/dev/null | sed -n 1p || true)
    [ -n "$cg" ] && cg=$(dirname "$cg") && break
    sleep 0.5
done
if [ -n "$cg" ]; then
    got="memory.max=$(cat "$cg/memory.max") pids.max=$(cat "$cg/pids.max") cpu.max=$(cat "$cg/cpu.max")"
    echo "$cg: $got"
    [ "$got" = "memory.max=33554432 pids.max=7 cpu.max=50000 100000" ] &&
        pass "limits in the cgroup are 32m, 7 pids, 0.5 cpu" || fail "limits not as asked"
else
    fail "no container cgroup with pids.max appeared"
fi
wait "$bg" && pass "limited sleep 6 (exit 0)" || { fail "limited sleep 6: exit $?"; cat /tmp/bg; }

section "left behind"
leftover=$(find /sys/fs/cgroup -mindepth 2 -type d)
[ -z "$leftover" ] && pass "no container cgroups left under /sys/fs/cgroup" ||
    { fail "cgroups left behind:"; echo "$leftover"; }
echo "top-level cgroups: $(find /sys/fs/cgroup -mindepth 1 -maxdepth 1 -type d | tr '\n' ' ')"
echo "subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"

section "summary"
[ "$failed" = 0 ] && echo "smoke: all passed" || echo "smoke: $failed failed"
[ "$failed" = 0 ]
