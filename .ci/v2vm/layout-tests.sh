#!/bin/sh
# Runs inside the VM (as root, busybox sh; `.ci/layout-tests` boots it): integration test
# binaries built on the host, on this VM's cgroup layout. They sit at the paths the host
# built them at, next to the repository files they read (run.sh --tree), so their
# compile-time paths (the stagebox binary, CARGO_MANIFEST_DIR, CARGO_TARGET_TMPDIR) hold.
#
# Reads from /work: layout-tests.env (REPO: the repository's path; LAYOUT: the layout this
# VM must have; UPDATE=1: write snapshots instead of comparing them) and layout-tests.list
# (one test binary a line, then the arguments for its harness, such as a test name filter).
# Prints one `layout-tests: RESULT NAME ARGS (...)` line per binary; exits 1 if any failed.
# With UPDATE=1 the snapshot files the tests wrote or changed go to /out, under their path
# in the repository.
set -eu
. /work/layout-tests.env
export STAGEBOX_REQUIRE_ROOT=1 NO_COLOR=1 RUST_BACKTRACE=1
# insta: the workspace is the repository (it would ask `cargo metadata`, which is not
# here); CI=true and INSTA_UPDATE=no make a mismatch or a missing snapshot fail rather than
# write a file; UPDATE=1 writes the .snap files (for review on the host).
export CI=true INSTA_WORKSPACE_ROOT="$REPO"
if [ "${UPDATE:-0}" = 1 ]; then export INSTA_UPDATE=always; else export INSTA_UPDATE=no; fi

# The layout, as stagebox tells it from the mounts (Layout::from_mountinfo).
v2=$(awk '$3 == "cgroup2"' /proc/mounts | wc -l)
v1=$(awk '$3 == "cgroup"' /proc/mounts | wc -l)
case "$v1:$v2" in
0:0) have=none ;; 0:*) have=v2 ;; *:0) have=v1 ;; *) have=hybrid ;;
esac
echo "layout-tests: cgroup layout $have ($v1 v1 hierarchies, $v2 cgroup2 mounts)"
if [ "$have" != "$LAYOUT" ]; then
    echo "layout-tests: FAIL this VM should have the $LAYOUT layout"
    exit 1
fi

touch /tmp/layout-tests.stamp
failed=0 ran=0
exec 3</work/layout-tests.list
while read -r bin args <&3; do
    [ -n "$bin" ] || continue
    name=$(basename "$bin" | sed 's/-[0-9a-f]\{16\}$//')
    ran=$((ran + 1))
    printf '\n===== %s %s (%s layout) =====\n' "$name" "$args" "$LAYOUT"
    t0=$(cut -d' ' -f1 /proc/uptime)
    # shellcheck disable=SC2086 # the harness arguments are words
    { rc=0; "$bin" $args </dev/null || rc=$?; echo "$rc" >/tmp/layout-tests.rc; } 2>&1 | tee /tmp/layout-tests.log
    rc=$(cat /tmp/layout-tests.rc)
    secs=$(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.0f", b - a }')
    counts=$(grep '^test result:' /tmp/layout-tests.log | tail -n1 | sed 's/^test result: [A-Za-z]*\. //; s/; finished in.*//')
    if [ "$rc" = 0 ] && [ -n "$counts" ] && ! echo "$counts" | grep -q '^0 passed'; then
        echo "layout-tests: PASS $name $args ($counts; ${secs}s)"
    elif [ "$rc" = 0 ]; then # nothing ran: a filter that matches no test is a mistake
        echo "layout-tests: FAIL $name $args (no test ran: ${counts:-no test result line}; ${secs}s)"
        failed=$((failed + 1))
    else
        echo "layout-tests: FAIL $name $args (exit $rc: ${counts:-no test result line}; ${secs}s)"
        failed=$((failed + 1))
    fi
done
exec 3<&-

if [ "${UPDATE:-0}" = 1 ]; then # what the tests wrote into the repository's snapshots
    n=0
    for f in $(find "$REPO" -path "$REPO/target" -prune -o -type f -newer /tmp/layout-tests.stamp \
        \( -name '*.snap' -o -name '*.snap.new' -o -path "$REPO/book/src/*.md" \) -print); do
        rel=${f#"$REPO"/}
        mkdir -p "/out/$(dirname "$rel")"
        cp "$f" "/out/$rel"
        echo "layout-tests: wrote $rel"
        n=$((n + 1))
    done
    echo "layout-tests: $n snapshot files go back to the host"
fi

echo "layout-tests: $LAYOUT layout: $ran test binaries, $failed failed"
[ "$ran" -gt 0 ] && [ "$failed" = 0 ]
