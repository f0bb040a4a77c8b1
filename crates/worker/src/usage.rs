//! What a task's processes use, sampled from `/proc` while they run: CPU seconds and
//! memory GiB-seconds (the group's resident memory integrated over time), for cost
//! accounting.
//!
//! The CPU time of a sample is the sum, over the group's live processes, of their user
//! and system time with that of the children they have reaped: a process that ends and
//! is reaped inside the group moves its time into its reaper's, so nothing counts twice.
//! The total never goes down. Sampling misses at most the last interval of the task,
//! and time reaped outside the group (by init) after the last sample. Where `/proc` is
//! missing the figures stay zero.

use std::time::{Duration, Instant};

use crate::wire::Usage;

/// How often the group is sampled.
pub(crate) const INTERVAL: Duration = Duration::from_millis(100);

/// Samples one process group.
pub(crate) struct Sampler {
    group: i32,
    ticks_per_second: f64,
    page_bytes: u64,
    last: Option<Instant>,
    pub(crate) usage: Usage,
}

impl Sampler {
    pub(crate) fn new(group: i32) -> Sampler {
        let sysconf = |var| nix::unistd::sysconf(var).ok().flatten().filter(|v| *v > 0);
        Sampler {
            group,
            ticks_per_second: sysconf(nix::unistd::SysconfVar::CLK_TCK).unwrap_or(100) as f64,
            page_bytes: sysconf(nix::unistd::SysconfVar::PAGE_SIZE).unwrap_or(4096) as u64,
            last: None,
            usage: Usage::default(),
        }
    }

    /// Takes one sample of every process in the group.
    pub(crate) fn sample(&mut self) {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        let (mut rss_pages, mut cpu_ticks) = (0u64, 0u64);
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the command name, which may hold spaces: `) state ppid pgrp …`.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |n: usize| fields.get(n).and_then(|f| f.parse::<u64>().ok());
            // Counted from `state` (field 3 of stat(5)) as index 0.
            if fields.get(2).and_then(|f| f.parse::<i32>().ok()) != Some(self.group) {
                continue;
            }
            cpu_ticks += [11, 12, 13, 14]
                .iter()
                .filter_map(|n| field(*n))
                .sum::<u64>();
            rss_pages += field(21).unwrap_or(0);
        }
        let rss = rss_pages * self.page_bytes;
        let now = Instant::now();
        if let Some(last) = self.last {
            let seconds = now.duration_since(last).as_secs_f64();
            self.usage.memory_gib_seconds += rss as f64 / (1u64 << 30) as f64 * seconds;
        }
        self.last = Some(now);
        self.usage.peak_rss_bytes = self.usage.peak_rss_bytes.max(rss);
        self.usage.cpu_seconds = self
            .usage
            .cpu_seconds
            .max(cpu_ticks as f64 / self.ticks_per_second);
    }
}
