//! What a rules reload's flush of the kernel ignore marks costs, on N
//! files (default 100,000) each carrying one, against placing those marks,
//! in the same run.
//!
//! Runs as root only, on a tmpfs in its own private mount namespace (no
//! mount is ever marked for permission events: ignore marks alone are
//! placed, through fds this process opens):
//!
//! ```sh
//! cargo run --release -p portcullis-interceptor --example flush_marks -- 100000
//! ```

use std::fs::File;
use std::os::fd::AsFd;
use std::time::Instant;

use portcullis_interceptor::{sandbox, Fanotify, GroupClass};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 100_000,
    };
    sandbox::fanotify_permission_available().map_err(|e| format!("cannot run here: {e}"))?;
    sandbox::enter_private_mount_namespace()?;
    let dir = tempfile::tempdir()?;
    sandbox::mount_tmpfs(dir.path(), 1 << 30)?;
    let fan = Fanotify::init(GroupClass::Permission)?;

    let files: Vec<std::path::PathBuf> = (0..n)
        .map(|i| {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, b"x").map(|()| p)
        })
        .collect::<Result<_, _>>()?;

    // A mark outlives the fd it was placed through (it pins the inode), so
    // each file is opened, marked and closed: N marks, few fds.
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        for p in &files {
            let f = File::open(p)?;
            fan.ignore_until_modified(f.as_fd())?;
        }
        let place = started.elapsed();
        let started = Instant::now();
        fan.flush_ignore_marks()?;
        let flush = started.elapsed();
        rounds.push((place, flush));
    }
    rounds.sort_by_key(|r| r.1);
    let (place, flush) = rounds[rounds.len() / 2];
    println!(
        "{n} ignore marks: opening the files and placing them {:.1} ms ({:.2} us each), flushing {:.1} ms ({:.3} us each), flush/place = {:.3} (median of 5 rounds)",
        place.as_secs_f64() * 1e3,
        place.as_secs_f64() * 1e6 / n as f64,
        flush.as_secs_f64() * 1e3,
        flush.as_secs_f64() * 1e6 / n as f64,
        flush.as_secs_f64() / place.as_secs_f64()
    );
    drop(files);
    let _ = nix::mount::umount(dir.path());
    Ok(())
}
