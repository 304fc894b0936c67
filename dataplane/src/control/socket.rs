//! The control socket's file (security review #9): where it may be bound and with which
//! permissions.

use std::io;
use std::os::unix::net::UnixListener;
use std::path::Path;

/// Binds the control socket safely (finding #9): the parent directory is created 0700 and
/// must be ours and closed to others (a directory another user created or can write is
/// refused, never reused); a leftover socket file is removed only if it is ours; the socket is
/// 0600. The caller names the path in its error.
pub fn bind_listener(path: &Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let named = |e: io::Error, what: &str| io::Error::new(e.kind(), format!("{what}: {e}"));
    let refuse = |what: String| io::Error::new(io::ErrorKind::PermissionDenied, what);
    let ours = crate::sys::cred::effective_uid();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| named(e, "creating its directory"))?;
        let meta = std::fs::symlink_metadata(dir).map_err(|e| named(e, "its directory"))?;
        if !meta.is_dir() {
            return Err(refuse(format!("{} is not a directory", dir.display())));
        }
        if meta.uid() != ours {
            return Err(refuse(format!(
                "directory {} belongs to uid {}, not to us ({ours})",
                dir.display(),
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(refuse(format!(
                "directory {} is writable by others (mode {:o}); make it 0700",
                dir.display(),
                meta.mode() & 0o7777
            )));
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.uid() != ours => {
            return Err(refuse(format!(
                "a file of uid {} is in the way; not ours to remove",
                meta.uid()
            )))
        }
        Ok(_) => std::fs::remove_file(path).map_err(|e| named(e, "removing the old socket"))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(named(e, "checking for an old socket")),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| named(e, "chmod 0600"))?;
    Ok(listener)
}
