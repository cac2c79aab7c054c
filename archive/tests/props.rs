//! Properties: random nestings are walked exactly, and no input, however
//! broken, makes the walk panic.
#![allow(clippy::unwrap_used)]

mod common;

use common::{walk_all, walk_default, wrap};
use portcullis_archive::{ArchiveMode, Format, Limits, WalkOutcome};
use proptest::prelude::*;

/// A random nesting: archives of named children, streams of one child.
#[derive(Debug, Clone)]
enum Node {
    Leaf(Vec<u8>),
    Container(Format, Vec<(String, Node)>),
}

const ARCHIVES: [Format; 3] = [Format::Zip, Format::Tar, Format::SevenZ];
const STREAMS: [Format; 4] = [Format::Gzip, Format::Bzip2, Format::Xz, Format::Zstd];

fn leaf() -> impl Strategy<Value = Node> {
    // Letters only, shorter than a tar block: never mistaken for a
    // container.
    proptest::collection::vec(b'a'..=b'z', 1..300).prop_map(Node::Leaf)
}

fn container(inner: impl Strategy<Value = Node> + Clone) -> impl Strategy<Value = Node> {
    let names = proptest::collection::vec("[a-z0-9_.]{1,10}", 1..4);
    prop_oneof![
        (
            proptest::sample::select(&ARCHIVES[..]),
            names,
            proptest::collection::vec(inner.clone(), 3)
        )
            .prop_map(|(format, names, children)| {
                let children = names
                    .into_iter()
                    .zip(children)
                    .enumerate()
                    // Unique names: the index makes them so.
                    .map(|(i, (n, c))| (format!("{n}-{i}"), c))
                    .collect();
                Node::Container(format, children)
            }),
        (proptest::sample::select(&STREAMS[..]), inner)
            .prop_map(|(format, child)| Node::Container(format, vec![("-".to_string(), child)])),
    ]
}

/// A tree with 1 to 5 levels of containers.
fn tree() -> impl Strategy<Value = Node> {
    let nested = leaf().prop_recursive(4, 24, 3, |inner| prop_oneof![leaf(), container(inner)]);
    container(nested)
}

fn build(node: &Node) -> Vec<u8> {
    match node {
        Node::Leaf(data) => data.clone(),
        Node::Container(format, children) => {
            if format.is_stream() {
                return wrap(*format, "", &build(&children[0].1));
            }
            let built: Vec<(String, Vec<u8>)> = children
                .iter()
                .map(|(n, c)| (n.clone(), build(c)))
                .collect();
            let refs: Vec<(&str, &[u8])> = built
                .iter()
                .map(|(n, d)| (n.as_str(), d.as_slice()))
                .collect();
            match format {
                Format::Zip => common::zip(&refs, common::ZipMethod::Deflated),
                Format::Tar => common::tar(&refs),
                _ => common::sevenz(&refs, true),
            }
        }
    }
}

/// Every leaf with the path it must be visited at.
fn leaves(node: &Node, path: &mut Vec<String>, out: &mut Vec<(String, Vec<u8>)>) {
    match node {
        Node::Leaf(data) => out.push((path.join("!"), data.clone())),
        Node::Container(format, children) => {
            for (name, child) in children {
                if format.is_stream() {
                    leaves(child, path, out);
                } else {
                    path.push(name.clone());
                    leaves(child, path, out);
                    path.pop();
                }
            }
        }
    }
}

fn no_panic_outcome(outcome: &WalkOutcome) -> bool {
    !matches!(outcome, WalkOutcome::Stopped { .. })
}

proptest! {
    // 64 cases by default; PROPTEST_CASES=5000 for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_leaf_is_visited_once_at_its_path(node in tree()) {
        let data = build(&node);
        let mut expected = Vec::new();
        leaves(&node, &mut Vec::new(), &mut expected);
        let (outcome, seen) = walk_default(&data);
        prop_assert!(matches!(outcome, WalkOutcome::Complete { .. }), "{:?}", outcome);
        for (path, content) in &expected {
            let visits = seen.iter().filter(|s| &s.path == path && &s.data == content).count();
            prop_assert_eq!(visits, 1, "{} in {:?}", path, seen.iter().map(|s| &s.path).collect::<Vec<_>>());
        }
    }

    #[test]
    fn truncated_or_damaged_archives_never_panic(
        node in tree(),
        cut in 0.0f64..1.0,
        flips in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 0..4),
    ) {
        let mut data = build(&node);
        let keep = ((data.len() as f64) * cut) as usize;
        let mut truncated = data[..keep].to_vec();
        let (outcome, _) = walk_default(&truncated);
        prop_assert!(no_panic_outcome(&outcome));
        for (at, byte) in &flips {
            let last = data.len() - 1;
            let i = ((data.len() as f64) * at) as usize;
            data[i.min(last)] ^= byte | 1;
            if !truncated.is_empty() {
                let j = ((truncated.len() as f64) * at) as usize;
                let j = j.min(truncated.len() - 1);
                truncated[j] ^= byte | 1;
            }
        }
        let (outcome, _) = walk_default(&data);
        prop_assert!(no_panic_outcome(&outcome));
        let (outcome, _) = walk_default(&truncated);
        prop_assert!(no_panic_outcome(&outcome));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        magic in proptest::sample::select(vec![
            &b""[..],
            b"PK\x03\x04",
            b"PK\x05\x06",
            b"\x1f\x8b\x08\x00",
            b"BZh91AY&SY",
            b"\xfd7zXZ\x00\x00\x04",
            b"\x28\xb5\x2f\xfd",
            b"7z\xbc\xaf\x27\x1c\x00\x04",
            b"\x7fELF",
        ]),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        tail_eocd in any::<bool>(),
    ) {
        let mut data = magic.to_vec();
        data.extend_from_slice(&body);
        if tail_eocd {
            data.extend_from_slice(b"PK\x05\x06");
            data.extend_from_slice(&body[..body.len().min(18)]);
        }
        for mode in [ArchiveMode::All, ArchiveMode::Sfx] {
            let (outcome, _) = walk_all(&data, mode, &Limits::default());
            prop_assert!(no_panic_outcome(&outcome));
        }
    }

    #[test]
    fn damaged_compressed_data_never_panics(
        format in proptest::sample::select(vec![
            Format::Zip, Format::Tar, Format::SevenZ, Format::Gzip, Format::Bzip2, Format::Xz, Format::Zstd,
        ]),
        zip_method in proptest::sample::select(vec![
            common::ZipMethod::Deflated, common::ZipMethod::Bzip2, common::ZipMethod::Xz,
            common::ZipMethod::Lzma, common::ZipMethod::Zstd,
        ]),
        seed in any::<u64>(),
        len in 1usize..65536,
        flips in proptest::collection::vec((0.0f64..1.0, 1u8..=255), 1..6),
    ) {
        // Compressible but not trivial: a few symbols with runs.
        let mut x = seed | 1;
        let content: Vec<u8> = (0..len).map(|i| {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            if x % 4 == 0 { (x >> 8) as u8 } else { b"abcab"[i % 5] }
        }).collect();
        let mut data = if format == Format::Zip {
            common::zip(&[("m", &content)], zip_method)
        } else {
            wrap(format, "m", &content)
        };
        let last = data.len() - 1;
        for (at, byte) in &flips {
            let i = ((data.len() as f64) * at) as usize;
            data[i.min(last)] ^= byte;
        }
        let (outcome, _) = walk_default(&data);
        prop_assert!(no_panic_outcome(&outcome));
    }
}
