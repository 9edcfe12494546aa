//! Process-wide memory tuning: glibc's malloc tunables (set once at start-up, before any
//! thread exists), the free heap pages the daemon hands back to the kernel after each pass,
//! and, once, the code pages only start-up ran. BENCH.md has the figures behind each.
//!
//! Start-up runs code spread over the whole binary (argument parsing, manifest loading and
//! transpiling, the store's open, the provider's set-up), and the kernel maps file pages 64 KiB
//! or more around each fault, so about 13 MiB of the executable is resident when the first pass
//! starts, most of which never runs again. [`release_code_pages`] is called once at that point:
//! what the daemon runs from then on is faulted back once (from the page cache, no I/O) and
//! stays. Not around every pass: that only moved the peak figure further, while each edit paid
//! 3–4 ms to fault its code back. What it does not change: those pages are clean page cache,
//! which the kernel could reclaim under pressure anyway (and a memory cgroup keeps charging
//! until it does); what it changes is that they are no longer mapped and counted as this
//! process's resident set, and unmapped cache is what the kernel reclaims first.

/// glibc's malloc, set for a long-running daemon whose memory is a steady core (records,
/// the snapshot) plus a transient peak per pass (list bodies, their parse), unless the
/// operator set the same tunable through the environment:
///
/// - **One arena** (`MALLOC_ARENA_MAX`). glibc gives each thread that contends for the heap an
///   arena of its own (up to 8 per core), and memory freed into one arena is not reused by
///   allocations made in another. lumierd's work moves between tokio's worker and blocking
///   threads, so with the default the same data ends up spread over several partly-empty
///   arenas: at N = 10,000 resources peak RSS was 40.5 MiB with the default and 37.9 MiB
///   with one arena, for no measurable CPU cost (the daemon is I/O bound; a resync pass took
///   240 ms of CPU with the default, 210 ms with one arena).
/// - **A fixed mmap threshold of 128 KiB** (`MALLOC_MMAP_THRESHOLD_`). By default glibc
///   raises the threshold to the size of each mmapped block freed (up to 32 MiB), so after
///   the first pass a pass's large buffers (the 2.3 MB script list body, the vectors its parse
///   grows) come from the heap, where they leave holes that the next pass's peak stacks on.
///   Fixed, every block of 128 KiB or more is its own mapping, returned whole when freed:
///   peak RSS at N = 10,000 37.2–38.1 → 35.0–35.1 MiB, resync CPU unchanged (220–250 ms).
///
/// `cargo bench --bench fleet -- --scenarios 5` shows the figures; BENCH.md has them.
#[allow(unsafe_code)] // mallopt: see SAFETY below
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let unset = |name: &str| std::env::var_os(name).is_none();
        // SAFETY: mallopt only sets a malloc tunable; called before the runtime starts
        // threads. A failure (return 0) leaves glibc's default in place, which is only less
        // compact.
        unsafe {
            if unset("MALLOC_ARENA_MAX") {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
            if unset("MALLOC_MMAP_THRESHOLD_") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        }
    }
}

/// Blocks of this many bytes or more are mapped on their own (see [`tune_malloc`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Hands the free pages inside the heap back to the kernel (glibc's `malloc_trim`), after a
/// pass or a reload has freed its transient data (list bodies, parsed manifests). Without it
/// those pages stay resident, and the next pass's peak stacks on top of them.
#[allow(unsafe_code)] // malloc_trim: see SAFETY below
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the kernel; it takes malloc's own lock.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Drops this process's page-table entries for the pages of its own executable that are
/// mapped read-only and were never copied (its code, `.rodata`, `.eh_frame`), so that only
/// the code run from here on counts in its resident set again. The daemon calls it once,
/// when start-up is over (before its first pass), never around passes: see the module doc.
///
/// Why: the kernel maps the file pages around each fault (64 KiB, or a whole large folio), so
/// start-up, which runs code spread over the whole binary (argument parsing, manifest loading,
/// transpiling, the store's open), leaves 75–80 % of the 17 MB of read-only segments resident:
/// 12.4 MiB, counted in the daemon's RSS through every pass although a pass runs about 8 MiB
/// of it. Released before and after each pass, peak RSS at N = 10,000 went 39.0–41.1 →
/// 37.2–38.1 MiB. The pages stay in the page cache: what runs later is mapped back by a minor
/// fault, without I/O.
///
/// Only mappings of the executable without write permission and without private (copied)
/// pages are released (checked in `/proc/self/smaps`): for those, `MADV_DONTNEED` cannot lose
/// data, since every page is re-read from the file as it was. The relocated `.data.rel.ro`
/// (read-only after relocation, but copied) is left alone. Linux only; a failure is ignored
/// (the pages then just stay resident).
pub fn release_code_pages() {
    #[cfg(target_os = "linux")]
    for (start, len) in code_mappings() {
        madvise_dontneed(start, len);
    }
}

/// `(start, length)` of each mapping of the executable that [`release_code_pages`] may drop.
#[cfg(target_os = "linux")]
fn code_mappings() -> Vec<(usize, usize)> {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return Vec::new();
    };
    let Some(exe) = exe.to_str() else {
        return Vec::new();
    };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return Vec::new();
    };
    releasable(&smaps, exe)
}

#[cfg(target_os = "linux")]
/// The mappings of `exe` in an smaps text that are read-only and hold no anonymous (copied)
/// page: `(start, length)`.
fn releasable(smaps: &str, exe: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // The mapping being read: (start, length) when it is one of exe's read-only ones.
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        if let Some(range) = mapping_header(line, exe) {
            current = range;
        } else if let Some(rest) = line.strip_prefix("Anonymous:") {
            let anon_kb = rest.trim().trim_end_matches("kB").trim().parse::<u64>();
            if let (Some(range), Ok(0)) = (current.take(), anon_kb) {
                out.push(range);
            }
        }
    }
    out
}

#[cfg(target_os = "linux")]
/// For an smaps mapping header line (`start-end perms offset dev inode path`): `Some(range)`
/// where `range` is the mapping when it maps `exe` without write permission, `Some(None)` for
/// any other mapping, `None` when the line is not a header.
fn mapping_header(line: &str, exe: &str) -> Option<Option<(usize, usize)>> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    if perms.len() != 4 {
        return None;
    }
    let path = fields.nth(3).map(str::trim_start).unwrap_or("");
    let read_only = perms.starts_with('r') && perms.as_bytes()[1] == b'-';
    let private = perms.ends_with('p');
    Some((path == exe && read_only && private && end > start).then(|| (start, end - start)))
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // madvise: see SAFETY below
fn madvise_dontneed(start: usize, len: usize) {
    // SAFETY: the range is a whole mapping of this executable, read-only and without private
    // pages (see `releasable`): MADV_DONTNEED only removes its page-table entries, and each
    // page is faulted back from the unchanged file when next used. No Rust reference can
    // observe a difference, since the contents stay the same.
    unsafe {
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn only_the_executables_unwritten_read_only_mappings_are_released() {
        let smaps = "\
55d0a0000000-55d0a0448000 r--p 00000000 fe:00 10035221                   /opt/lumierd
Size:               4384 kB
Anonymous:             0 kB
55d0a0448000-55d0a104c000 r-xp 00448000 fe:00 10035221                   /opt/lumierd
Size:              12304 kB
Anonymous:             0 kB
55d0a104c000-55d0a10df000 r--p 0104b000 fe:00 10035221                   /opt/lumierd
Size:                588 kB
Anonymous:           588 kB
55d0a10df000-55d0a10e4000 rw-p 010dd000 fe:00 10035221                   /opt/lumierd
Size:                 20 kB
Anonymous:            12 kB
7f0000000000-7f0000100000 r-xp 00026000 fe:00 42                         /usr/lib/libc.so.6
Size:               1024 kB
Anonymous:             0 kB
7f0000200000-7f0000300000 r-xp 00000000 fe:00 43                         /opt/lumierd (deleted)
Anonymous:             0 kB
7f0000400000-7f0000500000 ---p 00000000 00:00 0 
Anonymous:             0 kB
";
        assert_eq!(
            releasable(smaps, "/opt/lumierd"),
            vec![(0x55d0a0000000, 0x448000), (0x55d0a0448000, 0xc04000)]
        );
        // Not a header: a field line, or garbage.
        assert_eq!(mapping_header("Size:  4 kB", "/opt/lumierd"), None);
        assert_eq!(mapping_header("", "/opt/lumierd"), None);
    }

    /// Resident KiB of this test binary's read-only mappings, from `/proc/self/smaps`.
    fn resident_code_kb() -> Option<u64> {
        let exe = std::fs::read_link("/proc/self/exe").ok()?;
        let exe = exe.to_str()?;
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        let mut kb = 0;
        for line in smaps.lines() {
            if let Some(header) = mapping_header(line, exe) {
                inside = header.is_some();
            } else if let Some(rss) = line.strip_prefix("Rss:").filter(|_| inside) {
                kb += rss
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()?;
            }
        }
        Some(kb)
    }

    /// Bytes in blocks glibc mapped on their own (`mallinfo2().hblkhd`).
    #[cfg(target_env = "gnu")]
    #[allow(unsafe_code)] // mallinfo2: see SAFETY below
    fn mapped_bytes() -> usize {
        // SAFETY: mallinfo2 only reads malloc's statistics under its own lock.
        unsafe { libc::mallinfo2().hblkhd }
    }

    #[test]
    #[cfg(target_env = "gnu")]
    fn a_large_block_is_mapped_on_its_own_even_after_a_larger_one_was_freed() {
        tune_malloc();
        // By default, freeing this 8 MiB block raises glibc's threshold to 8 MiB, and the
        // 1 MiB block below would come from the heap. Other tests allocate at the same time,
        // so a few tries.
        let mapped = (0..5).any(|_| {
            drop(std::hint::black_box(vec![1u8; 8 << 20]));
            let before = mapped_bytes();
            let block = std::hint::black_box(vec![1u8; 1 << 20]);
            let after = mapped_bytes();
            drop(block);
            after >= before + (1 << 20)
        });
        assert!(mapped, "a 1 MiB block came from the heap");
    }

    #[test]
    fn releasing_code_pages_lowers_the_resident_set_and_the_code_still_runs() {
        let before = resident_code_kb();
        release_code_pages();
        let after = resident_code_kb();
        assert!(
            matches!((before, after), (Some(b), Some(a)) if a < b),
            "resident code {before:?} KiB → {after:?} KiB"
        );
        // What was released runs again (faulted back from the unchanged file).
        assert_eq!(releasable("", "/x"), vec![]);
        assert!(resident_code_kb().is_some_and(|kb| kb > 0));
    }
}
