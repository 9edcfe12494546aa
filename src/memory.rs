//! Process-wide memory tuning: glibc's malloc tunables (set once at start-up, before any
//! thread exists), and the free heap pages the daemon hands back to the kernel after each
//! pass. BENCH.md has the figures behind each.
//!
//! Not done on purpose: dropping the executable's resident code pages (`MADV_DONTNEED`) around
//! each pass. It lowered the measured peak by about 2 MiB, but those pages are clean, shared
//! page cache the kernel reclaims under pressure anyway, so the figure would have moved without
//! the memory a host needs moving; and each edit paid 3–4 ms to fault them back.

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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

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
}
