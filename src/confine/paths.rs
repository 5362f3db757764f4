//! Docker's masked and read-only paths (the lists its OCI spec carries by default).
//!
//! Masked: what a container must not read at all. /proc/kcore is the kernel's memory,
//! /proc/keys the host's keyrings, /proc/timer_list and /proc/sched_debug leak what other
//! processes on the host do, /sys/firmware the machine's firmware tables.
//! Read-only: kernel knobs the container may read but never turn: /proc/sys (sysctls such
//! as core_pattern, which runs a program on the host), /proc/sysrq-trigger (reboot, crash).

pub const MASKED: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
