//! `sluice-bench`: Sluice's benchmark command.
//!
//! Subcommands:
//! - `micro [--json] [--quick]`: per-operation costs of rtp-core's hot paths, SRTP protect
//!   beside the bare crypto cost (`ratio_to_raw_crypto`).
//!
//! With `--json` the command prints exactly one JSON object on stdout; progress goes to stderr.

use std::process::ExitCode;

use bench::measure::Budget;
use bench::micro;
use serde_json::json;

const USAGE: &str = "usage: sluice-bench micro [--json] [--quick]

  micro    per-operation cost of rtp-core's hot paths (parse, SRTP, NACK cache, pacer)
  --json   print one JSON object on stdout instead of a table
  --quick  a smoke run: every case once, rough figures";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut json_out = false;
    let mut quick = false;
    for a in &args[1..] {
        match a.as_str() {
            "--json" => json_out = true,
            "--quick" => quick = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("sluice-bench: unknown option `{other}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    match cmd.as_str() {
        "micro" => {
            let budget = if quick { Budget::QUICK } else { Budget::FULL };
            eprintln!("sluice-bench micro: measuring (interleaved rounds, medians)...");
            let entries = micro::run(budget);
            if json_out {
                let report = json!({
                    "command": "micro",
                    "quick": quick,
                    "provenance": micro::provenance(),
                    "target_ratio_to_raw_crypto": 1.15,
                    "entries": entries.iter().map(micro::Entry::to_json).collect::<Vec<_>>(),
                });
                println!("{report}");
            } else {
                println!(
                    "{:<40} {:>10} {:>10} {:>7}",
                    "case", "ns/op", "raw ns/op", "ratio"
                );
                for e in &entries {
                    match e.raw_crypto_ns_per_op {
                        Some(raw) => println!(
                            "{:<40} {:>10.1} {:>10.1} {:>7.3}",
                            e.name,
                            e.ns_per_op,
                            raw,
                            e.ns_per_op / raw
                        ),
                        None => println!("{:<40} {:>10.1}", e.name, e.ns_per_op),
                    }
                }
            }
            ExitCode::SUCCESS
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("sluice-bench: unknown command `{other}`\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
