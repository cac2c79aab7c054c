//! The decoder rejects everything that is not a well-formed record of the
//! current schema version, with an error that says what is wrong and where,
//! and never panics, whatever the input.
#![allow(clippy::unwrap_used)]

mod samples;
mod strategies;

use bincode::error::DecodeError as BincodeError;
use portcullis_schemas::codec::{self, DecodeError};
use portcullis_schemas::*;
use proptest::prelude::*;

fn encoded(name: &str) -> Vec<u8> {
    codec::encode(&samples::by_name(name)).unwrap()
}

/// The offset of `needle` in `haystack` (it must occur exactly once).
fn find_once(haystack: &[u8], needle: &[u8]) -> usize {
    let hits: Vec<usize> = haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits.len(), 1, "{needle:?} occurs {} times", hits.len());
    hits[0]
}

fn body_error(r: Result<Envelope, DecodeError>) -> BincodeError {
    match r {
        Err(DecodeError::Body { source }) => source,
        other => panic!("expected DecodeError::Body, got {other:?}"),
    }
}

// ------------------------------------------------------------- header

#[test]
fn unknown_schema_versions_are_rejected_naming_found_and_supported() {
    let good = encoded("file_accessed");
    for v in [0u16, SCHEMA_VERSION + 1, 7, 0x0100, u16::MAX] {
        let mut bytes = good.clone();
        bytes[2..4].copy_from_slice(&v.to_be_bytes());
        assert_eq!(codec::peek_version(&bytes).unwrap(), v);
        let err = codec::decode(&bytes).unwrap_err();
        match err {
            DecodeError::UnsupportedVersion { found, supported } => {
                assert_eq!(found, v);
                assert_eq!(supported, SCHEMA_VERSION);
            }
            ref other => panic!("version {v}: expected UnsupportedVersion, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&format!("version {v}")), "{msg}");
        assert!(
            msg.contains(&format!("reads versions 1 to {SCHEMA_VERSION}")),
            "{msg}"
        );
    }
}

#[test]
fn envelope_of_a_future_schema_is_rejected_on_decode() {
    let mut env = samples::by_name("agent_started");
    env.schema = SCHEMA_VERSION + 1;
    let bytes = codec::encode(&env).unwrap();
    assert_eq!(codec::peek_version(&bytes).unwrap(), SCHEMA_VERSION + 1);
    assert!(matches!(
        codec::decode(&bytes),
        Err(DecodeError::UnsupportedVersion { found, supported: SCHEMA_VERSION })
            if found == SCHEMA_VERSION + 1
    ));
}

#[test]
fn header_and_envelope_versions_must_agree() {
    // The envelope says a version of its own, the header the current one.
    let mut env = samples::by_name("queue_overflowed");
    env.schema = SCHEMA_VERSION + 5;
    let mut bytes = codec::encode(&env).unwrap();
    bytes[2..4].copy_from_slice(&SCHEMA_VERSION.to_be_bytes());
    match codec::decode(&bytes) {
        Err(DecodeError::VersionMismatch { header, inner }) => {
            assert_eq!(header, SCHEMA_VERSION);
            assert_eq!(inner, SCHEMA_VERSION + 5);
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
}

#[test]
fn bad_magic_is_rejected() {
    let good = encoded("decision_deny");
    for magic in [*b"XC", *b"CP", *b"pc", [0, 0], [0xff, 0xff], *b"P\0"] {
        let mut bytes = good.clone();
        bytes[..2].copy_from_slice(&magic);
        match codec::decode(&bytes) {
            Err(DecodeError::BadMagic { found }) => assert_eq!(found, magic),
            other => panic!("magic {magic:?}: expected BadMagic, got {other:?}"),
        }
        assert!(matches!(
            codec::peek_version(&bytes),
            Err(DecodeError::BadMagic { .. })
        ));
    }
    // Not a record at all: a JSON line.
    let err = codec::decode(br#"{"event":{"kind":"event"}}"#).unwrap_err();
    assert!(
        matches!(err, DecodeError::BadMagic { found } if found == *b"{\""),
        "{err:?}"
    );
    assert!(err.to_string().contains("not a portcullis event"), "{err}");
}

#[test]
fn records_shorter_than_the_header_are_truncated() {
    let good = encoded("decision_allow");
    for len in 0..4 {
        match codec::decode(&good[..len]) {
            Err(DecodeError::Truncated { len: l }) => assert_eq!(l, len),
            other => panic!("{len} bytes: expected Truncated, got {other:?}"),
        }
        assert!(matches!(
            codec::peek_version(&good[..len]),
            Err(DecodeError::Truncated { .. })
        ));
    }
}

#[test]
fn every_cut_short_record_is_an_unexpected_end() {
    for (name, env) in samples::all() {
        let bytes = codec::encode(&env).unwrap();
        for cut in 4..bytes.len() {
            match body_error(codec::decode(&bytes[..cut])) {
                BincodeError::UnexpectedEnd { .. } => {}
                other => panic!("{name} cut at {cut}: expected UnexpectedEnd, got {other:?}"),
            }
        }
        assert_eq!(codec::decode(&bytes).unwrap(), env, "{name}");
    }
}

#[test]
fn trailing_bytes_are_rejected_with_their_offset() {
    let good = encoded("rules_loaded");
    let mut bytes = good.clone();
    bytes.extend_from_slice(b"\0\x01\x02");
    let err = codec::decode(&bytes).unwrap_err();
    match err {
        DecodeError::TrailingBytes { offset, extra } => {
            assert_eq!(offset, good.len());
            assert_eq!(extra, 3);
        }
        ref other => panic!("expected TrailingBytes, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains(&format!("at offset {}", good.len())),
        "{err}"
    );

    // Two records back to back are not one record.
    let mut two = good.clone();
    two.extend_from_slice(&good);
    assert!(matches!(
        codec::decode(&two),
        Err(DecodeError::TrailingBytes { offset, extra }) if offset == good.len() && extra == good.len()
    ));
}

// ------------------------------------------------------------- corrupted bodies

#[test]
fn unknown_body_variant_is_an_error() {
    // QueueOverflowed { source: Kernel, count: 17 } ends the record as
    // [variant 8] [source 0] [count 17].
    let good = encoded("queue_overflowed");
    let n = good.len();
    assert_eq!(&good[n - 3..], &[8, 0, 17], "sample encoding moved");

    let mut bytes = good.clone();
    bytes[n - 3] = 200; // no such EventBody variant
    assert!(matches!(
        body_error(codec::decode(&bytes)),
        BincodeError::OtherString(_)
            | BincodeError::Other(_)
            | BincodeError::UnexpectedVariant { .. }
    ));

    let mut bytes = good.clone();
    bytes[n - 2] = 3; // no such OverflowSource variant
    let _ = body_error(codec::decode(&bytes));
}

#[test]
fn invalid_utf8_in_a_string_is_an_error() {
    let mut bytes = encoded("agent_started");
    let at = find_once(&bytes, samples::NODE.as_bytes());
    bytes[at] = 0xff;
    match body_error(codec::decode(&bytes)) {
        BincodeError::Utf8 { .. } => {}
        other => panic!("expected Utf8, got {other:?}"),
    }
}

#[test]
fn invalid_bool_and_option_tags_are_errors() {
    // AgentStopped { answered_pending: 3, signal: Some("SIGTERM") } ends
    // with [variant 1] [3] [Some = 1] [len 7] "SIGTERM".
    let good = encoded("agent_stopped");
    let tag_at = find_once(&good, b"SIGTERM") - 2;
    assert_eq!(good[tag_at], 1, "sample encoding moved");
    let mut bytes = good.clone();
    bytes[tag_at] = 2;
    let _ = body_error(codec::decode(&bytes));

    // FileAccessed ends with `blocking: true`.
    let good = encoded("file_accessed");
    let n = good.len();
    assert_eq!(good[n - 1], 1, "sample encoding moved");
    let mut bytes = good.clone();
    bytes[n - 1] = 2;
    match body_error(codec::decode(&bytes)) {
        BincodeError::InvalidBooleanValue(2) => {}
        other => panic!("expected InvalidBooleanValue, got {other:?}"),
    }
}

/// A corrupted length prefix must not make the decoder allocate whatever
/// the record claims: that is a panic ("capacity overflow") or an abort
/// (allocation failure) instead of an error.
#[test]
fn absurd_length_prefixes_are_errors_not_allocations() {
    let good = encoded("agent_started");
    let at = find_once(&good, samples::NODE.as_bytes()) - 1;
    assert_eq!(
        usize::from(good[at]),
        samples::NODE.len(),
        "sample encoding moved"
    );
    for claimed in [
        u64::MAX,
        1 << 62,
        1 << 40,
        1 << 33,
        1 << 31,
        100_000_000,
        4096,
    ] {
        let mut bytes = good[..at].to_vec();
        bytes.push(253); // varint marker: u64 follows
        bytes.extend_from_slice(&claimed.to_le_bytes());
        bytes.extend_from_slice(&good[at + 1..]);
        match body_error(codec::decode(&bytes)) {
            BincodeError::LimitExceeded => assert!(claimed > codec::DECODE_LIMIT as u64),
            BincodeError::UnexpectedEnd { .. } => assert!(claimed <= codec::DECODE_LIMIT as u64),
            other => panic!("claimed {claimed}: unexpected {other:?}"),
        }
    }
}

/// The decode limit is far above what real records hold.
#[test]
fn large_records_below_the_limit_still_decode() {
    let mut env = samples::by_name("agent_started");
    let EventBody::AgentStarted(body) = &mut env.body else {
        unreachable!()
    };
    body.protected = (0..1024)
        .map(|i| FilePath::from_bytes(vec![b'a' + (i % 26) as u8; 1024]))
        .collect();
    let bytes = codec::encode(&env).unwrap();
    assert!(bytes.len() > 1024 * 1024);
    assert_eq!(codec::decode(&bytes).unwrap(), env);
}

/// Past the limit, the record is refused rather than allocated.
#[test]
fn records_over_the_limit_are_refused() {
    let mut env = samples::by_name("agent_started");
    let EventBody::AgentStarted(body) = &mut env.body else {
        unreachable!()
    };
    body.protected = vec![FilePath::from_bytes(vec![b'x'; codec::DECODE_LIMIT + 1])];
    let bytes = codec::encode(&env).unwrap();
    assert!(matches!(
        body_error(codec::decode(&bytes)),
        BincodeError::LimitExceeded
    ));
}

// ------------------------------------------------------------- fuzzing

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Random byte flips anywhere in a valid record never panic. If the
    /// result still decodes, it is a stable value (re-encodes and decodes
    /// to itself).
    #[test]
    fn random_byte_flips_never_panic(
        env in strategies::envelope(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let mut bytes = codec::encode(&env).unwrap();
        for (at, mask) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        if let Ok(decoded) = codec::decode(&bytes) {
            let again = codec::encode(&decoded).unwrap();
            prop_assert_eq!(codec::decode(&again).unwrap(), decoded);
        }
    }

    /// Length bombs: a big varint spliced in anywhere in the body.
    #[test]
    fn spliced_big_varints_never_panic(
        env in strategies::envelope(),
        at in any::<prop::sample::Index>(),
        marker in 251u8..=254,
        wide in any::<[u8; 16]>(),
        overwrite in any::<bool>(),
    ) {
        let good = codec::encode(&env).unwrap();
        let i = 4 + at.index(good.len() - 4);
        let width = match marker { 251 => 2, 252 => 4, 253 => 8, _ => 16 };
        let mut bytes = good[..i].to_vec();
        bytes.push(marker);
        bytes.extend_from_slice(&wide[..width]);
        let rest = if overwrite { (i + 1 + width).min(good.len()) } else { i };
        bytes.extend_from_slice(&good[rest..]);
        let _ = codec::decode(&bytes);
    }

    /// Arbitrary bytes after a valid header never panic.
    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = codec::MAGIC.to_vec();
        bytes.extend_from_slice(&SCHEMA_VERSION.to_be_bytes());
        bytes.extend_from_slice(&body);
        let _ = codec::decode(&bytes);
    }

    /// Trailing bytes after any record are reported at the record's end.
    #[test]
    fn trailing_bytes_after_any_record(
        env in strategies::envelope(),
        extra in proptest::collection::vec(any::<u8>(), 1..32),
    ) {
        let good = codec::encode(&env).unwrap();
        let mut bytes = good.clone();
        bytes.extend_from_slice(&extra);
        match codec::decode(&bytes) {
            Err(DecodeError::TrailingBytes { offset, extra: n }) => {
                prop_assert_eq!(offset, good.len());
                prop_assert_eq!(n, extra.len());
            }
            other => prop_assert!(false, "expected TrailingBytes, got {:?}", other),
        }
    }
}
