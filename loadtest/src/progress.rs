//! Progress on stderr while a run goes: an `indicatif` bar when stderr is
//! a terminal, one plain line a second with `--progress` otherwise,
//! nothing with `--quiet`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar if stderr is a terminal, else nothing.
    Auto,
    /// A bar on a terminal, plain lines otherwise.
    Always,
    Never,
}

#[derive(Debug)]
struct State {
    label: String,
    bound: Duration,
    max_ops: Option<u64>,
    last_line: Option<Instant>,
    done: u64,
}

/// The progress display of a run (shared by the phase loops).
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    quiet: bool,
    state: Mutex<State>,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Self {
        let tty = std::io::stderr().is_terminal();
        let (bar, plain) = match (mode, tty) {
            (ProgressMode::Never, _) => (false, false),
            (_, true) => (true, false),
            (ProgressMode::Always, false) => (false, true),
            (ProgressMode::Auto, false) => (false, false),
        };
        let bar = bar.then(|| {
            // Hidden until the first phase starts (no empty bar before).
            let b = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::hidden());
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:>24} [{elapsed_precise}] {wide_bar:.cyan/blue} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        });
        Self {
            bar,
            plain,
            quiet: mode == ProgressMode::Never,
            state: Mutex::new(State {
                label: String::new(),
                bound: Duration::ZERO,
                max_ops: None,
                last_line: None,
                done: 0,
            }),
        }
    }

    /// A message that is not progress (phase results, warnings): printed
    /// above the bar, or as a line; not with `--quiet`.
    pub fn say(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    /// A phase bounded by `bound` (and `max_ops`) starts.
    pub fn start_phase(&self, label: &str, bound: Duration, max_ops: Option<u64>) {
        if let Ok(mut s) = self.state.lock() {
            s.label = label.to_string();
            s.bound = bound;
            s.max_ops = max_ops;
            s.last_line = Some(Instant::now());
            s.done = 0;
        }
        if let Some(b) = &self.bar {
            if b.is_hidden() {
                b.set_draw_target(ProgressDrawTarget::stderr());
            }
            b.reset();
            b.set_prefix(label.to_string());
            b.set_position(0);
            b.set_message("");
        }
    }

    /// `done` operations after `elapsed`.
    pub fn update(&self, done: u64, elapsed: Duration) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        s.done = done;
        // The bar follows whichever bound is closer.
        let by_time = elapsed.as_secs_f64() / s.bound.as_secs_f64().max(1e-3);
        let by_ops = s.max_ops.map_or(0.0, |m| done as f64 / m.max(1) as f64);
        let frac = by_time.max(by_ops).clamp(0.0, 1.0);
        let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
        let msg = format!("{done} ops, {rate:.0}/s");
        if let Some(b) = &self.bar {
            b.set_position((frac * 1000.0) as u64);
            b.set_message(msg);
        } else if self.plain
            && s.last_line
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            s.last_line = Some(Instant::now());
            eprintln!(
                "[{}] {:.1}/{:.0} s, {msg}",
                s.label,
                elapsed.as_secs_f64(),
                s.bound.as_secs_f64()
            );
        }
    }

    pub fn finish_phase(&self) {
        if let Some(b) = &self.bar {
            b.set_position(1000);
        }
    }

    /// Clears the bar at the end of the run.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
