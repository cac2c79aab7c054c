//! Where an event was read from: the local journal or a Kafka partition.
//!
//! Exports carry it so an investigator can go back to the exact record
//! (`portcullis events --from`, `kcat -o`), and so a consumer can tell a
//! replayed event from a live one.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The position of one record in the store it was read from.
///
/// JSON form (serde's external tagging, the same in ECS `portcullis.source`
/// and OCSF `unmapped.source`): exactly one key naming the store, holding
/// an object with that store's coordinates:
///
/// ```json
/// {"journal": {"seq": 42}}
/// {"kafka": {"topic": "portcullis.events.v1", "partition": 3, "offset": 1234}}
/// ```
///
/// Text form (`Display` and `FromStr`, and the CEF `cs5` field):
/// `journal:seq=42`, `kafka:portcullis.events.v1/3@1234`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourcePosition {
    /// The node's sled journal; `seq` is the envelope's per-node sequence.
    Journal { seq: u64 },
    /// A Kafka record.
    Kafka {
        topic: String,
        partition: i32,
        offset: i64,
    },
}

impl fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Journal { seq } => write!(f, "journal:seq={seq}"),
            Self::Kafka {
                topic,
                partition,
                offset,
            } => write!(f, "kafka:{topic}/{partition}@{offset}"),
        }
    }
}

/// A text that is not `journal:seq=N` or `kafka:TOPIC/PARTITION@OFFSET`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a source position (expected journal:seq=N or kafka:TOPIC/PARTITION@OFFSET)")]
pub struct ParseSourcePositionError(pub String);

impl FromStr for SourcePosition {
    type Err = ParseSourcePositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseSourcePositionError(s.to_owned());
        if let Some(seq) = s.strip_prefix("journal:seq=") {
            return seq
                .parse()
                .map(|seq| Self::Journal { seq })
                .map_err(|_| err());
        }
        let rest = s.strip_prefix("kafka:").ok_or_else(err)?;
        // Topic names cannot hold `/` or `@`, but split from the right
        // anyway so the numbers are always the last two parts.
        let (rest, offset) = rest.rsplit_once('@').ok_or_else(err)?;
        let (topic, partition) = rest.rsplit_once('/').ok_or_else(err)?;
        if topic.is_empty() {
            return Err(err());
        }
        Ok(Self::Kafka {
            topic: topic.to_owned(),
            partition: partition.parse().map_err(|_| err())?,
            offset: offset.parse().map_err(|_| err())?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn kafka() -> SourcePosition {
        SourcePosition::Kafka {
            topic: "portcullis.events.v1".to_owned(),
            partition: 3,
            offset: 1234,
        }
    }

    #[test]
    fn text_form() {
        assert_eq!(
            SourcePosition::Journal { seq: 42 }.to_string(),
            "journal:seq=42"
        );
        assert_eq!(kafka().to_string(), "kafka:portcullis.events.v1/3@1234");
        for p in [SourcePosition::Journal { seq: 42 }, kafka()] {
            assert_eq!(p.to_string().parse::<SourcePosition>().unwrap(), p);
        }
        for bad in [
            "",
            "journal:",
            "journal:seq=",
            "journal:seq=-1",
            "kafka:",
            "kafka:t/1",
            "kafka:/1@2",
            "kafka:t/x@2",
            "kafka:t/1@y",
            "sled:seq=1",
        ] {
            assert!(bad.parse::<SourcePosition>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn json_form_is_externally_tagged() {
        assert_eq!(
            serde_json::to_value(SourcePosition::Journal { seq: 42 }).unwrap(),
            serde_json::json!({"journal": {"seq": 42}})
        );
        assert_eq!(
            serde_json::to_value(kafka()).unwrap(),
            serde_json::json!({"kafka": {"topic": "portcullis.events.v1", "partition": 3, "offset": 1234}})
        );
        let back: SourcePosition =
            serde_json::from_str(r#"{"kafka":{"topic":"t","partition":0,"offset":-1}}"#).unwrap();
        assert_eq!(
            back,
            SourcePosition::Kafka {
                topic: "t".into(),
                partition: 0,
                offset: -1
            }
        );
        assert!(serde_json::from_str::<SourcePosition>(r#"{"journal":{"seq":1,"x":2}}"#).is_err());
    }
}
