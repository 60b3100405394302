//! What went wrong, by whose fix it needs, and so the process's exit code:
//!
//! | code    | class                                                                    |
//! |---------|--------------------------------------------------------------------------|
//! | 0       | everything asked for is up to date                                       |
//! | 1       | a node failed (or was skipped after one did), or the store is damaged    |
//! | 2       | bad input: pipeline.toml, params, the command line, node names           |
//! | 3       | environment: the store cannot be written or locked, a remote cannot be   |
//! |         | reached or refuses, a tool (sbatch, …) is missing                         |
//! | 130/143 | interrupted by SIGINT/SIGTERM (what finished is stored)                  |
//!
//! A failed node is not an error of the command: `run` reports it as it happens and exits
//! 1 (`cli::exit_for`). Inside the engine errors travel as `anyhow::Error` with context; the places that know an
//! error is the environment's mark it with `Error::Environment` (see `environment`), and
//! `Error::from` classifies at the top by looking for that mark in the chain.

use std::process::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's input is wrong; the message says what to change.
    #[error("{}", chain(.0))]
    BadInput(anyhow::Error),
    /// The machine or network, not the input.
    #[error("{}", chain(.0))]
    Environment(anyhow::Error),
}

/// An error with its context chain on one line (`a: b: c`), as anyhow's `{:#}` prints it.
fn chain(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Error::BadInput(_) => 2,
            Error::Environment(_) => 3,
        })
    }
}

/// The mark an environment error carries through anyhow's context chain.
#[derive(Debug, thiserror::Error)]
#[error("{}", chain(.0))]
pub struct EnvironmentError(pub anyhow::Error);

/// Mark `e` as the environment's fault (exit code 3), keeping its message.
pub fn environment(e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(EnvironmentError(e.into()))
}

/// Whether `e` is marked as the environment's fault (see `environment`).
pub fn is_environment(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<EnvironmentError>())
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Error {
        if is_environment(&e) {
            Error::Environment(e)
        } else {
            Error::BadInput(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_environment_mark_survives_context_and_sets_the_exit_code() {
        let marked: anyhow::Result<()> = Err(environment(anyhow::anyhow!("connection refused")));
        let e = Error::from(marked.context("remote team").unwrap_err());
        assert!(matches!(e, Error::Environment(_)));
        assert_eq!(e.to_string(), "remote team: connection refused");
        assert!(matches!(Error::from(anyhow::anyhow!("bad param")), Error::BadInput(_)));
    }
}
