//! Pinning worker threads to cores (`sched_setaffinity(2)`), and the cores this process may use.

use std::io;
use std::mem;

/// Pins the calling thread to `core` (a CPU number as the kernel numbers them).
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    if core >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: `core` < CPU_SETSIZE (checked above), so the bit lies inside `set`.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t on our stack for the duration of the call, its size is
    // passed, and pid 0 means the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The CPUs the calling thread may run on (its affinity mask, which honours taskset/cgroups),
/// in ascending order. Run it before pinning anything.
pub fn online_cores() -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t for the duration of the call and its size is
    // passed; pid 0 means the calling thread.
    let rc = unsafe { libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `i` < CPU_SETSIZE, inside `set`.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_to_first_allowed_core() {
        let cores = online_cores().expect("affinity readable");
        assert!(!cores.is_empty());
        let first = cores[0];
        std::thread::spawn(move || {
            pin_current_thread(first).expect("pin");
            assert_eq!(online_cores().expect("affinity"), vec![first]);
        })
        .join()
        .expect("thread");
        assert!(pin_current_thread(libc::CPU_SETSIZE as usize).is_err());
    }
}
