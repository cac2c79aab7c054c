//! The hard limits of a walk, and what is reported when one is reached.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::path::MemberPath;

const MIB: u64 = 1024 * 1024;

/// The hard limits of one [`walk`](crate::walk). Every one is checked as
/// the data inflates, never from sizes an archive declares.
///
/// In a configuration file (TOML), every field is optional and defaults
/// as documented; unknown fields are refused:
///
/// ```toml
/// max_depth = 8
/// max_members = 10000
/// max_total_bytes = 536870912   # 512 MiB
/// max_member_bytes = 33554432   # 32 MiB
/// max_ratio = 200
/// max_memory = 50331648         # 48 MiB
/// timeout = "10s"
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Nesting levels: each archive and each compression layer is one (a
    /// `.tar.gz` is two). Default 8.
    pub max_depth: u32,
    /// Entries of one archive, directories included. Default 10 000.
    pub max_members: u64,
    /// Decompressed bytes handed to the visitor over the whole walk.
    /// Default 512 MiB.
    pub max_total_bytes: u64,
    /// Decompressed bytes of one member, or of one decompressed stream.
    /// Default 32 MiB.
    pub max_member_bytes: u64,
    /// Decompressed over compressed bytes of a member, checked as it
    /// inflates once it is past 1 MiB (small, very compressible files
    /// pass). Default 200.
    pub max_ratio: u64,
    /// Bytes the walk may hold at once: the decompressed buffers of the
    /// member being inflated and of every archive it is nested in, the
    /// decoders' dictionaries and windows, and the 7z header tables (see
    /// the crate documentation). The caller's input is not counted.
    /// Default 48 MiB.
    pub max_memory: u64,
    /// Wall-clock time of the whole walk, checked between chunks of
    /// 64 KiB of output. Default 10 s; a humantime string ("10s",
    /// "1500ms") in configuration files.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 8,
            max_members: 10_000,
            max_total_bytes: 512 * MIB,
            max_member_bytes: 32 * MIB,
            max_ratio: 200,
            max_memory: 48 * MIB,
            timeout: Duration::from_secs(10),
        }
    }
}

/// A [`Limits`] value that cannot be used; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {message}")]
pub struct LimitsError {
    /// The configuration field, e.g. `max_depth`.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl Limits {
    /// Checks every field; the error names the first field at fault.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let at_least = |field: &'static str, value: u64, min: u64| {
            if value < min {
                Err(LimitsError {
                    field,
                    message: format!("must be at least {min} (got {value})"),
                })
            } else {
                Ok(())
            }
        };
        at_least("max_depth", u64::from(self.max_depth), 1)?;
        at_least("max_members", self.max_members, 1)?;
        at_least("max_total_bytes", self.max_total_bytes, 1)?;
        at_least("max_member_bytes", self.max_member_bytes, 1)?;
        at_least("max_ratio", self.max_ratio, 1)?;
        at_least("max_memory", self.max_memory, MIB)?;
        if self.max_member_bytes > self.max_memory {
            return Err(LimitsError {
                field: "max_member_bytes",
                message: format!(
                    "must not exceed max_memory ({} > {})",
                    self.max_member_bytes, self.max_memory
                ),
            });
        }
        if self.timeout.is_zero() {
            return Err(LimitsError {
                field: "timeout",
                message: "must be longer than zero".to_string(),
            });
        }
        Ok(())
    }
}

/// Which limit a walk reached; [`as_str`](Self::as_str) is the field of
/// [`Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Depth,
    Members,
    TotalBytes,
    MemberBytes,
    Ratio,
    Memory,
    Time,
}

impl LimitKind {
    /// The configuration field of the limit, e.g. `"max_depth"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Depth => "max_depth",
            Self::Members => "max_members",
            Self::TotalBytes => "max_total_bytes",
            Self::MemberBytes => "max_member_bytes",
            Self::Ratio => "max_ratio",
            Self::Memory => "max_memory",
            Self::Time => "timeout",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A limit reached, with where: the member being read (or the archive
/// being opened) when it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitHit {
    pub kind: LimitKind,
    /// The limit's value (milliseconds for [`LimitKind::Time`]).
    pub limit: u64,
    pub member: MemberPath,
}

impl fmt::Display for LimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}) reached", self.kind, self.limit)?;
        if !self.member.is_empty() {
            write!(f, " at {}", self.member)?;
        }
        Ok(())
    }
}

/// `Duration` as a humantime string ("10s"), the way the workspace's
/// configuration writes durations.
mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration (e.g. \"10s\", \"250ms\"): {e}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn defaults_validate_and_round_trip_through_toml() {
        let limits = Limits::default();
        limits.validate().unwrap();
        let text = toml::to_string(&limits).unwrap();
        assert!(text.contains("timeout = \"10s\""), "{text}");
        let back: Limits = toml::from_str(&text).unwrap();
        assert_eq!(back, limits);
    }

    #[test]
    fn partial_config_takes_defaults_and_unknown_fields_are_refused() {
        let l: Limits = toml::from_str("max_depth = 3\ntimeout = \"250ms\"").unwrap();
        assert_eq!(l.max_depth, 3);
        assert_eq!(l.timeout, Duration::from_millis(250));
        assert_eq!(l.max_members, Limits::default().max_members);
        assert!(toml::from_str::<Limits>("max_dept = 3").is_err());
        let e = toml::from_str::<Limits>("timeout = \"soon\"").unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");
    }

    #[test]
    fn validate_names_the_field() {
        let cases: Vec<(Limits, &str)> = vec![
            (
                Limits {
                    max_depth: 0,
                    ..Limits::default()
                },
                "max_depth must be at least 1",
            ),
            (
                Limits {
                    max_members: 0,
                    ..Limits::default()
                },
                "max_members must be at least 1",
            ),
            (
                Limits {
                    max_ratio: 0,
                    ..Limits::default()
                },
                "max_ratio must be at least 1",
            ),
            (
                Limits {
                    max_memory: 1000,
                    ..Limits::default()
                },
                "max_memory must be at least 1048576",
            ),
            (
                Limits {
                    max_member_bytes: 64 * MIB,
                    ..Limits::default()
                },
                "max_member_bytes must not exceed max_memory",
            ),
            (
                Limits {
                    timeout: Duration::ZERO,
                    ..Limits::default()
                },
                "timeout must be longer than zero",
            ),
        ];
        for (limits, expected) in cases {
            let e = limits.validate().unwrap_err();
            assert!(e.to_string().starts_with(expected), "{e} vs {expected}");
        }
    }

    #[test]
    fn kinds_name_their_field() {
        assert_eq!(LimitKind::Depth.as_str(), "max_depth");
        assert_eq!(LimitKind::Members.as_str(), "max_members");
        assert_eq!(LimitKind::TotalBytes.as_str(), "max_total_bytes");
        assert_eq!(LimitKind::MemberBytes.as_str(), "max_member_bytes");
        assert_eq!(LimitKind::Ratio.as_str(), "max_ratio");
        assert_eq!(LimitKind::Memory.as_str(), "max_memory");
        assert_eq!(LimitKind::Time.as_str(), "timeout");
    }
}
