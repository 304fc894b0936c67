//! Abuse suite, `sluice up` itself (docs/security.md, findings #5, #15, #25, #34): the real
//! binary started as a user would, in a scratch working directory, with an external dataplane
//! (none is needed to see these).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `sluice up` in `cwd` with `args` and extra `env`.
fn sluice_up(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.arg("up")
        .arg("--external-dataplane")
        .args(args)
        .current_dir(cwd)
        .env_remove("SLUICE_CONTROL_API_KEYS")
        .env("SLUICE_DATAPLANE_CONTROL_SOCKET", cwd.join("dp.sock"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("sluice runs")
}

/// Waits up to `within` for the process to exit: its status code, or `None` (then killed).
fn exit_within(child: &mut Child, within: Duration) -> Option<i32> {
    let started = Instant::now();
    while started.elapsed() < within {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut s);
    s
}

/// Finding #5: without API keys, a node bound to a non-loopback address does not start
/// (unless `dev_tokens = true` is explicit); the error names the key.
#[test]
fn a_reachable_node_without_api_keys_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = sluice_up(
        dir.path(),
        &["--http", "0.0.0.0:0", "--state-file", ".sluice/state.json"],
        &[],
    );
    let code = exit_within(&mut child, Duration::from_secs(10));
    let err = stderr_of(&mut child);
    println!(
        "sluice up --http 0.0.0.0:0 without api_keys: exit {code:?}; {}",
        err.trim()
    );
    assert_eq!(code, Some(2), "it must refuse to start");
    assert!(err.contains("control.api_keys"), "{err}");
    // Asked for explicitly, it starts.
    std::fs::write(
        dir.path().join("dev.toml"),
        "[control]\ndev_tokens = true\n",
    )
    .unwrap();
    let mut child = sluice_up(
        dir.path(),
        &[
            "--config",
            "dev.toml",
            "--http",
            "0.0.0.0:0",
            "--state-file",
            ".sluice/state.json",
        ],
        &[],
    );
    let code = exit_within(&mut child, Duration::from_secs(2));
    assert_eq!(
        code,
        None,
        "with dev_tokens = true it runs: {}",
        stderr_of(&mut child)
    );
}

/// Finding #25: API keys from the environment follow the file's rules (16 characters).
#[test]
fn short_api_keys_from_the_environment_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = sluice_up(
        dir.path(),
        &[
            "--http",
            "127.0.0.1:0",
            "--state-file",
            ".sluice/state.json",
        ],
        &[("SLUICE_CONTROL_API_KEYS", "k:a")],
    );
    let code = exit_within(&mut child, Duration::from_secs(10));
    let err = stderr_of(&mut child);
    println!("SLUICE_CONTROL_API_KEYS=k:a: exit {code:?}; {}", err.trim());
    assert_eq!(code, Some(2));
    assert!(err.contains("SLUICE_CONTROL_API_KEYS"), "{err}");
}

/// Findings #15 and #34: the generated dev secret is in a 0600 file in a 0700 directory and
/// is not printed; files in the working directory's `control/static` are not served.
#[test]
fn the_dev_secret_stays_in_its_file_and_the_cwd_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let planted = dir.path().join("control/static");
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::write(planted.join("planted.html"), "<script>steal()</script>").unwrap();
    let mut child = sluice_up(
        dir.path(),
        &[
            "--http",
            "127.0.0.1:0",
            "--state-file",
            ".sluice/state.json",
        ],
        &[],
    );
    // Read stderr until the address is printed.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut printed = String::new();
    let mut addr = None;
    let started = Instant::now();
    while addr.is_none() && started.elapsed() < Duration::from_secs(20) {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        printed.push_str(&line);
        addr = line
            .split("sluice is up: http://")
            .nth(1)
            .map(|a| a.trim().trim_end_matches('/').to_owned());
    }
    let addr = addr.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("no address printed: {printed}")
    });
    let keys = dir.path().join(".sluice/dev-keys.json");
    let secret: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&keys).unwrap()).unwrap();
    let secret = secret["devkey"].as_str().unwrap().to_owned();
    let file_mode = std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
    let dir_mode = std::fs::metadata(keys.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    let served = get_status(&addr, "/planted.html");
    let index = get_status(&addr, "/");
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "stderr: {}\nsecret printed: {}; dev-keys.json {file_mode:o}, .sluice {dir_mode:o}; /planted.html {served}, / {index}",
        printed.trim(),
        printed.contains(&secret)
    );
    assert!(!printed.contains(&secret), "the dev secret was printed");
    assert!(printed.contains("dev-keys.json"), "the file is named");
    assert_eq!((file_mode, dir_mode), (0o600, 0o700));
    assert_eq!(
        served, 404,
        "a file planted in the working directory was served"
    );
    assert_eq!(
        index, 200,
        "the demo page is served from the installed location"
    );
}

fn get_status(addr: &str, path: &str) -> u16 {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}
