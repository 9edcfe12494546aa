//! What the daemon's resident memory is made of: anonymous (heap, stacks) against file-backed
//! (the binary's code and data pages it touched, shared libraries), sampled while it runs.
//!
//! `VmHWM` (the kernel's high-water mark) is one number; to tell a heap regression from a
//! larger binary, a thread reads `RssAnon` and `RssFile` of `/proc/PID/status` every
//! [`PERIOD`] and keeps the largest of each. Sampled peaks can miss a spike shorter than the
//! period, so they are a breakdown of `VmHWM`, not a replacement for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often `/proc/PID/status` is read (reading it costs the daemon nothing).
pub const PERIOD: Duration = Duration::from_millis(5);

/// Peaks of the sampled resident memory, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peaks {
    /// Largest `RssAnon` seen.
    pub anon_kb: u64,
    /// Largest `RssFile` seen.
    pub file_kb: u64,
}

/// A sampling thread over one process; [`Sampler::stop`] returns what it saw.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Peaks>,
}

impl Sampler {
    pub fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peaks = Peaks::default();
            while !flag.load(Ordering::Relaxed) {
                let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                    break;
                };
                peaks.anon_kb = peaks.anon_kb.max(field_kb(&s, "RssAnon:"));
                peaks.file_kb = peaks.file_kb.max(field_kb(&s, "RssFile:"));
                std::thread::sleep(PERIOD);
            }
            peaks
        });
        Sampler { stop, thread }
    }

    pub fn stop(self) -> Peaks {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// `RssAnon` and `RssFile` now, in KiB.
pub fn now(pid: u32) -> Peaks {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    Peaks {
        anon_kb: field_kb(&s, "RssAnon:"),
        file_kb: field_kb(&s, "RssFile:"),
    }
}

/// A `kB` field of a `/proc` status-style text; 0 when absent.
pub fn field_kb(text: &str, field: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
