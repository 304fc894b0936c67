//! Process signals for the supervisor in the control daemon (`sluice up`), which must stop the
//! dataplane it spawned on a clean shutdown. The only `unsafe` a supervisor needs, kept here
//! with the rest of the crate's kernel calls.

use std::io;

/// Ask process `pid` to terminate (SIGTERM): the dataplane stops its shards, closes its control
/// socket and exits.
pub fn terminate(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    if pid <= 0 {
        // kill(2) with 0 or a negative pid signals process groups: never what we mean here.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a single process id",
        ));
    }
    // SAFETY: kill(2) takes two integers and touches no memory of ours; `pid` is a positive
    // process id, so exactly one process (or none: ESRCH) is signalled.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// CPU time the calling thread has used (user + system), from `CLOCK_THREAD_CPUTIME_ID`: a
/// shard reports it with its stats so the control daemon can tell how busy the shard's core
/// is (cluster load, docs/cluster.md "Load"). Zero if the clock is unavailable.
pub fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes one `timespec` through the pointer, which points at a
    // live, properly aligned local of exactly that type.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_grows_with_work_not_with_sleep() {
        let t0 = thread_cpu_time();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let slept = thread_cpu_time() - t0;
        let t1 = thread_cpu_time();
        let mut x = 0u64;
        while thread_cpu_time() - t1 < std::time::Duration::from_millis(20) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(slept < std::time::Duration::from_millis(20), "{slept:?}");
    }

    #[test]
    fn terminates_a_child_and_refuses_group_ids() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        terminate(child.id()).expect("signal");
        let status = child.wait().expect("wait");
        assert!(!status.success());
        assert!(terminate(0).is_err());
    }
}
