//! The CLI's exit codes: what each kind of failure means to a script, the
//! table `serval --help` shows, and the sentence a lost connection adds
//! about whether the command may have taken effect.

use std::process::ExitCode;

use super::CliError;

/// Failures that fit no other code: a local file that cannot be written,
/// an answer the CLI did not expect.
pub const OTHER: u8 = 1;
/// Bad flags or arguments, or an input file that cannot be read or parsed;
/// nothing was sent. (clap's own code for usage errors.)
pub const USAGE: u8 = 2;
/// The server answered with an error (`error: CODE: message`): the call
/// was refused or failed, and changed nothing.
pub const REFUSED: u8 = 3;
/// No server could be reached, or the server said it is unavailable
/// (UNAVAILABLE): nothing was done, and the command may be run again.
pub const UNAVAILABLE: u8 = 4;
/// The connection was lost during the call: a change may or may not have
/// been applied; the message says how to find out.
pub const CONNECTION_LOST: u8 = 5;
/// `serval rollout start`: a gate failed, and the canary was rolled back.
pub const GATE_FAILED: u8 = 6;

/// The exit codes as `serval --help` lists them.
pub const HELP: &str = "\
Exit codes:
  0  success
  1  any other failure (e.g. a file that cannot be written)
  2  usage: bad flags or arguments, or an input file that cannot be read; nothing was sent
  3  the server refused or failed the call (error: CODE: message); nothing was changed
  4  unavailable: no server could be reached, or it answered UNAVAILABLE; nothing was done,
     run the command again later
  5  the connection was lost during the call: a change may or may not have been applied
     (the message says how to check, e.g. `serval jobs` after `serval train`)
  6  serval rollout start: a gate failed and the canary was rolled back";

impl CliError {
    /// The process's exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }

    fn code(&self) -> u8 {
        use serval_client::ClientError;
        match self {
            CliError::Input(_) => USAGE,
            CliError::Refused(_) => REFUSED,
            CliError::GateFailed(_) => GATE_FAILED,
            CliError::ConnectionLost { .. } => CONNECTION_LOST,
            CliError::Failed(_) | CliError::Io(_) => OTHER,
            CliError::Client(error) => match error {
                ClientError::ConnectionLost(_) => CONNECTION_LOST,
                error if error.is_unavailable() => UNAVAILABLE,
                ClientError::Status(_) => REFUSED,
                ClientError::UploadRead { .. } => USAGE,
                _ => OTHER,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_listed() {
        let codes = [OTHER, USAGE, REFUSED, UNAVAILABLE, CONNECTION_LOST, GATE_FAILED];
        let mut sorted = codes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len());
        for code in codes {
            assert!(
                HELP.contains(&format!("\n  {code}  ")),
                "{code} missing from the help"
            );
        }
    }
}
