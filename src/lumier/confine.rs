//! The limits the evaluating child (`lumierd __eval-lumier`, [`super::sandbox`]) puts on
//! itself before it reads a config, and why:
//!
//! | limit | value | why |
//! | --- | --- | --- |
//! | descriptors | all but stdin, stdout and stderr closed | it inherits nothing of lumierd's (the edge's listening socket is inheritable) |
//! | `PR_SET_PDEATHSIG` (Linux) | SIGKILL | it never outlives lumierd |
//! | `RLIMIT_AS` | its address space at start + [`ADDRESS_SPACE_HEADROOM`] | an allocation outside the engine's own accounting ends in a failed allocation, never in a machine out of memory |
//! | `RLIMIT_CPU` | [`CPU_LIMIT`] + 3 s (SIGXCPU), + 4 s (SIGKILL) | a loop the engine's interrupt misses still ends |
//! | `RLIMIT_CORE` | 0 | a crash writes no core file (it would hold the config's data) |
//!
//! Limits are only ever lowered (a hard limit below the value is kept).

use std::io;

use super::engine::CPU_LIMIT;

/// How much the child's address space may grow beyond what it had at start, in bytes: the
/// engine's 64 MB, the TypeScript step on a 1 MiB file, and the answer.
pub const ADDRESS_SPACE_HEADROOM: u64 = 384 * 1024 * 1024;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

/// Applies every limit of the module doc's table to this process.
pub fn confine() -> io::Result<()> {
    close_inherited();
    die_with_parent()?;
    if let Some(start) = address_space() {
        let most = start.saturating_add(ADDRESS_SPACE_HEADROOM);
        lower(libc::RLIMIT_AS as Resource, most, most)?;
    }
    let cpu = CPU_LIMIT.as_secs() + 3;
    lower(libc::RLIMIT_CPU as Resource, cpu, cpu + 1)?;
    lower(libc::RLIMIT_CORE as Resource, 0, 0)
}

/// Lowers `resource` to `soft`/`hard` (each kept if already lower).
#[allow(unsafe_code)] // getrlimit/setrlimit: see SAFETY below
fn lower(resource: Resource, soft: u64, hard: u64) -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    limit.rlim_max = limit.rlim_max.min(hard as libc::rlim_t);
    limit.rlim_cur = limit.rlim_cur.min(soft as libc::rlim_t).min(limit.rlim_max);
    // SAFETY: `limit` is a valid rlimit; lowering limits is always allowed.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This process's address space now (`VmSize` in /proc/self/status), in bytes; `None` where
/// /proc is not mounted (then only the engine's own limit holds).
fn address_space() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmSize:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Closes every descriptor above stderr (listed from /proc/self/fd; nothing else runs in
/// this process yet, so no number is reused meanwhile).
#[allow(unsafe_code)] // close(2): see SAFETY below
fn close_inherited() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<libc::c_int> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: close(2) on a number; the only owned descriptor among them (the listing's
        // own) was closed when `dir` was dropped, so nothing Rust owns is closed twice.
        unsafe {
            libc::close(fd);
        }
    }
}

/// SIGKILL when the parent (lumierd) dies. Linux only.
#[allow(unsafe_code)] // prctl(2): see SAFETY below
fn die_with_parent() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(2) with PR_SET_PDEATHSIG takes plain integers and changes only this
    // process's parent-death signal.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
