//! The Markdown summary of a report (`report.md`).

use std::fmt::Write as _;

use crate::content::human_size;
use crate::report::{PhaseReport, Report, TargetName};

/// The header of the main table; tests look for it.
pub const RESULTS_HEADER: &str = "| target | phase | ops | ops/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | denied | infected denied | hung |";

/// The header of the ratio table.
pub const RATIOS_HEADER: &str = "| target | phase | vs | p50 | p90 | p99 | p99.9 | throughput |";

fn opt_ratio(r: Option<f64>) -> String {
    match r {
        None => "–".to_string(),
        Some(x) if x < 0.1 => format!("{x:.4}×"),
        Some(x) => format!("{x:.2}×"),
    }
}

fn phase_row(out: &mut String, target: TargetName, p: &PhaseReport) {
    let l = &p.latency_us;
    let rate = p
        .target_rate
        .map_or(String::new(), |r| format!(" @ {r:.0}/s"));
    let _ = writeln!(
        out,
        "| {target} | {}{rate} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} / {} | {} |",
        p.name,
        p.counts.ops,
        p.throughput_ops_s,
        l.p50_us,
        l.p90_us,
        l.p99_us,
        l.p999_us,
        l.max_us,
        p.counts.denied,
        p.counts.infected_denied,
        p.counts.infected_total,
        p.hung_opens,
    );
}

/// Renders the summary.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let p = &r.params;
    let _ = writeln!(
        out,
        "# portcullis-loadtest: {} scenario\n",
        r.scenario.as_str()
    );
    let _ = writeln!(out, "- started: {}", r.started_at);
    let _ = writeln!(out, "- command: `{}`", r.command.join(" "));
    let _ = writeln!(
        out,
        "- host: {} cores, Linux {}; seed {}",
        r.host.cores, r.host.kernel, r.seed
    );
    let sizes: Vec<String> = p
        .sizes
        .iter()
        .map(|s| format!("{}:{}", human_size(s.bytes), s.weight))
        .collect();
    let _ = writeln!(
        out,
        "- files: {} (sizes {}; infected {:.1} %; executables {:.1} %)",
        p.files,
        sizes.join(","),
        p.infected_fraction * 100.0,
        p.exec_fraction * 100.0
    );
    let load = match p.rate {
        Some(rate) => format!("paced at {rate:.0} ops/s"),
        None => "flat out".to_string(),
    };
    let workers = if p.openers > 0 {
        format!(
            "{} opener processes × {} threads",
            p.openers, p.threads_per_opener
        )
    } else {
        format!("window {}", p.window.unwrap_or(0))
    };
    let _ = writeln!(
        out,
        "- load: {load}, {workers}; each phase at most {:.0} s{}; {} untimed warm-up accesses per target",
        p.duration_s,
        p.max_ops
            .map_or(String::new(), |n| format!(" and {n} operations")),
        p.warmup
    );
    let _ = writeln!(
        out,
        "- agent deadline {:.1} s; an operation slower than {:.1} s counts as a hung open",
        p.deadline_s, p.watchdog_s
    );
    if let Some(k) = &p.kafka {
        let _ = writeln!(
            out,
            "- Kafka {} topics `{}.*`, {} scanner service(s) ({}), group `{}`, {} partitions",
            k.bootstrap,
            k.topic_prefix,
            k.scanners,
            if k.scanners_started {
                "started by the tool"
            } else {
                "already running"
            },
            k.scanner_group,
            k.partitions
        );
    }

    let _ = writeln!(out, "\n## Results\n");
    let _ = writeln!(out, "{RESULTS_HEADER}");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for t in &r.targets {
        for ph in &t.phases {
            phase_row(&mut out, t.name, ph);
        }
    }
    let _ = writeln!(out);
    for t in &r.targets {
        let _ = writeln!(out, "- **{}**: {}", t.name, t.description);
    }

    if !r.ratios.is_empty() {
        let _ = writeln!(
            out,
            "\n## Ratios (same run)\n\nLatency: target / reference (1.00× = as fast). Throughput: target / reference (1.00× = as many).\n"
        );
        let _ = writeln!(out, "{RATIOS_HEADER}");
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        for x in &r.ratios {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                x.target,
                x.phase,
                x.versus,
                opt_ratio(x.p50),
                opt_ratio(x.p90),
                opt_ratio(x.p99),
                opt_ratio(x.p999),
                opt_ratio(x.throughput)
            );
        }
    }

    let kinds: Vec<_> = r
        .targets
        .iter()
        .flat_map(|t| t.phases.iter().map(move |p| (t, p)))
        .filter(|(_, p)| p.by_kind.len() > 1)
        .collect();
    if !kinds.is_empty() {
        let _ = writeln!(out, "\n## By operation\n");
        let _ = writeln!(
            out,
            "| target | phase | operation | ops | p50 µs | p99 µs | max µs | denied | errors |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
        for (t, p) in kinds {
            for (kind, k) in &p.by_kind {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {} |",
                    t.name,
                    p.name,
                    kind.as_str(),
                    k.counts.ops,
                    k.latency_us.p50_us,
                    k.latency_us.p99_us,
                    k.latency_us.max_us,
                    k.counts.denied,
                    k.counts.errors
                );
            }
        }
    }

    let _ = writeln!(out, "\n## Agent\n");
    let _ = writeln!(
        out,
        "| target | CPU s | peak RSS MiB | decisions by reason | allow / deny | verdicts |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    let join = |m: &std::collections::BTreeMap<String, u64>| {
        if m.is_empty() {
            "–".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    for t in &r.targets {
        let (cpu, rss) = t.process.map_or(("–".into(), "–".into()), |p| {
            (
                format!("{:.2}", p.cpu_s),
                format!("{:.1}", p.peak_rss_kib as f64 / 1024.0),
            )
        });
        let _ = writeln!(
            out,
            "| {} | {cpu} | {rss} | {} | {} / {} | {} |",
            t.name,
            join(&t.decisions_by_reason),
            t.decisions.allow,
            t.decisions.deny,
            join(&t.verdicts)
        );
        for s in &t.scanners {
            let _ = writeln!(
                out,
                "| ↳ scanner {} | {:.2} | {:.1} | | | |",
                s.instance,
                s.cpu_s,
                s.peak_rss_kib as f64 / 1024.0
            );
        }
    }
    for t in &r.targets {
        if let Some(k) = &t.kafka {
            let _ = writeln!(
                out,
                "\nKafka lag of the scanner group on scan-requests ({}): max {}, final {} ({} samples).",
                t.name,
                k.lag_max,
                k.lag_final,
                k.samples.len()
            );
        }
        if let Some(m) = &t.telemetry {
            let traces = match m.trace_ratio {
                Some(ratio) => format!(
                    "; traces sampled at {ratio}: {} OTLP requests ({:.1} KiB), spans {}",
                    m.otlp_requests,
                    m.otlp_bytes as f64 / 1024.0,
                    join(&m.spans)
                ),
                None => "; traces off".into(),
            };
            let _ = writeln!(
                out,
                "\nTelemetry ({}): /metrics on {} scraped every {:.1} s, {} scrapes ({} failed), slowest {:.1} ms, {:.1} KiB; decisions counted there: {}{traces}.",
                t.name,
                m.metrics_listen,
                m.scrape_interval_s,
                m.scrapes,
                m.scrape_failures,
                m.scrape_max_ms,
                m.exposition_bytes as f64 / 1024.0,
                m.decisions_in_metrics
                    .map_or("none".to_string(), |d| d.to_string()),
            );
        }
    }

    let c = &r.checks;
    let _ = writeln!(out, "\n## Checks\n");
    let _ = writeln!(
        out,
        "- hung opens: {}\n- infected accesses denied by portcullis: {} / {}\n- clean accesses denied: {}\n- other failures: {}",
        c.hung_opens, c.infected_denied, c.infected_total, c.clean_denied, c.errors
    );
    if c.passed {
        let _ = writeln!(out, "\n**PASSED**");
    } else {
        let _ = writeln!(out, "\n**FAILED**");
        for f in &c.failures {
            let _ = writeln!(out, "- {f}");
        }
    }
    for t in &r.targets {
        for p in &t.phases {
            for e in &p.error_samples {
                let _ = writeln!(out, "- {} {}: `{e}`", t.name, p.name);
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::report::tests::{sample_meta, sample_runs};

    #[test]
    fn the_summary_has_every_table_and_the_verdict() {
        let r = Report::build(sample_meta(), &sample_runs());
        let md = render(&r);
        assert!(md.contains(RESULTS_HEADER), "{md}");
        assert!(md.contains(RATIOS_HEADER), "{md}");
        assert!(md.contains("| portcullis | cold | 200 |"), "{md}");
        assert!(md.contains("| cold | floor |"), "{md}");
        assert!(md.contains("## By operation"), "{md}");
        assert!(md.contains("**PASSED**"), "{md}");
    }
}
