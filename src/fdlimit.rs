//! The open-files limit: a daemon raises its soft `RLIMIT_NOFILE` to the hard limit at start,
//! as Go's runtime and systemd (`DefaultLimitNOFILE=1024:524288`) expect of daemons. The soft
//! limit of 1,024 exists only for programs that still use `select(2)`; lumierd uses epoll.
//!
//! This is a second line of defence: the listeners bound their own connections
//! ([`crate::admin::listener`], [`crate::runtime::status_socket`]), so the manifests, the
//! store and the API client keep descriptors to work with whatever clients do.

/// What [`raise_nofile`] did: the soft limit before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub before: u64,
    pub after: u64,
}

/// Raises the soft open-files limit to the hard limit. Fails (leaving the limit as it was)
/// only when the kernel refuses, which the caller logs and ignores.
#[allow(unsafe_code)] // getrlimit/setrlimit: see SAFETY below
pub fn raise_nofile() -> std::io::Result<Raised> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit; raising the soft limit up to the hard one is allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(Raised {
        before,
        after: limit.rlim_cur,
    })
}

/// [`raise_nofile`], logging the outcome at debug (a refusal at warn).
pub fn raise_nofile_logged() {
    match raise_nofile() {
        Ok(r) => tracing::debug!(before = r.before, after = r.after, "open-files soft limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-files soft limit"),
    }
}

/// Makes every file the process creates from now on its owner's only (umask 077), as
/// systemd's `UMask=0077` does: the state folder holds records, the local API's KV values,
/// Worker code and its token.
#[allow(unsafe_code)] // umask: see SAFETY below
pub fn private_umask() {
    // SAFETY: umask only sets the process's file-mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[allow(unsafe_code)] // getrlimit on a local rlimit
    fn soft_limit_reaches_the_hard_limit() {
        let r = super::raise_nofile().unwrap();
        assert!(r.after >= r.before);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }
}
