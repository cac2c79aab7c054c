//! Writes a report: `report.json`, `report.md`, `latency.png`,
//! `throughput.png` in the output directory.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::report::Report;
use crate::{charts, markdown};

/// The files of a written report.
#[derive(Debug, Clone)]
pub struct Written {
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub latency_png: PathBuf,
    pub throughput_png: PathBuf,
}

/// Writes every file of the report into `dir` (created if missing).
pub fn write(report: &Report, dir: &Path) -> Result<Written> {
    std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    let w = Written {
        json: dir.join("report.json"),
        markdown: dir.join("report.md"),
        latency_png: dir.join("latency.png"),
        throughput_png: dir.join("throughput.png"),
    };
    let json = serde_json::to_vec_pretty(report).map_err(|e| Error::Io {
        context: "encoding the report".into(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&w.json, json).ctx(|| format!("writing {}", w.json.display()))?;
    std::fs::write(&w.markdown, markdown::render(report))
        .ctx(|| format!("writing {}", w.markdown.display()))?;
    charts::latency(report, &w.latency_png)?;
    charts::throughput(report, &w.throughput_png)?;
    Ok(w)
}
