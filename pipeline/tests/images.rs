//! The container images of `compose/images/`, as `scripts/images all`
//! builds them (scripts/test does, before the tests): the portcullis image
//! runs this checkout's binary as an unprivileged user and scans with the
//! built-in rules inside it; the Kafka image is the broker scripts/kafka
//! runs, and becomes ready in a container.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::free_port;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/portcullis:latest";
const KAFKA_IMAGE: &str = "localhost/portcullis-kafka:latest";
const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn podman(args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("180")
        .arg("podman")
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Whether the images are there; without them the tests fail when
/// `PORTCULLIS_REQUIRE_IMAGES` is set (scripts/test), else skip loudly.
fn images_built(test: &str) -> bool {
    let have = |image: &str| {
        Command::new("timeout")
            .args(["30", "podman", "image", "exists", image])
            .status()
            .is_ok_and(|s| s.success())
    };
    let missing: Vec<&str> = [IMAGE, KAFKA_IMAGE]
        .into_iter()
        .filter(|i| !have(i))
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("PORTCULLIS_REQUIRE_IMAGES").is_none(),
        "{test}: images missing: {missing:?} (scripts/images all builds them)"
    );
    eprintln!(
        "!!!!!!!! SKIPPED {test}: images missing {missing:?} (run scripts/images all) !!!!!!!!"
    );
    false
}

#[test]
fn the_portcullis_image_runs_this_checkout_unprivileged_and_scans() {
    if !images_built("the_portcullis_image_runs_this_checkout_unprivileged_and_scans") {
        return;
    }
    let o = podman(&["run", "--rm", IMAGE, "--version"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("portcullis {}", env!("CARGO_PKG_VERSION"))
    );
    // The binary in the image is the one this checkout built (scripts/images
    // stages target/release/portcullis, stripped, in target/images/).
    let staged =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/images/portcullis");
    if staged.exists() {
        let o = podman(&[
            "run",
            "--rm",
            "--entrypoint",
            "sha256sum",
            IMAGE,
            "/usr/local/bin/portcullis",
        ]);
        let here = Command::new("sha256sum").arg(&staged).output().unwrap();
        let hash = |o: &Output| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(hash(&o), hash(&here), "{}", text(&o));
    }
    let o = podman(&["run", "--rm", "--entrypoint", "id", IMAGE]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "uid=10001(portcullis) gid=10001(portcullis) groups=10001(portcullis)"
    );
    // YARA-X works inside (its rule conditions are compiled to native code
    // at load): an infected file exits 1, a clean one 0.
    let script = format!(
        "printf '%s' '{EICAR}' > /tmp/eicar.com && echo hello > /tmp/clean.txt && portcullis scan /tmp/clean.txt && portcullis scan /tmp/eicar.com"
    );
    let o = podman(&["run", "--rm", "--entrypoint", "sh", IMAGE, "-c", &script]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("eicar_test_file"), "{out}");
    // The example configuration is in the image, as shipped.
    let o = podman(&[
        "run",
        "--rm",
        "--entrypoint",
        "cat",
        IMAGE,
        "/etc/portcullis/portcullis.example.toml",
    ]);
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../portcullis.example.toml"),
    )
    .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout) == shipped,
        "{IMAGE} holds another portcullis.example.toml than this checkout: an image older than the checkout? (scripts/images portcullis)"
    );
    // Small: a bookworm-slim base, OpenSSL, CA certificates and the
    // stripped binary.
    let o = podman(&["image", "inspect", "-f", "{{.Size}}", IMAGE]);
    let size: u64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert!(size < 200 << 20, "{IMAGE} is {} MiB", size >> 20);
}

/// Removes the container however the test ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        // -v: the broker's anonymous data volume goes with it.
        let _ = podman(&["rm", "-f", "-v", "-t", "5", &self.0]);
    }
}

#[test]
fn the_kafka_image_is_the_broker_of_scripts_kafka_and_becomes_ready() {
    if !images_built("the_kafka_image_is_the_broker_of_scripts_kafka_and_becomes_ready") {
        return;
    }
    let script = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka"),
    )
    .unwrap();
    let version = script
        .lines()
        .find_map(|l| l.strip_prefix("KAFKA_VERSION=${KAFKA_VERSION:-"))
        .and_then(|v| v.strip_suffix('}'))
        .unwrap();
    let o = podman(&["run", "--rm", KAFKA_IMAGE, "--version"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        version,
        "{}",
        text(&o)
    );

    // A broker on loopback only (host network, both listeners on
    // 127.0.0.1), answering metadata requests.
    let (port, cport) = (free_port(), free_port());
    let name = format!("pc-test-kafka-{}", std::process::id());
    let o = podman(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "-e",
        "KAFKA_ADVERTISED_HOST=127.0.0.1",
        "-e",
        "KAFKA_LISTEN_HOST=127.0.0.1",
        "-e",
        &format!("KAFKA_PORT={port}"),
        "-e",
        &format!("KAFKA_CONTROLLER_PORT={cport}"),
        KAFKA_IMAGE,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let _c = Container(name.clone());
    let t = Instant::now();
    loop {
        let o = Command::new("timeout")
            .args([
                "10",
                "kcat",
                "-b",
                &format!("127.0.0.1:{port}"),
                "-L",
                "-m",
                "5",
            ])
            .output()
            .unwrap();
        if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("1 brokers") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "the broker in {KAFKA_IMAGE} did not answer: {}\n{}",
            text(&o),
            text(&podman(&["logs", "--tail", "30", &name]))
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // It runs as its own unprivileged user.
    let o = podman(&["exec", &name, "id", "-u"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "10002");
}
