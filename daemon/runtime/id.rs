//! Container ids (delete.md D1, D2): the only way to turn a caller's string into a path
//! under the state root.
use std::fmt;

use crate::error::{Error, Result};

/// A container id that passed validation: 1 to 255 bytes of `A-Z a-z 0-9 _ + - .`, and
/// neither `.` nor `..`. Such an id is a single, harmless path component.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerId(String);

/// runc's rule for ids; exec ids follow it too, so either can name a file.
fn is_valid(raw: &str) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.');
    (1..=255).contains(&raw.len()) && raw.bytes().all(allowed) && raw != "." && raw != ".."
}

impl ContainerId {
    pub fn parse(raw: &str) -> Result<Self> {
        if is_valid(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::InvalidId(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An exec process's id within its container, under the same rule as a container id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExecId(String);

impl ExecId {
    pub fn parse(raw: &str) -> Result<Self> {
        if is_valid(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::InvalidExecId(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d1_accepts_the_runc_alphabet() {
        for id in ["a", "A-Z_0.9+x", "..a", "a..", &"x".repeat(255)] {
            assert_eq!(ContainerId::parse(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn d1_rejects_everything_else() {
        let long = "x".repeat(256);
        for id in [
            "", ".", "..", "a/b", "/", "../x", "a b", "a\0b", "é", "x,y", "a\nb", "~", &long,
        ] {
            assert!(
                matches!(ContainerId::parse(id), Err(Error::InvalidId(_))),
                "{id:?} was accepted"
            );
        }
    }
}
