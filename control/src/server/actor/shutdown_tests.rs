//! A job for a room while the runtime shuts down: the actor [`App::dispatch`] starts is dropped
//! as soon as it is spawned, so every send fails at once. The old loop retried without ever
//! yielding and held the shutting-down runtime forever (a test binary hung in `Runtime::drop`,
//! one worker spinning in `dispatch`); now the job is dropped after a few tries and its caller
//! gets an error.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crate::server::lock_tests::options;
use crate::server::Server;

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
