//! System V IPC objects (shared memory, semaphore sets, message queues) as /proc/sysvipc
//! lists them. Those files answer for the *reader's* IPC namespace, so only a process inside
//! the container can count what the container sees.

/// How many System V IPC objects (shm, sem, msg) the calling process can see.
pub fn visible_objects() -> usize {
    ["shm", "sem", "msg"]
        .iter()
        .map(|k| {
            std::fs::read_to_string(format!("/proc/sysvipc/{k}"))
                .map(|t| t.lines().skip(1).filter(|l| !l.trim().is_empty()).count())
                .unwrap_or(0)
        })
        .sum()
}
