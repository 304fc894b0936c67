//! The line-based control protocol of the `sluice-netem` binary: one command per line, one
//! reply line per command, so a shell script can pause a path mid-test.
//!
//! ```text
//! pause up|down|both            -> ok
//! resume up|down|both           -> ok
//! set up|down|both KEY VALUE    -> ok           (KEY as the --KEY flags: loss, delay, …)
//! stats                         -> {"up":{…},"down":{…},"clients":N}
//! quit                          -> bye          (the binary then prints final stats and exits)
//! anything else                 -> error: …
//! ```

use super::cli::{CliError, Scope, Setting};
use super::relay::RelayHandle;

/// A parsed control line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ControlCommand {
    /// Drop everything in these directions.
    Pause(Scope),
    /// End a pause.
    Resume(Scope),
    /// Change one impairment field.
    Set(Scope, Setting),
    /// Reply with the stats JSON.
    Stats,
    /// Stop the relay.
    Quit,
}

/// What the binary does after a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep serving.
    Continue,
    /// Stop the relay and exit.
    Quit,
}

/// Parses one line; `Ok(None)` for a blank line or a `#` comment.
pub fn parse_line(line: &str) -> Result<Option<ControlCommand>, CliError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let command = match words.as_slice() {
        [] => return Ok(None),
        [first, ..] if first.starts_with('#') => return Ok(None),
        ["pause", dir] => ControlCommand::Pause(dir.parse()?),
        ["resume", dir] => ControlCommand::Resume(dir.parse()?),
        ["set", dir, key, value] => ControlCommand::Set(dir.parse()?, Setting::parse(key, value)?),
        ["stats"] => ControlCommand::Stats,
        ["quit" | "exit" | "stop"] => ControlCommand::Quit,
        _ => return Err(CliError::UnknownCommand(line.trim().to_owned())),
    };
    Ok(Some(command))
}

/// Runs `command` against the relay and returns the reply line.
pub fn apply(handle: &RelayHandle, command: ControlCommand) -> (String, Flow) {
    match command {
        ControlCommand::Pause(scope) => {
            scope.directions().iter().for_each(|&d| handle.pause(d));
        }
        ControlCommand::Resume(scope) => {
            scope.directions().iter().for_each(|&d| handle.resume(d));
        }
        ControlCommand::Set(scope, setting) => {
            for &direction in scope.directions() {
                let mut impairment = handle.impairment(direction);
                setting.apply(&mut impairment);
                if let Err(e) = handle.set(direction, impairment) {
                    return (format!("error: {e}"), Flow::Continue);
                }
            }
        }
        ControlCommand::Stats => return (handle.stats().to_json(), Flow::Continue),
        ControlCommand::Quit => return ("bye".into(), Flow::Quit),
    }
    ("ok".into(), Flow::Continue)
}

/// Parses and runs one line: the reply for a command, `None` for a blank line or comment.
pub fn handle_line(handle: &RelayHandle, line: &str) -> Option<(String, Flow)> {
    match parse_line(line) {
        Ok(Some(command)) => Some(apply(handle, command)),
        Ok(None) => None,
        Err(e) => Some((format!("error: {e}"), Flow::Continue)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::impairment::Direction;
    use super::*;

    #[test]
    fn parses_every_command() {
        assert_eq!(
            parse_line("pause up").unwrap(),
            Some(ControlCommand::Pause(Scope::One(Direction::Up)))
        );
        assert_eq!(
            parse_line("  resume both ").unwrap(),
            Some(ControlCommand::Resume(Scope::Both))
        );
        assert_eq!(
            parse_line("set down loss 0.2").unwrap(),
            Some(ControlCommand::Set(
                Scope::One(Direction::Down),
                Setting::Loss(0.2)
            ))
        );
        assert_eq!(
            parse_line("set up delay 30ms").unwrap(),
            Some(ControlCommand::Set(
                Scope::One(Direction::Up),
                Setting::Delay(Duration::from_millis(30))
            ))
        );
        assert_eq!(parse_line("stats").unwrap(), Some(ControlCommand::Stats));
        assert_eq!(parse_line("quit").unwrap(), Some(ControlCommand::Quit));
        assert_eq!(parse_line("").unwrap(), None);
        assert_eq!(parse_line("# comment").unwrap(), None);
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(matches!(
            parse_line("pause sideways"),
            Err(CliError::BadValue { .. })
        ));
        assert!(matches!(
            parse_line("set up loss"),
            Err(CliError::UnknownCommand(_))
        ));
        assert!(matches!(
            parse_line("set up loss 2"),
            Err(CliError::BadValue { .. })
        ));
        assert!(matches!(
            parse_line("reboot"),
            Err(CliError::UnknownCommand(_))
        ));
    }
}
