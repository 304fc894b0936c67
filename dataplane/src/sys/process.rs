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

#[cfg(test)]
mod tests {
    use super::*;

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
