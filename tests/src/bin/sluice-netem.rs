//! `sluice-netem`: the UDP impairment relay as a process, for shell-driven tests and
//! benchmarks. Parses the flags (`sluice_tests::netem::cli`), starts the relay, prints
//! `ready IP:PORT`, serves control lines from stdin or a Unix socket, and prints the stats as
//! one JSON line on exit (`quit`, end of stdin, or `--duration`). See `docs/netem.md`.
#![forbid(unsafe_code)]

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread;
use std::time::Instant;

use sluice_tests::netem::cli::{self, CliError, ControlSource};
use sluice_tests::netem::control::{self, Flow};
use sluice_tests::netem::Relay;

fn main() -> ExitCode {
    let options = match cli::parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(CliError::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sluice-netem: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let handle = match Relay::start(options.relay.clone()) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("sluice-netem: cannot start: {e}");
            return ExitCode::from(1);
        }
    };

    let (tx, rx) = mpsc::channel::<Message>();
    let socket_path = match &options.control {
        ControlSource::Stdin => {
            let tx = tx.clone();
            thread::spawn(move || read_stdin(&tx));
            None
        }
        ControlSource::Unix(path) => {
            let listener = match UnixListener::bind(path) {
                Ok(listener) => listener,
                Err(e) => {
                    eprintln!("sluice-netem: control socket {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            };
            let tx = tx.clone();
            thread::spawn(move || serve_unix(&listener, &tx));
            Some(path.clone())
        }
        ControlSource::None => None,
    };
    say(&format!("ready {}", handle.local_addr()));
    eprintln!(
        "sluice-netem: {} -> {} seed {} up {:?} down {:?}",
        handle.local_addr(),
        options.relay.upstream,
        options.relay.seed,
        options.relay.up,
        options.relay.down
    );

    let deadline = options.duration.map(|d| Instant::now() + d);
    loop {
        // `tx` stays alive here, so without a control source `recv` waits for the deadline
        // (or for ever) instead of returning at once.
        let message = match deadline {
            Some(deadline) => {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(message) => message,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            None => match rx.recv() {
                Ok(message) => message,
                Err(_) => break,
            },
        };
        let Message::Line(line, reply_to) = message else {
            break;
        };
        let reply = control::handle_line(&handle, &line);
        let quit = matches!(reply, Some((_, Flow::Quit)));
        let text = reply.map(|(text, _)| text);
        match reply_to {
            Some(reply_to) => {
                let _ = reply_to.send(text);
            }
            None => text.iter().for_each(|t| say(t)),
        }
        if quit {
            break;
        }
    }
    drop(tx);

    let stats = handle.stop();
    say(&stats.to_json());
    if let Some(path) = socket_path {
        let _ = std::fs::remove_file(path);
    }
    ExitCode::SUCCESS
}

/// From the control threads to the main loop.
enum Message {
    /// A control line; the reply goes back on the sender, or to stdout when there is none.
    Line(String, Option<Sender<Option<String>>>),
    /// Standard input ended.
    Eof,
}

fn read_stdin(tx: &Sender<Message>) {
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if tx.send(Message::Line(line, None)).is_err() {
            return;
        }
    }
    let _ = tx.send(Message::Eof);
}

/// Serves one control connection at a time, one reply line per command line.
fn serve_unix(listener: &UnixListener, tx: &Sender<Message>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        if serve_connection(stream, tx).is_err() {
            continue;
        }
    }
}

fn serve_connection(stream: UnixStream, tx: &Sender<Message>) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    for line in BufReader::new(stream).lines() {
        let (reply_tx, reply_rx) = mpsc::channel();
        if tx.send(Message::Line(line?, Some(reply_tx))).is_err() {
            break;
        }
        match reply_rx.recv() {
            Ok(Some(reply)) => writeln!(writer, "{reply}")?,
            Ok(None) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

/// One line on stdout, flushed at once so a script reading a pipe sees it.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
