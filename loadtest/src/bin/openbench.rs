//! `portcullis-openbench`: the open-path benchmark.
//!
//! In a private mount namespace, on a tmpfs, with N files of S bytes, it
//! measures in the same run, round after round:
//! - **baseline**: no agent;
//! - **floor**: `portcullis-floor`, a responder that answers ALLOW at once;
//! - **cold**: `portcullis run` (Enforce), first open of each file (scan);
//! - **warm**: the same agent, every file opened again (verdict cached).
//!
//! and prints medians over the rounds with the ratios warm/baseline and
//! cold/floor, as Markdown and as JSON (`--json FILE`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use portcullis_interceptor::sandbox;
use portcullis_loadtest::{make_files, median, open_pass, PassStats};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis-openbench",
    about = "Open-path benchmark: no agent, floor, portcullis cold and warm"
)]
struct Args {
    /// Files to open per pass.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// Size of each file in bytes.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Rounds (each measures every mode once); medians are reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The portcullis binary (default: beside this one).
    #[arg(long)]
    portcullis: Option<PathBuf>,
    /// The floor responder (default: beside this one).
    #[arg(long)]
    floor: Option<PathBuf>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    files: usize,
    size: usize,
    rounds: usize,
    baseline: Vec<PassStats>,
    floor: Vec<PassStats>,
    /// The floor responder placing ignore marks, second pass: the kernel's
    /// own cost of a cached open on a marked mount.
    floor_warm: Vec<PassStats>,
    cold: Vec<PassStats>,
    warm: Vec<PassStats>,
    median_us_per_open: Medians,
    /// Median of the per-round ratios (each round pairs modes measured
    /// back to back, so machine drift cancels).
    warm_over_baseline: f64,
    cold_over_floor: f64,
    warm_over_baseline_per_round: Vec<f64>,
    cold_over_floor_per_round: Vec<f64>,
    /// The same for the floor's warm pass: what the kernel alone costs.
    floor_warm_over_baseline: f64,
    warm_over_floor_warm: f64,
}

#[derive(Debug, Serialize)]
struct Medians {
    baseline: f64,
    floor: f64,
    cold: f64,
    warm: f64,
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name(name))
}

/// Starts a responder and waits (bounded) for its ready file.
fn start(mut cmd: Command, ready: &Path) -> Result<Child> {
    let _ = std::fs::remove_file(ready);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting a responder")?;
    let t = Instant::now();
    while !ready.exists() {
        if let Some(status) = child.try_wait()? {
            bail!("responder exited before it was ready: {status}");
        }
        if t.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            bail!("responder not ready after 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(child)
}

fn stop(child: Child) -> Result<()> {
    match portcullis_loadtest::stop_child(child, Duration::from_secs(30)) {
        (_, true) => Ok(()),
        (how, false) => bail!("responder did not stop: {how}"),
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the open-path benchmark needs root (fanotify permission events, mount namespaces)");
    }
    sandbox::fanotify_permission_available()
        .map_err(|why| anyhow::anyhow!("fanotify unavailable: {why}"))?;
    // Single-threaded still: the namespace covers the whole process.
    sandbox::enter_private_mount_namespace().context("entering a private mount namespace")?;
    let work = tempfile::Builder::new()
        .prefix("portcullis-openbench-")
        .tempdir()?;
    let mnt = work.path().join("mnt");
    std::fs::create_dir(&mnt)?;
    let bytes = (args.files as u64 * (args.size as u64 + 4096)).max(64 << 20) * 2;
    sandbox::mount_tmpfs(&mnt, bytes).context("mounting the benchmark tmpfs")?;
    let files = make_files(&mnt, args.files, args.size)?;
    let portcullis = args
        .portcullis
        .clone()
        .map_or_else(|| sibling("portcullis"), Ok)?;
    let floor = args
        .floor
        .clone()
        .map_or_else(|| sibling("portcullis-floor"), Ok)?;
    let ready = work.path().join("ready");
    let mut buf = Vec::with_capacity(args.size);
    let mut r = Report {
        files: args.files,
        size: args.size,
        rounds: args.rounds,
        baseline: vec![],
        floor: vec![],
        floor_warm: vec![],
        cold: vec![],
        warm: vec![],
        median_us_per_open: Medians {
            baseline: 0.0,
            floor: 0.0,
            cold: 0.0,
            warm: 0.0,
        },
        warm_over_baseline: 0.0,
        cold_over_floor: 0.0,
        warm_over_baseline_per_round: vec![],
        cold_over_floor_per_round: vec![],
        floor_warm_over_baseline: 0.0,
        warm_over_floor_warm: 0.0,
    };
    for round in 0..args.rounds {
        eprintln!("round {}/{}", round + 1, args.rounds);
        r.baseline.push(open_pass(&files, &mut buf));

        let mut cmd = Command::new(&floor);
        cmd.arg("--protect")
            .arg(&mnt)
            .arg("--ready-file")
            .arg(&ready);
        let child = start(cmd, &ready)?;
        r.floor.push(open_pass(&files, &mut buf));
        stop(child)?;

        let mut cmd = Command::new(&floor);
        cmd.arg("--cache")
            .arg("--protect")
            .arg(&mnt)
            .arg("--ready-file")
            .arg(&ready);
        let child = start(cmd, &ready)?;
        let _ = open_pass(&files, &mut buf);
        r.floor_warm.push(open_pass(&files, &mut buf));
        stop(child)?;

        let journal = work.path().join(format!("journal-{round}"));
        let mut cmd = Command::new(&portcullis);
        cmd.args(["--log", "warn", "run", "--protect"])
            .arg(&mnt)
            .arg("--journal")
            .arg(&journal);
        cmd.arg("--ready-file").arg(&ready);
        let child = start(cmd, &ready)?;
        r.cold.push(open_pass(&files, &mut buf));
        r.warm.push(open_pass(&files, &mut buf));
        stop(child)?;
        let _ = std::fs::remove_dir_all(&journal);
    }
    let med = |v: &[PassStats]| median(v.iter().map(PassStats::per_open_us).collect());
    r.median_us_per_open = Medians {
        baseline: med(&r.baseline),
        floor: med(&r.floor),
        cold: med(&r.cold),
        warm: med(&r.warm),
    };
    let ratios = |a: &[PassStats], b: &[PassStats]| -> Vec<f64> {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.per_open_us() / y.per_open_us())
            .collect()
    };
    r.warm_over_baseline_per_round = ratios(&r.warm, &r.baseline);
    r.cold_over_floor_per_round = ratios(&r.cold, &r.floor);
    r.warm_over_baseline = median(r.warm_over_baseline_per_round.clone());
    r.cold_over_floor = median(r.cold_over_floor_per_round.clone());
    r.floor_warm_over_baseline = median(ratios(&r.floor_warm, &r.baseline));
    r.warm_over_floor_warm = median(ratios(&r.warm, &r.floor_warm));
    let failures: u64 = [&r.baseline, &r.floor, &r.floor_warm, &r.cold, &r.warm]
        .iter()
        .flat_map(|v| v.iter())
        .map(|s| s.failures)
        .sum();

    println!("| mode | median µs/open | p50 µs | p99 µs | p99.9 µs | failed opens |");
    println!("|---|---|---|---|---|---|");
    for (name, v) in [
        ("no agent (baseline)", &r.baseline),
        ("floor responder", &r.floor),
        ("floor responder, warm (ignore marks)", &r.floor_warm),
        ("portcullis cold", &r.cold),
        ("portcullis warm", &r.warm),
    ] {
        let last = v.last().context("no rounds")?;
        println!(
            "| {name} | {:.2} | {:.1} | {:.1} | {:.1} | {} |",
            med(v),
            last.p50_us,
            last.p99_us,
            last.p999_us,
            v.iter().map(|s| s.failures).sum::<u64>()
        );
    }
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{lo:.3}..{hi:.3}")
    };
    println!(
        "\nwarm / baseline = {:.3}, median of per-round ratios, range {} (target ≤ 1.10)",
        r.warm_over_baseline,
        range(&r.warm_over_baseline_per_round)
    );
    println!(
        "cold / floor    = {:.3}, median of per-round ratios, range {} (target ≤ 2.00)",
        r.cold_over_floor,
        range(&r.cold_over_floor_per_round)
    );
    println!(
        "floor warm / baseline = {:.3}; portcullis warm / floor warm = {:.3} (the kernel's share of a warm open)",
        r.floor_warm_over_baseline, r.warm_over_floor_warm
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&r)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let _ = nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH);
    if failures > 0 {
        bail!("{failures} opens failed");
    }
    Ok(())
}
