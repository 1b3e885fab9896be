//! CPU time and memory of the processes a run is about, read from `/proc` by command name
//! (`gateway`, `worker`, `postgres`, `beam.smp`, `redis-server`, `svix-server`): what a system
//! costs is its own processes and its infrastructure's, not the driver's or the receiver's.

use std::fs;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Each process's command name and (CPU ticks, resident KiB).
fn processes() -> Vec<(String, u64, u64)> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        entry.file_name().to_str()?.parse::<u32>().ok()?;
        let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
        // `pid (comm) state ...`: comm may hold spaces, so split after its closing paren.
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat[open + 1..close].to_string();
        let rest: Vec<&str> = stat[close + 2..].split(' ').collect();
        // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the state.
        let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
        let status = fs::read_to_string(entry.path().join("status")).ok()?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Some((comm, ticks, rss_kib))
    })
    .collect()
}

/// CPU seconds used so far by the live processes named each of `names`, in that order.
/// A process that exits takes its time with it: pooled connections (PostgreSQL backends)
/// live through a run, so this counts them.
pub fn cpu_seconds(names: &[String]) -> Vec<f64> {
    let all = processes();
    names
        .iter()
        .map(|name| {
            all.iter()
                .filter(|(comm, ..)| comm == name)
                .map(|(_, ticks, _)| *ticks as f64 / TICKS_PER_SECOND)
                .sum()
        })
        .collect()
}

/// Resident memory, in MiB, of every live process named one of `names`.
pub fn rss_mib(names: &[String]) -> f64 {
    processes()
        .into_iter()
        .filter(|(comm, ..)| names.contains(comm))
        .map(|(.., kib)| kib as f64 / 1024.0)
        .sum()
}

/// `a,b,c` as a list of names.
pub fn names(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}
