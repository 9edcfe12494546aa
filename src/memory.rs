//! Process-wide memory tuning, applied once at start-up before any thread exists.

/// Limits glibc's malloc to one arena unless the operator set `MALLOC_ARENA_MAX` themselves.
///
/// glibc gives each thread that contends for the heap an arena of its own (up to 8 per core),
/// and memory freed into one arena is not reused by allocations made in another. lumierd's work
/// moves between tokio's worker and blocking threads, so with the default the same data ends up
/// spread over several partly-empty arenas: at N = 10,000 resources peak RSS was 40.5 MiB with
/// the default and 37.9 MiB with one arena, for no measurable CPU cost (the daemon is I/O bound;
/// a resync pass took 240 ms of CPU with the default, 210 ms with one arena). `cargo bench
/// --bench fleet -- --scenarios 5` shows the figures; BENCH.md has them.
#[allow(unsafe_code)] // mallopt: see SAFETY below
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a malloc tunable; called before the runtime starts threads.
        // A failure (return 0) leaves glibc's default in place, which is only less compact.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

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
