//! `sluice up` whose media port another process holds refuses to start (D113): the real
//! binaries, the dataplane's error naming `dataplane.port`, `sluice up` exiting 2. Before, the
//! dataplane exited 1, its supervisor restarted it forever, and the control daemon served on
//! — `/healthz` `ok`, in a cluster listed as `serving` — answering every join `rejected:
//! dataplane unavailable`.

#[path = "../../control/tests/api_support/mod.rs"]
mod api_support;
mod node_support;

use std::net::UdpSocket;
use std::time::Duration;

use node_support::{sluice_up_until_exit, target_bin};

#[test]
fn sluice_up_with_its_media_port_taken_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // Held for the whole test (no SO_REUSEPORT: nobody may share it).
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nhttp = \"127.0.0.1:0\"\nstate_file = \"{}\"\n\
             [dataplane]\ncontrol_socket = \"{}\"\nworkers = [0]\nbind = \"127.0.0.1\"\n\
             port = {port}\nio = \"socket\"\nbuffers_per_worker = 512\n",
            dir.path().join("state.json").display(),
            dir.path().join("run").join("dp.sock").display()
        ),
    )
    .unwrap();
    let dp = target_bin("sluice-dataplane");
    let run = sluice_up_until_exit(
        &config,
        &["--dataplane-bin".as_ref(), dp.as_os_str()],
        Duration::from_secs(20),
    );
    let err = run.stderr;
    println!(
        "port {port} taken: sluice up {:?} after {:?}\n{}",
        run.status,
        run.took,
        err.trim()
    );
    let status = run.status.unwrap_or_else(|| {
        panic!("sluice up still ran 20 s after start with its media port taken")
    });
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("error: dataplane.port: 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("refused its configuration"), "{err}");
    drop(holder);
}
