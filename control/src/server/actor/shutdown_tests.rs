//! A job for a room while the runtime shuts down: the actor [`App::dispatch`] starts is dropped
//! as soon as it is spawned, so every send fails at once. The old loop retried without ever
//! yielding and held the shutting-down runtime forever (a test binary hung in `Runtime::drop`,
//! one worker spinning in `dispatch`); now the job is dropped after a few tries and its caller
//! gets an error.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crate::server::{Server, ServerOptions};

fn options() -> ServerOptions {
    ServerOptions {
        http: "127.0.0.1:0".parse().unwrap(),
        api_keys: [("k".to_owned(), "shutdown-test-secret-0123456789".to_owned())].into(),
        rooms: Default::default(),
        state_file: None,
        webhooks: Vec::new(),
        webhook_secret: None,
        webhook_ca_file: None,
        webhook: Default::default(),
        sse: Default::default(),
        static_dir: None,
        dataplane_socket: None,
        drain_deadline: Duration::from_secs(5),
        dev_tokens: false,
        hybrid: Default::default(),
        turn: None,
        limits: Default::default(),
        cluster: None,
    }
}

/// Polls `f` to completion on this thread, outside any tokio runtime's workers.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

#[test]
fn a_job_while_the_runtime_shuts_down_is_refused_not_spun_on() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(Server::start(options()))
        .expect("server starts");
    let app = Arc::clone(&server.app);
    let handle = rt.handle().clone();
    // Every task dropped; a task spawned from now on is dropped at once.
    rt.shutdown_background();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _in_runtime = handle.enter();
        let r = block_on(app.in_local_room("r", |_| Box::pin(async { Ok(()) })));
        let _ = tx.send(r.map_err(|e| e.to_string()));
    });
    let got = rx.recv_timeout(Duration::from_secs(10));
    println!("a job for room r after shutdown: {got:?}");
    assert!(
        matches!(got, Ok(Err(_))),
        "refused with an error within 10 s (the old dispatch never returned): {got:?}"
    );
    drop(server);
}
