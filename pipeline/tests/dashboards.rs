//! The checked-in alert rules, example scrape config and Grafana dashboard
//! (`compose/observability`): `promtool` (Debian's prometheus package,
//! installed by scripts/setup) checks the rules and the config and runs the
//! rules' unit tests, and parses every query of the dashboard; every PromQL
//! expression of the rules, their unit tests and the dashboard names only
//! metrics and labels of `portcullis_telemetry::catalog`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use portcullis_telemetry::catalog::{self, Kind};
use serde_json::Value;

const ALERTS: &str = "compose/observability/alerts.yml";
const ALERT_TESTS: &str = "compose/observability/alerts.test.yml";
const PROMETHEUS_CONFIG: &str = "compose/observability/prometheus.yml";
const DASHBOARD: &str = "compose/observability/grafana-dashboard.json";

/// The job names the rules, the config and the dashboard agree on.
const JOBS: [&str; 3] = [
    "portcullis-agent",
    "portcullis-scanner",
    "portcullis-siem-export",
];

/// The workspace root: paths above are relative to it.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Whether Debian's `promtool` is here; `false` after a loud SKIPPED line
/// (a failure under scripts/test, which installs it).
fn prometheus_available(test: &str) -> bool {
    let ok = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_PROMETHEUS").is_none(),
            "`{test}`: prometheus/promtool not installed, and scripts/test requires them (scripts/setup installs them)"
        );
        let line = format!(
            "\n!!!!!!!! SKIPPED `{test}`: prometheus/promtool not installed (scripts/setup installs them) !!!!!!!!\n"
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    ok
}

/// `promtool ARGS` in the workspace root; its output, after asserting
/// success.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
        .expect("running promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {args:?}: {}\n{text}",
        out.status
    );
    text
}

// ---------------------------------------------------------------------------
// A small PromQL reader: the selectors and the grouping labels of an
// expression. Enough for checking names against the catalog; promtool
// checks the syntax.

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_quantile",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "ln",
    "log2",
    "log10",
    "minute",
    "month",
    "predict_linear",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sort",
    "sort_desc",
    "sqrt",
    "time",
    "timestamp",
    "vector",
    "year",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "quantile_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "last_over_time",
    "present_over_time",
];

/// Keywords that take a list of labels in parentheses.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2",
];

/// `name{label op "value", ...}`, and the function it is the first
/// argument of (`rate(name[5m])`), if any.
#[derive(Debug)]
struct Selector {
    metric: String,
    labels: Vec<String>,
    in_function: Option<String>,
}

#[derive(Debug, Default)]
struct Refs {
    selectors: Vec<Selector>,
    grouping: Vec<String>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

struct Reader<'a> {
    s: &'a [char],
    i: usize,
    expr: &'a str,
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.i += 1;
        }
    }

    fn ident(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(is_ident) {
            self.i += 1;
        }
        self.s[start..self.i].iter().collect()
    }

    fn string(&mut self) -> Result<(), String> {
        let q = self.peek().ok_or("end of expression")?;
        self.i += 1;
        loop {
            match self.peek() {
                None => return Err(format!("unterminated string in `{}`", self.expr)),
                Some('\\') if q != '`' => self.i += 2,
                Some(c) if c == q => {
                    self.i += 1;
                    return Ok(());
                }
                Some(_) => self.i += 1,
            }
        }
    }

    /// After `{`: the label names of the matchers, through `}`.
    fn matchers(&mut self) -> Result<Vec<String>, String> {
        let mut labels = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some('}') => {
                    self.i += 1;
                    return Ok(labels);
                }
                Some(c) if is_ident_start(c) => {}
                other => return Err(format!("label name expected, {other:?} in `{}`", self.expr)),
            }
            labels.push(self.ident());
            self.skip_ws();
            let op_start = self.i;
            while self.peek().is_some_and(|c| "=!~".contains(c)) {
                self.i += 1;
            }
            let op: String = self.s[op_start..self.i].iter().collect();
            if !["=", "!=", "=~", "!~"].contains(&op.as_str()) {
                return Err(format!("bad matcher operator `{op}` in `{}`", self.expr));
            }
            self.skip_ws();
            if !self
                .peek()
                .is_some_and(|c| c == '"' || c == '\'' || c == '`')
            {
                return Err(format!("string expected after `{op}` in `{}`", self.expr));
            }
            self.string()?;
            self.skip_ws();
            if self.peek() == Some(',') {
                self.i += 1;
            }
        }
    }

    /// After a grouping keyword and `(`: the labels, through `)`.
    fn label_list(&mut self) -> Result<Vec<String>, String> {
        let mut labels = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(')') => {
                    self.i += 1;
                    return Ok(labels);
                }
                Some(',') => self.i += 1,
                Some(c) if is_ident_start(c) => labels.push(self.ident()),
                other => {
                    return Err(format!("label expected, {other:?} in `{}`", self.expr));
                }
            }
        }
    }
}

/// The selectors and grouping labels of `expr`.
fn read_promql(expr: &str) -> Result<Refs, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut r = Reader {
        s: &chars,
        i: 0,
        expr,
    };
    let mut refs = Refs::default();
    // The function whose `(` was the last token.
    let mut open_function: Option<String> = None;
    while let Some(c) = r.peek() {
        let function = open_function.take();
        match c {
            c if c.is_whitespace() => {
                r.i += 1;
                open_function = function;
            }
            '"' | '\'' | '`' => r.string()?,
            '#' => {
                while r.peek().is_some_and(|c| c != '\n') {
                    r.i += 1;
                }
            }
            // Ranges and subqueries: durations and Grafana's $__rate_interval.
            '[' => {
                while r.peek().is_some_and(|c| c != ']') {
                    r.i += 1;
                }
                r.i += 1;
            }
            '{' => return Err(format!("a selector without a metric name in `{expr}`")),
            // Grafana variables outside strings.
            '$' => {
                r.i += 1;
                r.ident();
            }
            c if c.is_ascii_digit() || c == '.' => {
                while r
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.')
                {
                    r.i += 1;
                }
            }
            c if is_ident_start(c) => {
                let name = r.ident();
                r.skip_ws();
                let lower = name.to_ascii_lowercase();
                let next = r.peek();
                if GROUPING.contains(&lower.as_str()) {
                    if next == Some('(') {
                        r.i += 1;
                        refs.grouping.extend(r.label_list()?);
                    }
                } else if AGGREGATIONS.contains(&lower.as_str())
                    || FUNCTIONS.contains(&lower.as_str())
                {
                    if next == Some('(') {
                        r.i += 1;
                        open_function = Some(lower);
                    }
                } else if KEYWORDS.contains(&lower.as_str()) {
                } else if next == Some('(') {
                    return Err(format!("unknown function `{name}` in `{expr}`"));
                } else {
                    let labels = if next == Some('{') {
                        r.i += 1;
                        r.matchers()?
                    } else {
                        Vec::new()
                    };
                    refs.selectors.push(Selector {
                        metric: name,
                        labels,
                        in_function: function,
                    });
                }
            }
            _ => r.i += 1,
        }
    }
    Ok(refs)
}

/// The labels a series of `name` may carry (`job` and `instance` from the
/// scrape included) and whether it is a counter (what rate() and increase()
/// take), or `None` when the catalog has no such series.
fn series(name: &str) -> Option<(BTreeSet<&'static str>, bool)> {
    let mut labels: BTreeSet<&'static str> = ["job", "instance"].into();
    if name == "up" {
        return Some((labels, false));
    }
    if let Some((_, kind, _)) = catalog::PROCESS_METRICS.iter().find(|(n, ..)| *n == name) {
        return Some((labels, *kind == Kind::Counter));
    }
    for m in catalog::METRICS {
        if m.kind != Kind::Histogram {
            if m.name == name {
                labels.extend(m.labels);
                return Some((labels, m.kind == Kind::Counter));
            }
            continue;
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if name.strip_suffix(suffix) == Some(m.name) {
                labels.extend(m.labels);
                if suffix == "_bucket" {
                    labels.insert("le");
                }
                return Some((labels, true));
            }
        }
    }
    None
}

/// What is wrong with `expr` against the catalog; its metric names.
fn check_expr(expr: &str) -> (Vec<String>, BTreeSet<String>) {
    let refs = match read_promql(expr) {
        Ok(r) => r,
        Err(e) => return (vec![e], BTreeSet::new()),
    };
    let mut errors = Vec::new();
    let mut names = BTreeSet::new();
    let mut all_labels = BTreeSet::new();
    if refs.selectors.is_empty() {
        errors.push(format!("no metric in `{expr}`"));
    }
    for s in &refs.selectors {
        names.insert(s.metric.clone());
        let Some((labels, counter)) = series(&s.metric) else {
            errors.push(format!(
                "`{}` is not a metric of the catalog (telemetry/src/catalog.rs), in `{expr}`",
                s.metric
            ));
            continue;
        };
        for l in &s.labels {
            if !labels.contains(l.as_str()) {
                errors.push(format!(
                    "`{}` has no label `{l}` (labels: {labels:?}), in `{expr}`",
                    s.metric
                ));
            }
        }
        if let Some(f) = &s.in_function {
            if ["rate", "irate", "increase", "resets"].contains(&f.as_str()) && !counter {
                errors.push(format!(
                    "{f}() of `{}`, not a counter, in `{expr}`",
                    s.metric
                ));
            }
        }
        all_labels.extend(labels);
    }
    // Grouping labels, when every metric is known.
    let known = names.iter().all(|n| series(n).is_some());
    for l in refs.grouping.iter().filter(|_| known) {
        if !all_labels.contains(l.as_str()) {
            errors.push(format!(
                "grouping by `{l}`, a label of none of {names:?}, in `{expr}`"
            ));
        }
    }
    (errors, names)
}

// ---------------------------------------------------------------------------
// The files.

/// The `expr:` values of a rules file (plain, quoted or block scalars).
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let indent = line.len() - line.trim_start().len();
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            exprs.push(block.join("\n"));
        } else {
            exprs.push(unquote(value));
        }
    }
    exprs
}

fn unquote(v: &str) -> String {
    if let Some(s) = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        s.replace("''", "'")
    } else if let Some(s) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        s.replace("\\\"", "\"").replace("\\\\", "\\")
    } else {
        v.to_string()
    }
}

/// One alert rule of alerts.yml, read line by line.
#[derive(Debug)]
struct Alert {
    name: String,
    expr: String,
    severity: Option<String>,
    summary: Option<String>,
    description: Option<String>,
}

fn alerts(yaml: &str) -> Vec<Alert> {
    let mut out: Vec<Alert> = Vec::new();
    for block in yaml.split("- alert:").skip(1) {
        let name = block.lines().next().unwrap().trim().to_string();
        let field = |key: &str| {
            block
                .lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .map(|v| unquote(v.trim()))
        };
        out.push(Alert {
            name,
            expr: rule_exprs(block).into_iter().next().unwrap_or_default(),
            severity: field("severity:"),
            summary: field("summary:"),
            description: field("description:"),
        });
    }
    out
}

/// Every `expr` (panel targets) of the dashboard, with where it is.
fn dashboard_exprs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            let here = match m.get("title").and_then(Value::as_str) {
                Some(t) => format!("{at} / {t}"),
                None => at.to_string(),
            };
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push((here.clone(), e.clone())),
                    _ => dashboard_exprs(v, &here, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, at, out)),
        _ => {}
    }
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).expect("grafana-dashboard.json is not JSON")
}

/// The dashboard's template variable queries: `label_values(SELECTOR,
/// LABEL)` as (selector, label).
fn variable_queries(d: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for v in d["templating"]["list"].as_array().expect("templating.list") {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .expect("a query variable's query");
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: not label_values(...): {q}", v["name"]));
        let (sel, label) = inner.rsplit_once(',').unwrap();
        out.push((
            v["name"].as_str().unwrap().to_string(),
            sel.trim().to_string(),
            label.trim().to_string(),
        ));
    }
    out
}

/// Grafana's variables replaced by what Prometheus would get.
fn grafana_to_promql(e: &str) -> String {
    e.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$instance", ".*")
        .replace("$job", ".*")
}

// ---------------------------------------------------------------------------
// Tests.

#[test]
fn promtool_checks_the_alert_rules() {
    if !prometheus_available("promtool_checks_the_alert_rules") {
        return;
    }
    let out = promtool(&["check", "rules", ALERTS]);
    let n = alerts(&read(ALERTS)).len();
    assert!(out.contains(&format!("SUCCESS: {n} rules found")), "{out}");
}

#[test]
fn promtool_unit_tests_of_the_alert_rules_pass() {
    if !prometheus_available("promtool_unit_tests_of_the_alert_rules_pass") {
        return;
    }
    let out = promtool(&["test", "rules", ALERT_TESTS]);
    assert!(out.contains("SUCCESS"), "{out}");
    // These alerts are proven to fire there, and to stay silent on healthy
    // series.
    let tests = read(ALERT_TESTS);
    for a in [
        "PortcullisAgentDown",
        "PortcullisAgentTargetMissing",
        "PortcullisAgentNotReady",
        "PortcullisDeadlineAnswersRising",
        "PortcullisOverflows",
        "PortcullisDeadLetters",
        "PortcullisScannerLag",
    ] {
        assert!(
            tests.contains(&format!(
                "alertname: {a}\n        exp_alerts:\n          - exp_labels:"
            )),
            "{ALERT_TESTS} does not prove that {a} fires"
        );
        assert!(
            tests.contains(&format!("alertname: {a}\n        exp_alerts: []")),
            "{ALERT_TESTS} does not prove that {a} stays silent"
        );
    }
}

#[test]
fn promtool_checks_the_example_prometheus_config() {
    if !prometheus_available("promtool_checks_the_example_prometheus_config") {
        return;
    }
    let out = promtool(&["check", "config", PROMETHEUS_CONFIG]);
    // The rules are loaded through rule_files, relative to the config.
    assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");
    let config = read(PROMETHEUS_CONFIG);
    for (job, port) in JOBS.iter().zip([9771, 9772, 9773]) {
        assert!(
            config.contains(&format!(
                "- job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']"
            )),
            "{PROMETHEUS_CONFIG}: no job {job} on 127.0.0.1:{port}"
        );
    }
}

#[test]
fn promtool_parses_every_dashboard_query() {
    if !prometheus_available("promtool_parses_every_dashboard_query") {
        return;
    }
    // promtool has no offline query parser; recording rules are parsed.
    let d = dashboard();
    let mut exprs = Vec::new();
    dashboard_exprs(&d["panels"], "panels", &mut exprs);
    for (_, sel, _) in variable_queries(&d) {
        exprs.push(("templating".into(), sel));
    }
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, e)) in exprs.iter().enumerate() {
        let e = grafana_to_promql(e).replace('\'', "''");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: '{e}'\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard-queries.yml");
    std::fs::write(&path, &rules).unwrap();
    let out = promtool(&["check", "rules", path.to_str().unwrap()]);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{out}\n{rules}"
    );
}

#[test]
fn alerts_and_dashboard_name_only_metrics_and_labels_of_the_catalog() {
    let mut errors = Vec::new();
    let mut checked = 0;

    // The alert rules.
    let rules = read(ALERTS);
    let exprs = rule_exprs(&rules);
    assert!(exprs.len() >= 10, "{ALERTS}: {exprs:?}");
    for e in &exprs {
        errors.extend(
            check_expr(e)
                .0
                .into_iter()
                .map(|m| format!("{ALERTS}: {m}")),
        );
        checked += 1;
    }

    // The series of their unit tests.
    let tests = read(ALERT_TESTS);
    let test_series: Vec<String> = tests
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- series:"))
        .map(|s| unquote(s.trim()))
        .collect();
    assert!(test_series.len() >= 10, "{ALERT_TESTS}: {test_series:?}");
    for s in &test_series {
        errors.extend(
            check_expr(s)
                .0
                .into_iter()
                .map(|m| format!("{ALERT_TESTS}: {m}")),
        );
        checked += 1;
    }

    // The dashboard's panels and template variables.
    let d = dashboard();
    let mut panel_exprs = Vec::new();
    dashboard_exprs(&d["panels"], "panels", &mut panel_exprs);
    assert!(panel_exprs.len() >= 20, "{DASHBOARD}: {panel_exprs:?}");
    let mut dashboard_metrics = BTreeSet::new();
    for (at, e) in &panel_exprs {
        let (errs, names) = check_expr(e);
        errors.extend(errs.into_iter().map(|m| format!("{DASHBOARD} {at}: {m}")));
        dashboard_metrics.extend(names);
        // Every selector follows the dashboard's job and instance variables.
        if let Ok(refs) = read_promql(e) {
            for s in refs.selectors {
                if !(s.labels.iter().any(|l| l == "job")
                    && s.labels.iter().any(|l| l == "instance"))
                {
                    errors.push(format!(
                        "{DASHBOARD} {at}: `{}` does not select job=~\"$job\" and instance=~\"$instance\", in `{e}`",
                        s.metric
                    ));
                }
            }
        }
        checked += 1;
    }
    for (name, sel, label) in variable_queries(&d) {
        let (errs, names) = check_expr(&sel);
        errors.extend(
            errs.into_iter()
                .map(|m| format!("{DASHBOARD} ${name}: {m}")),
        );
        for n in names {
            if series(&n).is_some_and(|(labels, _)| !labels.contains(label.as_str())) {
                errors.push(format!("{DASHBOARD} ${name}: `{n}` has no label `{label}`"));
            }
        }
        checked += 1;
    }

    assert!(
        errors.is_empty(),
        "{} problems in {checked} expressions:\n{}",
        errors.len(),
        errors.join("\n")
    );

    // The panels the dashboard is for.
    let missing: Vec<&str> = [
        "portcullis_decisions_total",
        "portcullis_decision_latency_seconds_bucket",
        "portcullis_pending_decisions",
        "portcullis_mailbox_depth",
        "portcullis_overflows_total",
        "portcullis_verdict_cache_lookups_total",
        "portcullis_kernel_ignore_marks_total",
        "portcullis_scans_total",
        "portcullis_scan_duration_seconds_bucket",
        "portcullis_journal_appends_total",
        "portcullis_journal_commit_batch_size_bucket",
        "portcullis_journal_last_seq",
        "portcullis_outbox_lag_events",
        "portcullis_remote_scan_duration_seconds_bucket",
        "portcullis_remote_requests_total",
        "portcullis_kafka_consumer_lag_messages",
        "portcullis_scanner_unacked_replies",
        "portcullis_dlq_messages_total",
        "portcullis_siem_events_total",
        "portcullis_containers_protected",
        "portcullis_rules_loaded",
        "portcullis_rules_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ]
    .into_iter()
    .filter(|m| !dashboard_metrics.contains(*m))
    .collect();
    assert!(missing.is_empty(), "{DASHBOARD} shows none of {missing:?}");
}

#[test]
fn every_alert_has_a_severity_a_summary_and_a_runbook_hint() {
    let rules = read(ALERTS);
    let alerts = alerts(&rules);
    let names: BTreeSet<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
    for want in [
        "PortcullisAgentDown",
        "PortcullisAgentNotReady",
        "PortcullisDeadlineAnswersRising",
        "PortcullisOverflows",
        "PortcullisScannerLag",
        "PortcullisSiemExportLag",
        "PortcullisDeadLetters",
        "PortcullisOutboxLag",
        "PortcullisRemoteScanFailures",
        "PortcullisScanErrors",
        "PortcullisDecisionLatencyHigh",
    ] {
        assert!(names.contains(want), "{ALERTS} has no alert {want}");
    }
    assert_eq!(names.len(), alerts.len(), "{ALERTS}: an alert twice");
    for a in &alerts {
        assert!(!a.expr.is_empty(), "{}: no expr", a.name);
        assert!(
            matches!(a.severity.as_deref(), Some("critical" | "warning")),
            "{}: severity {:?}",
            a.name,
            a.severity
        );
        let summary = a.summary.as_deref().unwrap_or_default();
        let description = a.description.as_deref().unwrap_or_default();
        assert!(!summary.is_empty(), "{}: no summary", a.name);
        assert!(
            description.contains("{{ $labels.") || description.contains("{{ $value"),
            "{}: the description names neither labels nor the value: {description}",
            a.name
        );
        assert!(
            description.contains("docs/") || description.contains("portcullis investigate"),
            "{}: the description points the operator nowhere: {description}",
            a.name
        );
    }
    // The header names the job names, and the availability rules use them.
    for job in JOBS {
        assert!(
            rules.contains(&format!("job=\"{job}\"")),
            "{ALERTS} does not name the job {job}"
        );
    }
}

#[test]
fn the_dashboard_is_an_importable_grafana_dashboard() {
    let d = dashboard();
    assert_eq!(d["schemaVersion"], 39);
    assert_eq!(d["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(d["__inputs"][0]["pluginId"], "prometheus");
    let vars: BTreeSet<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["DS_PROMETHEUS", "instance", "job"].into());
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        assert!(ids.insert(p["id"].as_u64().unwrap()), "{title}: id twice");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        }
        let pos = &p["gridPos"];
        assert!(
            pos["x"].as_u64().unwrap() + pos["w"].as_u64().unwrap() <= 24,
            "{title}: wider than the grid"
        );
    }
}

#[test]
fn the_checker_rejects_what_the_catalog_does_not_have() {
    let bad = |e: &str| {
        let (errors, _) = check_expr(e);
        assert!(!errors.is_empty(), "accepted `{e}`");
        errors.join("; ")
    };
    let good = |e: &str| {
        let (errors, _) = check_expr(e);
        assert!(errors.is_empty(), "`{e}`: {errors:?}");
    };
    good(
        r#"sum by (reason, le) (rate(portcullis_decision_latency_seconds_bucket{reason="verdict",job=~"$job"}[$__rate_interval]))"#,
    );
    good(r#"count(count by (ruleset) (portcullis_rules_info)) > 1"#);
    good(r#"absent(up{job="portcullis-agent"})"#);
    good(
        r#"rate(process_cpu_seconds_total{instance="a"}[5m]) / ignoring(instance) process_open_fds"#,
    );
    assert!(bad("rate(portcullis_bogus_total[5m])").contains("portcullis_bogus_total"));
    assert!(bad(r#"portcullis_overflows_total{reason="x"}"#).contains("no label `reason`"));
    assert!(
        bad(r#"sum by (mailbox) (portcullis_overflows_total)"#).contains("grouping by `mailbox`")
    );
    assert!(bad("portcullis_decision_latency_seconds").contains("not a metric"));
    assert!(bad(r#"portcullis_scans_total_bucket{le="1"}"#).contains("not a metric"));
    assert!(bad(r#"portcullis_scans_total{le="1"}"#).contains("no label `le`"));
    assert!(bad("rate(portcullis_pending_decisions[5m])").contains("not a counter"));
    assert!(bad("frobnicate(up)").contains("unknown function"));
}
