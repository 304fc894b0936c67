//! Janus's configuration folder, written from the templates in `bench/janus/` into a fresh
//! temporary folder, with private plugin and transport folders that link only the VideoRoom
//! plugin and the HTTP transport (so nothing else loads). Removed on drop.

use std::path::{Path, PathBuf};

use crate::report::BenchError;

const CORE: &str = include_str!("../../janus/janus.jcfg");
const HTTP: &str = include_str!("../../janus/janus.transport.http.jcfg");
const VIDEOROOM: &str = include_str!("../../janus/janus.plugin.videoroom.jcfg");
/// Where Debian installs Janus's modules.
const LIB: &str = "/usr/lib/x86_64-linux-gnu/janus";

/// A written configuration folder.
#[derive(Debug)]
pub struct ConfigDir {
    path: PathBuf,
}

impl ConfigDir {
    pub fn write(ip: &str, http_port: u16, rtp: (u16, u16)) -> Result<ConfigDir, BenchError> {
        let path = std::env::temp_dir().join(format!("sluice-bench-janus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        let dir = ConfigDir { path };
        let plugins = dir.path.join("plugins");
        let transports = dir.path.join("transports");
        let empty = dir.path.join("empty");
        for d in [&plugins, &transports, &empty] {
            std::fs::create_dir_all(d)?;
        }
        let lib = Path::new(LIB);
        std::os::unix::fs::symlink(
            lib.join("plugins/libjanus_videoroom.so"),
            plugins.join("libjanus_videoroom.so"),
        )?;
        std::os::unix::fs::symlink(
            lib.join("transports/libjanus_http.so"),
            transports.join("libjanus_http.so"),
        )?;
        let vars = [
            ("CONF", dir.path.display().to_string()),
            ("PLUGINS", plugins.display().to_string()),
            ("TRANSPORTS", transports.display().to_string()),
            ("EMPTY", empty.display().to_string()),
            ("IP", ip.to_string()),
            ("HTTP_PORT", http_port.to_string()),
            ("RTP_MIN", rtp.0.to_string()),
            ("RTP_MAX", rtp.1.to_string()),
        ];
        for (name, template) in [
            ("janus.jcfg", CORE),
            ("janus.transport.http.jcfg", HTTP),
            ("janus.plugin.videoroom.jcfg", VIDEOROOM),
        ] {
            std::fs::write(dir.path.join(name), fill(template, &vars))?;
        }
        Ok(dir)
    }

    /// Removes configuration folders of runs whose process is gone (killed before their drop).
    pub fn remove_stale() {
        let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix("sluice-bench-janus-") else {
                continue;
            };
            if pid.chars().all(|c| c.is_ascii_digit())
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Replaces every `{{NAME}}` of `vars` in `template`.
pub fn fill(template: &str, vars: &[(&str, String)]) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{{{k}}}}}"), v);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_every_placeholder() {
        let vars = [
            ("CONF", "/c".to_string()),
            ("PLUGINS", "/p".to_string()),
            ("TRANSPORTS", "/t".to_string()),
            ("EMPTY", "/e".to_string()),
            ("IP", "10.88.0.1".to_string()),
            ("HTTP_PORT", "8088".to_string()),
            ("RTP_MIN", "20000".to_string()),
            ("RTP_MAX", "40000".to_string()),
        ];
        for t in [CORE, HTTP, VIDEOROOM] {
            let s = fill(t, &vars);
            assert!(!s.contains("{{"), "unfilled placeholder in {s}");
        }
        let http = fill(HTTP, &vars);
        assert!(http.contains("ip = \"10.88.0.1\"") && http.contains("admin_http = false"));
        assert!(fill(CORE, &vars).contains("rtp_port_range = \"20000-40000\""));
    }
}
