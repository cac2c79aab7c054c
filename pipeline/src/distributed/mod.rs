//! Distributed mode: node agents and scanner services over Apache Kafka.
//!
//! The actors stay the same; only the transport between the Enforcer and
//! the scanners changes:
//!
//! - [`remote::RemoteScanner`] answers the Enforcer's `ScanFile` by reading
//!   the content through the event fd, hashing it, answering from the
//!   cluster's shared verdicts when it knows the hash, and otherwise
//!   producing a `ScanRequest` (content inline) and waiting for the
//!   `ScanReplied` on this node's own reply partition. The Enforcer's
//!   deadline still answers the opener when Kafka or the scanners are slow
//!   or gone.
//! - [`service`] is `portcullis scanner`: one consumer group, a poll
//!   thread, scan threads that reply and share as soon as each scan ends,
//!   offsets committed once the replies are acknowledged (at least once).
//! - [`outbox::Outbox`] publishes every durable journal event to the events
//!   topic and stores its cursor only after delivery.
//!
//! Undecodable messages go to `<topic>.dlq` with their origin in headers;
//! consumers go on.

pub mod outbox;
pub mod remote;
pub mod service;
