//! Progress of a long replay, on stderr: a bar on a terminal, one plain
//! line a second when `--progress` asks for it elsewhere (a log file, a
//! pipe), nothing otherwise, so logs and pipes stay clean.

use std::fmt::Display;
use std::io::{self, IsTerminal as _};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the plain form writes a line.
const PLAIN_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Plain {
    what: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last: Instant,
}

impl Plain {
    fn line(&self) {
        let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let total = self.total.map_or("?".to_string(), |t| t.to_string());
        eprintln!(
            "progress: {}: {}/{total} records ({rate:.0}/s)",
            self.what, self.done
        );
    }
}

/// Progress over `total` records (when known).
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    plain: Option<Plain>,
}

impl Progress {
    /// A bar when stderr is a terminal; plain lines when `force`d and it
    /// is not; else nothing.
    pub fn new(total: Option<u64>, force: bool, what: &str) -> Self {
        if io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} {msg} [{elapsed_precise}] {bar:30} {human_pos}/{human_len} ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            return Self { bar, plain: None };
        }
        let plain = force.then(|| {
            let now = Instant::now();
            let p = Plain {
                what: what.to_string(),
                total,
                done: 0,
                started: now,
                last: now,
            };
            p.line();
            p
        });
        Self {
            bar: ProgressBar::hidden(),
            plain,
        }
    }

    /// `n` more records read.
    pub fn inc(&mut self, n: u64) {
        self.bar.inc(n);
        if let Some(p) = &mut self.plain {
            p.done += n;
            if p.last.elapsed() >= PLAIN_EVERY {
                p.last = Instant::now();
                p.line();
            }
        }
    }

    /// A message on stderr that does not tear the bar.
    pub fn note(&self, message: impl Display) {
        self.bar.suspend(|| eprintln!("{message}"));
    }

    /// Clears the bar (or writes the last plain line).
    pub fn finish(self) {
        self.bar.finish_and_clear();
        if let Some(p) = &self.plain {
            p.line();
        }
    }
}
