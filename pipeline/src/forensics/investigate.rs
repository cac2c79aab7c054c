//! `portcullis investigate`: one detection together with the adjacent
//! events, the way the model product's container forensics shows it.
//!
//! Given any event of an access (the access, its verdict, decision or an
//! action), the investigation takes every event of the same node within
//! `--window` before and after it, and keeps:
//! - the accesses of the same **container** (when the access came from
//!   one), or else of the same **process tree** on the host (the process,
//!   its ancestors and descendants as far as the accesses in the window
//!   show them: each access names its process and parent);
//! - everything that followed those accesses (scans, verdicts, decisions,
//!   actions);
//! - the node's own events in the window (agent start/stop, rules loaded,
//!   queue overflows) as context.
//!
//! The result is an [`Investigation`]: a timeline with who (pid, parent,
//! uid, executable) and what (path, hash, rule, outcome) for each entry,
//! rendered as text, JSON (schema: `schemas/json/investigation.schema.json`)
//! or a self-contained HTML page.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

use portcullis_schemas::{
    ActionOutcome, Envelope, EventBody, EventId, ProcessInfo, SourcePosition, Timestamp,
    VerdictClass,
};
use schemars::JsonSchema;
use serde::Serialize;

use super::filter::{AccessFacts, Correlator};
use crate::render;

/// The `schema` field of the JSON output.
pub const INVESTIGATION_SCHEMA: &str = "portcullis.investigation.v1";

/// The whole investigation.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Investigation {
    /// Always `portcullis.investigation.v1`.
    pub schema: String,
    /// When the report was made (RFC 3339).
    pub generated_at: String,
    /// What was read, e.g. `journal /var/lib/portcullis/journal`.
    pub source: String,
    pub focus: Focus,
    pub window: Window,
    pub scope: Scope,
    /// The verdict of the focal access and what was done about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detection: Option<Detection>,
    pub summary: Summary,
    /// The processes seen in scope, by pid.
    pub processes: Vec<Who>,
    /// Every kept event, in time order.
    pub timeline: Vec<Entry>,
}

/// The event the investigation is about.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Focus {
    pub event_id: String,
    pub kind: String,
    pub time: String,
    pub node: String,
    pub position: String,
    /// The access it belongs to (the event itself for an access).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_id: Option<String>,
}

/// The time window that was searched.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub from: String,
    pub to: String,
    pub seconds: u64,
}

/// What counts as "the same place".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    /// The accesses of one container.
    Container,
    /// A host process, its ancestors and descendants.
    ProcessTree,
    /// The whole node (the focal event belongs to no access).
    Node,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    pub kind: ScopeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_runtime: Option<String>,
    /// The container's name, image and pod (`namespace/name`), from its
    /// accesses and its `container_observed` events in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The process tree's pids (process-tree scope).
    pub pids: Vec<u32>,
}

/// A process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Who {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

impl From<&ProcessInfo> for Who {
    fn from(p: &ProcessInfo) -> Self {
        Self {
            pid: p.pid,
            ppid: p.ppid,
            uid: p.uid,
            gid: p.gid,
            executable: p.executable.as_ref().map(|e| e.escaped()),
            command: p.command.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Detection {
    pub verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub rules: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    pub actions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub who: Option<Who>,
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub events: u64,
    pub accesses: u64,
    pub files: u64,
    pub processes: u64,
    pub infected: u64,
    pub denied: u64,
    pub actions: u64,
}

/// What an entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Access,
    Scan,
    Verdict,
    Decision,
    Action,
    Agent,
}

/// One line of the timeline.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub time: String,
    /// Milliseconds from the focal event (negative: before it).
    pub offset_ms: i64,
    pub event_id: String,
    pub seq: u64,
    pub position: String,
    pub kind: String,
    pub category: Category,
    /// This is the focal event.
    pub focus: bool,
    /// This event belongs to the focal access.
    pub same_access: bool,
    /// Something to look at: an infected verdict, a deny, a failed action.
    pub alert: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub who: Option<Who>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub rules: Vec<String>,
    /// The event in one line.
    pub details: String,
}

/// How an entry stands out in a rendering: the first that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Emphasis {
    Focus,
    Alert,
    SameAccess,
    Plain,
}

impl Entry {
    fn emphasis(&self) -> Emphasis {
        if self.focus {
            Emphasis::Focus
        } else if self.alert {
            Emphasis::Alert
        } else if self.same_access {
            Emphasis::SameAccess
        } else {
            Emphasis::Plain
        }
    }
}

/// Finds `focus` among `events` (every event of the window, in source
/// order, with positions) and builds the investigation.
pub fn build(
    focus: EventId,
    events: &[(SourcePosition, Envelope)],
    source: &str,
    window: (Timestamp, Timestamp),
) -> Result<Investigation, String> {
    let Some((focus_pos, focal)) = events.iter().find(|(_, e)| e.event_id == focus) else {
        return Err(format!(
            "event {focus} is not in {source} between {} and {}",
            window.0.to_rfc3339(),
            window.1.to_rfc3339()
        ));
    };
    let node = &focal.node_id;
    let mut correlator = Correlator::with_capacity(usize::MAX);
    // Accesses of the node in the window: id → facts (after every event
    // was seen, so verdicts are known).
    let mut accesses: Vec<EventId> = Vec::new();
    for (_, e) in events.iter().filter(|(_, e)| &e.node_id == node) {
        correlator.observe(e);
        if let EventBody::FileAccessed(_) = e.body {
            accesses.push(e.event_id);
        }
    }
    let focal_access = focal.access_id();
    let focal_facts: Option<AccessFacts> = focal_access.and_then(|id| correlator.get(&id).cloned());

    // The scope.
    let container = focal_facts.as_ref().and_then(|f| f.container.clone());
    // What the node knew of the container: its accesses' refs, completed
    // by its `container_observed` events (metadata may come after the
    // first accesses).
    let mut described: Option<portcullis_schemas::ContainerRef> = None;
    if let Some(id) = &container {
        for (_, e) in events.iter().filter(|(_, e)| &e.node_id == node) {
            let c = match &e.body {
                EventBody::FileAccessed(a) => a.container.as_ref(),
                EventBody::ContainerObserved(o) => Some(&o.container),
                _ => None,
            };
            if let Some(c) = c.filter(|c| &c.id == id) {
                match &mut described {
                    Some(d) => d.fill_from(c),
                    None => described = Some(c.clone()),
                }
            }
        }
    }
    let runtime = described.as_ref().map(|c| c.runtime.as_str().to_string());
    let focal_pid = focal_facts
        .as_ref()
        .and_then(|f| f.process.as_ref())
        .map(|p| p.pid)
        .or(match &focal.body {
            EventBody::ActionTaken(a) => Some(a.pid),
            _ => None,
        });
    let (kind, pids) = match (&container, focal_pid) {
        (Some(_), _) => (ScopeKind::Container, BTreeSet::new()),
        (None, Some(pid)) => {
            let ppid = focal_facts
                .as_ref()
                .and_then(|f| f.process.as_ref())
                .map_or(0, |p| p.ppid);
            let parents: HashMap<u32, u32> = accesses
                .iter()
                .filter_map(|id| correlator.get(id))
                .filter(|f| f.container.is_none())
                .filter_map(|f| f.process.as_ref().map(|p| (p.pid, p.ppid)))
                .collect();
            (ScopeKind::ProcessTree, process_tree(pid, ppid, &parents))
        }
        (None, None) => (ScopeKind::Node, BTreeSet::new()),
    };
    let in_scope = |f: &AccessFacts| -> bool {
        match kind {
            ScopeKind::Container => f.container.is_some() && f.container == container,
            ScopeKind::ProcessTree => {
                f.container.is_none() && f.process.as_ref().is_some_and(|p| pids.contains(&p.pid))
            }
            ScopeKind::Node => true,
        }
    };
    let scoped: HashSet<EventId> = accesses
        .iter()
        .filter(|id| correlator.get(id).is_some_and(in_scope))
        .copied()
        .collect();

    let t0 = focal.timestamp;
    let mut kept: Vec<(&SourcePosition, &Envelope)> = events
        .iter()
        .filter(|(_, e)| &e.node_id == node)
        .filter(|(_, e)| match (e.access_id(), &e.body) {
            (Some(access), _) => scoped.contains(&access) || Some(access) == focal_access,
            // Another container's facts are not this detection's context.
            (None, EventBody::ContainerObserved(o)) => match kind {
                ScopeKind::Container => container.as_deref() == Some(o.container.id.as_str()),
                ScopeKind::ProcessTree => false,
                ScopeKind::Node => true,
            },
            (None, _) => true,
        })
        .map(|(p, e)| (p, e))
        .collect();
    kept.sort_by_key(|(_, e)| (e.timestamp, e.seq));

    let mut summary = Summary::default();
    let mut files = HashSet::new();
    let mut processes: BTreeMap<u32, Who> = BTreeMap::new();
    let mut timeline = Vec::with_capacity(kept.len());
    for (pos, e) in kept {
        let facts = e.access_id().and_then(|id| correlator.get(&id));
        let who = facts.and_then(|f| f.process.as_ref()).map(Who::from);
        if let Some(w) = &who {
            processes.entry(w.pid).or_insert_with(|| w.clone());
        }
        let path = e
            .body
            .path()
            .or_else(|| facts.and_then(|f| f.path.as_ref()))
            .map(|p| p.escaped());
        let (category, alert, rules, sha256) = match &e.body {
            EventBody::FileAccessed(_) => {
                summary.accesses += 1;
                if let Some(p) = &path {
                    files.insert(p.clone());
                }
                (Category::Access, false, vec![], None)
            }
            EventBody::ScanRequested(_) => (Category::Scan, false, vec![], None),
            EventBody::VerdictIssued(v) => {
                let rules: Vec<String> = match v.verdict.matches() {
                    Some(matches) => {
                        summary.infected += 1;
                        matches.iter().map(|m| m.rule.clone()).collect()
                    }
                    None => vec![],
                };
                let alert = matches!(
                    v.verdict.class(),
                    VerdictClass::Infected | VerdictClass::Error
                );
                (Category::Verdict, alert, rules, v.sha256.map(hex::encode))
            }
            EventBody::DecisionMade(d) => {
                let deny = d.decision == portcullis_schemas::Decision::Deny;
                if deny {
                    summary.denied += 1;
                }
                (Category::Decision, deny, vec![], None)
            }
            EventBody::ActionTaken(a) => {
                summary.actions += 1;
                let failed = !matches!(a.outcome, ActionOutcome::Succeeded);
                (Category::Action, failed, vec![], None)
            }
            // An operator's work on the quarantine: a restore puts a
            // detected object back, so it stands out.
            EventBody::QuarantineRestored(_) => (Category::Action, true, vec![], None),
            EventBody::QuarantineDeleted(_) => (Category::Action, false, vec![], None),
            EventBody::ContainerObserved(o) => (
                Category::Agent,
                matches!(
                    o.change,
                    portcullis_schemas::ContainerChange::Unprotected { .. }
                ),
                vec![],
                None,
            ),
            EventBody::AgentStarted(_)
            | EventBody::AgentStopped(_)
            | EventBody::RulesLoaded(_)
            | EventBody::RulesRejected(_)
            | EventBody::QueueOverflowed(_) => (
                Category::Agent,
                matches!(
                    e.body,
                    EventBody::QueueOverflowed(_) | EventBody::RulesRejected(_)
                ),
                vec![],
                None,
            ),
        };
        summary.events += 1;
        timeline.push(Entry {
            time: e.timestamp.to_rfc3339(),
            offset_ms: (e.timestamp.0 - t0.0).div_euclid(1_000_000),
            event_id: e.event_id.to_string(),
            seq: e.seq,
            position: pos.to_string(),
            kind: e.body.kind().as_str().to_string(),
            category,
            focus: e.event_id == focal.event_id,
            same_access: focal_access.is_some() && e.access_id() == focal_access,
            alert,
            who,
            path,
            sha256,
            rules,
            details: render::details(&e.body),
        });
    }
    summary.files = files.len() as u64;
    summary.processes = processes.len() as u64;

    let detection = focal_access.map(|access| {
        let mut d = Detection {
            verdict: focal_facts
                .as_ref()
                .and_then(|f| f.verdict)
                .map_or("none".to_string(), |v| v.as_str().to_string()),
            path: focal_facts
                .as_ref()
                .and_then(|f| f.path.as_ref())
                .map(|p| p.escaped()),
            sha256: focal_facts.as_ref().and_then(|f| f.sha256).map(hex::encode),
            rules: focal_facts
                .as_ref()
                .map(|f| f.rules.clone())
                .unwrap_or_default(),
            decision: None,
            actions: vec![],
            who: focal_facts
                .as_ref()
                .and_then(|f| f.process.as_ref())
                .map(Who::from),
        };
        for (_, e) in events.iter().filter(|(_, e)| e.access_id() == Some(access)) {
            match &e.body {
                EventBody::DecisionMade(m) => {
                    d.decision = Some(format!("{} ({})", m.decision.as_str(), m.reason.as_str()))
                }
                EventBody::ActionTaken(a) => {
                    d.actions
                        .push(format!("{}: {}", a.action.as_str(), a.outcome.as_str()))
                }
                _ => {}
            }
        }
        d
    });

    let seconds = u64::try_from((window.1 .0 - window.0 .0) / 2 / 1_000_000_000).unwrap_or(0);
    Ok(Investigation {
        schema: INVESTIGATION_SCHEMA.to_string(),
        generated_at: Timestamp::now().to_rfc3339(),
        source: source.to_string(),
        focus: Focus {
            event_id: focal.event_id.to_string(),
            kind: focal.body.kind().as_str().to_string(),
            time: focal.timestamp.to_rfc3339(),
            node: node.0.clone(),
            position: focus_pos.to_string(),
            access_id: focal_access.map(|a| a.to_string()),
        },
        window: Window {
            from: window.0.to_rfc3339(),
            to: window.1.to_rfc3339(),
            seconds,
        },
        scope: Scope {
            kind,
            container_id: container,
            container_runtime: runtime,
            container_name: described.as_ref().and_then(|c| c.name.clone()),
            container_image: described.as_ref().and_then(|c| c.image.clone()),
            pod: described
                .as_ref()
                .and_then(|c| c.pod.as_ref())
                .map(|p| format!("{}/{}", p.namespace, p.name)),
            pids: pids.into_iter().collect(),
        },
        detection,
        summary,
        processes: processes.into_values().collect(),
        timeline,
    })
}

/// The process tree around `pid`: rooted at its parent `ppid` (so the
/// processes its parent started beside it are in), with the root's
/// ancestors and all of the root's descendants, as far as `parents` (pid →
/// ppid, from the accesses seen) shows them. Pid 0 and 1 are never a root:
/// everything descends from init.
fn process_tree(pid: u32, ppid: u32, parents: &HashMap<u32, u32>) -> BTreeSet<u32> {
    let root = if ppid > 1 { ppid } else { pid };
    let mut tree = BTreeSet::from([root, pid]);
    let mut up = root;
    while let Some(&pp) = parents.get(&up) {
        if pp <= 1 || !tree.insert(pp) {
            break;
        }
        up = pp;
    }
    for &child in parents.keys() {
        if child > 1 && is_below(child, root, parents) {
            tree.insert(child);
        }
    }
    tree
}

/// Whether `p` is `root` or one of its descendants.
fn is_below(mut p: u32, root: u32, parents: &HashMap<u32, u32>) -> bool {
    let mut steps = 0;
    loop {
        if p == root {
            return true;
        }
        match parents.get(&p) {
            Some(&pp) if pp > 1 && steps < 4096 => {
                p = pp;
                steps += 1;
            }
            _ => return false,
        }
    }
}

// ------------------------------------------------------------ rendering

fn who_short(w: &Who) -> String {
    let name = w
        .command
        .clone()
        .or_else(|| w.executable.clone())
        .unwrap_or_else(|| "?".into());
    format!("pid {} ({name}) uid {}", w.pid, w.uid)
}

fn offset(ms: i64) -> String {
    let sign = if ms < 0 { '-' } else { '+' };
    format!(
        "{sign}{}.{:03}s",
        ms.unsigned_abs() / 1000,
        ms.unsigned_abs() % 1000
    )
}

fn scope_line(inv: &Investigation) -> String {
    match inv.scope.kind {
        ScopeKind::Container => {
            let mut s = format!(
                "container {}{}",
                inv.scope
                    .container_runtime
                    .as_deref()
                    .map_or(String::new(), |r| format!("{r}://")),
                inv.scope.container_id.as_deref().unwrap_or("?")
            );
            if let Some(n) = &inv.scope.container_name {
                s.push_str(&format!(" name {n}"));
            }
            if let Some(i) = &inv.scope.container_image {
                s.push_str(&format!(" image {i}"));
            }
            if let Some(p) = &inv.scope.pod {
                s.push_str(&format!(" pod {p}"));
            }
            s
        }
        ScopeKind::ProcessTree => format!(
            "host process tree (pids {})",
            inv.scope
                .pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ScopeKind::Node => format!("node {}", inv.focus.node),
    }
}

/// The terminal timeline.
pub fn render_text(inv: &Investigation) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Investigation of {} ({}) on node {} at {}",
        inv.focus.event_id, inv.focus.kind, inv.focus.node, inv.focus.time
    );
    let _ = writeln!(s, "Source:  {} [{}]", inv.source, inv.focus.position);
    let _ = writeln!(
        s,
        "Scope:   {}, ±{}s ({} .. {})",
        scope_line(inv),
        inv.window.seconds,
        inv.window.from,
        inv.window.to
    );
    if let Some(d) = &inv.detection {
        let _ = writeln!(
            s,
            "Verdict: {}{}{}",
            d.verdict.to_uppercase(),
            d.path
                .as_deref()
                .map_or(String::new(), |p| format!("  {p}")),
            if d.rules.is_empty() {
                String::new()
            } else {
                format!("  rules: {}", d.rules.join(", "))
            }
        );
        if let Some(h) = &d.sha256 {
            let _ = writeln!(s, "SHA-256: {h}");
        }
        if let Some(w) = &d.who {
            let _ = writeln!(
                s,
                "Process: {}{}",
                who_short(w),
                w.executable
                    .as_deref()
                    .map_or(String::new(), |e| format!(" {e}"))
            );
        }
        let _ = writeln!(
            s,
            "Outcome: {}{}",
            d.decision.as_deref().unwrap_or("no decision recorded"),
            if d.actions.is_empty() {
                String::new()
            } else {
                format!("; actions: {}", d.actions.join(", "))
            }
        );
    }
    let m = &inv.summary;
    let _ = writeln!(
        s,
        "Summary: {} events, {} accesses to {} files by {} processes, {} infected, {} denied, {} actions\n",
        m.events, m.accesses, m.files, m.processes, m.infected, m.denied, m.actions
    );
    let _ = writeln!(
        s,
        "   OFFSET    KIND             WHO                            DETAILS"
    );
    for e in &inv.timeline {
        let mark = match e.emphasis() {
            Emphasis::Focus => "▶",
            Emphasis::Alert => "!",
            Emphasis::SameAccess => "·",
            Emphasis::Plain => " ",
        };
        let who = e.who.as_ref().map(who_short).unwrap_or_default();
        let _ = writeln!(
            s,
            "{mark} {:>9}  {:<16} {:<30} {}",
            offset(e.offset_ms),
            e.kind,
            who,
            e.details
        );
    }
    s
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d1d1f;background:#fafafa}
h1{font-size:1.4rem;margin:0 0 .2rem} h2{font-size:1.1rem;margin:1.6rem 0 .6rem}
.sub{color:#666;font-size:.9rem}
.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1rem 0}
.card{background:#fff;border:1px solid #ddd;border-radius:8px;padding:.7rem 1rem;min-width:9rem}
.card b{display:block;font-size:1.3rem}
.det{background:#fff;border-left:6px solid #c62828;padding:.8rem 1rem;border-radius:4px}
.det.clean{border-color:#2e7d32}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;margin:0}
dt{color:#666} dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.85rem}
th,td{border-bottom:1px solid #eee;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f0f0;position:sticky;top:0}
td.mono{font-family:ui-monospace,monospace;white-space:nowrap}
tr.same td{background:#fffbe6} tr.alert td{background:#ffebee} tr.focus td{background:#ffcdd2;font-weight:600}
.tag{display:inline-block;border-radius:4px;padding:0 .35rem;font-size:.75rem;background:#e0e0e0}
.tag.access{background:#e3f2fd}.tag.verdict{background:#ede7f6}.tag.decision{background:#fff3e0}.tag.action{background:#fce4ec}.tag.agent{background:#eceff1}
svg{background:#fff;border:1px solid #ddd;border-radius:6px}
footer{margin-top:2rem;color:#888;font-size:.8rem}
";

/// A self-contained HTML report: inline CSS and SVG, no scripts, no
/// external assets.
pub fn render_html(inv: &Investigation) -> String {
    let e = html_escape;
    let mut s = String::with_capacity(16 * 1024 + inv.timeline.len() * 400);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>portcullis investigation {}</title><style>{CSS}</style></head><body>\n",
        e(&inv.focus.event_id)
    );
    let _ = writeln!(
        s,
        "<h1>Investigation of {} <span class=\"tag\">{}</span></h1>\
         <div class=\"sub\">node <b>{}</b> · {} · {} · window ±{}s ({} – {})</div>",
        e(&inv.focus.event_id),
        e(&inv.focus.kind),
        e(&inv.focus.node),
        e(&inv.focus.time),
        e(&scope_line(inv)),
        inv.window.seconds,
        e(&inv.window.from),
        e(&inv.window.to)
    );
    let m = &inv.summary;
    let _ = write!(s, "<div class=\"cards\">");
    for (label, n) in [
        ("events", m.events),
        ("accesses", m.accesses),
        ("files", m.files),
        ("processes", m.processes),
        ("infected", m.infected),
        ("denied", m.denied),
        ("actions", m.actions),
    ] {
        let _ = write!(s, "<div class=\"card\"><b>{n}</b>{label}</div>");
    }
    let _ = writeln!(s, "</div>");
    if let Some(d) = &inv.detection {
        let class = if d.verdict == "infected" {
            "det"
        } else {
            "det clean"
        };
        let _ = write!(s, "<h2>Detection</h2><div class=\"{class}\"><dl>");
        let mut row = |k: &str, v: &str| {
            let _ = write!(s, "<dt>{}</dt><dd>{}</dd>", e(k), e(v));
        };
        row("verdict", &d.verdict);
        if let Some(p) = &d.path {
            row("file", p);
        }
        if let Some(h) = &d.sha256 {
            row("sha256", h);
        }
        if !d.rules.is_empty() {
            row("rules", &d.rules.join(", "));
        }
        if let Some(w) = &d.who {
            row("process", &who_short(w));
            if let Some(x) = &w.executable {
                row("executable", x);
            }
            row("parent pid", &w.ppid.to_string());
        }
        row("decision", d.decision.as_deref().unwrap_or("none recorded"));
        if !d.actions.is_empty() {
            row("actions", &d.actions.join(", "));
        }
        let _ = writeln!(s, "</dl></div>");
    }
    // A strip of the window: one tick per event, the focal event in red.
    let span = (inv.window.seconds.max(1) * 2000) as f64;
    let _ = write!(
        s,
        "<h2>Activity</h2><svg width=\"100%\" height=\"46\" viewBox=\"0 0 1000 46\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"events over the window\">\
         <line x1=\"0\" y1=\"40\" x2=\"1000\" y2=\"40\" stroke=\"#bbb\"/><line x1=\"500\" y1=\"0\" x2=\"500\" y2=\"46\" stroke=\"#c62828\" stroke-dasharray=\"3 3\"/>"
    );
    for t in &inv.timeline {
        let x = ((t.offset_ms as f64 + span / 2.0) / span * 1000.0).clamp(0.0, 1000.0);
        let (color, h) = match t.emphasis() {
            Emphasis::Focus => ("#c62828", 36),
            Emphasis::Alert => ("#e57373", 28),
            Emphasis::SameAccess | Emphasis::Plain => ("#546e7a", 16),
        };
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"40\" stroke=\"{color}\" stroke-width=\"2\"/>",
            40 - h
        );
    }
    let _ = writeln!(s, "</svg>");
    if !inv.processes.is_empty() {
        let _ = write!(
            s,
            "<h2>Processes</h2><table><tr><th>pid</th><th>ppid</th><th>uid</th><th>gid</th><th>command</th><th>executable</th></tr>"
        );
        for p in &inv.processes {
            let _ = write!(
                s,
                "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td><td class=\"mono\">{}</td></tr>",
                p.pid,
                p.ppid,
                p.uid,
                p.gid,
                e(p.command.as_deref().unwrap_or("")),
                e(p.executable.as_deref().unwrap_or(""))
            );
        }
        let _ = writeln!(s, "</table>");
    }
    let _ = write!(
        s,
        "<h2>Timeline</h2><table><tr><th>offset</th><th>time (UTC)</th><th>kind</th><th>who</th><th>file</th><th>details</th><th>source</th></tr>"
    );
    for t in &inv.timeline {
        let class = match t.emphasis() {
            Emphasis::Focus => "focus",
            Emphasis::Alert => "alert",
            Emphasis::SameAccess => "same",
            Emphasis::Plain => "",
        };
        let cat = match t.category {
            Category::Access => "access",
            Category::Scan => "scan",
            Category::Verdict => "verdict",
            Category::Decision => "decision",
            Category::Action => "action",
            Category::Agent => "agent",
        };
        let _ = write!(
            s,
            "<tr class=\"{class}\" id=\"e-{}\"><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td><span class=\"tag {cat}\">{}</span></td><td>{}</td><td class=\"mono\">{}{}</td><td>{}{}</td><td class=\"mono\">{}</td></tr>",
            e(&t.event_id),
            e(&offset(t.offset_ms)),
            e(t.time.get(11..23).unwrap_or(&t.time)),
            e(&t.kind),
            e(&t.who.as_ref().map(who_short).unwrap_or_default()),
            e(t.path.as_deref().unwrap_or("")),
            t.sha256
                .as_deref()
                .map_or(String::new(), |h| format!("<br><small>sha256 {}</small>", e(h))),
            e(&t.details),
            if t.rules.is_empty() {
                String::new()
            } else {
                format!("<br><small>rules: {}</small>", e(&t.rules.join(", ")))
            },
            e(&t.position)
        );
    }
    let _ = writeln!(s, "</table>");
    let _ = writeln!(
        s,
        "<footer>Generated by portcullis {} at {} from {}. Schema {}.</footer></body></html>",
        e(env!("CARGO_PKG_VERSION")),
        e(&inv.generated_at),
        e(&inv.source),
        e(&inv.schema)
    );
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use portcullis_schemas::Verdict;

    #[test]
    fn process_tree_is_rooted_at_the_parent() {
        // 1 → 10 → 20 → {30 → 40, 31}, and 10 → 21 (the parent's sibling).
        let parents: HashMap<u32, u32> = [
            (10, 1),
            (20, 10),
            (30, 20),
            (40, 30),
            (31, 20),
            (21, 10),
            (99, 1),
        ]
        .into();
        let tree = process_tree(30, 20, &parents);
        assert_eq!(
            tree.into_iter().collect::<Vec<_>>(),
            vec![10, 20, 30, 31, 40]
        );
        // A child of init is its own root.
        assert_eq!(
            process_tree(99, 1, &parents)
                .into_iter()
                .collect::<Vec<_>>(),
            vec![99]
        );
        assert_eq!(
            process_tree(7, 0, &parents).into_iter().collect::<Vec<_>>(),
            vec![7]
        );
    }

    use portcullis_schemas::{
        AccessKind, AgentStarted, ContainerRef, ContainerRuntime, Decision, DecisionMade,
        DecisionReason, FileAccessed, FileInfo, FilePath, Mode, NodeId, RuleMatch, RulesetVersion,
        TraceContext, VerdictIssued,
    };

    struct Log {
        events: Vec<(SourcePosition, Envelope)>,
    }

    impl Log {
        fn push(&mut self, body: EventBody) -> EventId {
            let seq = self.events.len() as u64 + 1;
            // Fixed ids (UUIDv7 layout: the time in the top 48 bits), so
            // the golden files are stable.
            let id = EventId(uuid::Uuid::from_u128(
                (1_000_000_000u128 + u128::from(seq)) << 80
                    | 0x7000 << 64
                    | 0x8000 << 48
                    | u128::from(seq),
            ));
            self.events.push((
                SourcePosition::Journal { seq },
                Envelope {
                    schema: portcullis_schemas::SCHEMA_VERSION,
                    event_id: id,
                    node_id: NodeId("n1".into()),
                    seq,
                    timestamp: Timestamp(1_000_000_000_000 + seq as i64 * 1_000_000),
                    trace: TraceContext::root_for(&id),
                    body,
                },
            ));
            id
        }

        fn access(&mut self, container: Option<&str>, pid: u32, ppid: u32, path: &str) -> EventId {
            self.push(EventBody::FileAccessed(FileAccessed {
                kind: AccessKind::Open,
                file: FileInfo {
                    path: FilePath::from_bytes(path.as_bytes()),
                    ..FileInfo::default()
                },
                process: ProcessInfo {
                    pid,
                    ppid,
                    command: Some("cat".into()),
                    ..ProcessInfo::default()
                },
                container: container.map(|id| ContainerRef {
                    name: None,
                    image: None,
                    image_digest: None,
                    pod: None,
                    runtime: ContainerRuntime::Containerd,
                    id: id.into(),
                }),
                interceptor_mode: Mode::Enforce,
                policy: None,
                blocking: true,
            }))
        }

        fn verdict(&mut self, access: EventId, path: &str, infected: bool) -> EventId {
            self.push(EventBody::VerdictIssued(VerdictIssued {
                access,
                path: FilePath::from_bytes(path.as_bytes()),
                verdict: if infected {
                    Verdict::Infected {
                        matches: vec![RuleMatch {
                            rule: "eicar_test_file".into(),
                            namespace: "eicar".into(),
                            tags: vec![],
                            metadata: vec![],
                        }],
                    }
                } else {
                    Verdict::Clean
                },
                sha256: Some([7; 32]),
                size: 68,
                ruleset: RulesetVersion("r1".into()),
                scan_duration_us: 9,
            }))
        }

        fn decide(&mut self, access: EventId, decision: Decision) -> EventId {
            self.push(EventBody::DecisionMade(DecisionMade {
                access,
                decision,
                reason: DecisionReason::Verdict,
                latency_us: 40,
            }))
        }
    }

    #[test]
    fn a_container_detection_keeps_its_container_and_the_node_context() {
        let mut log = Log { events: vec![] };
        log.push(EventBody::AgentStarted(AgentStarted {
            version: "0.1.0".into(),
            pid: 1234,
            interceptor_mode: Mode::Enforce,
            protected: vec![],
        }));
        let a1 = log.access(Some("aaa111"), 50, 40, "/app/config.yaml");
        log.verdict(a1, "/app/config.yaml", false);
        log.decide(a1, Decision::Allow);
        let other = log.access(Some("bbb222"), 70, 60, "/srv/other");
        log.decide(other, Decision::Allow);
        let host = log.access(None, 80, 79, "/etc/hosts");
        log.decide(host, Decision::Allow);
        let bad = log.access(Some("aaa111"), 51, 40, "/app/<dropper>.sh");
        let focus = log.verdict(bad, "/app/<dropper>.sh", true);
        log.decide(bad, Decision::Deny);

        let window = (Timestamp(0), Timestamp(i64::MAX));
        let inv = build(focus, &log.events, "journal test", window).unwrap();
        assert_eq!(inv.scope.kind, ScopeKind::Container);
        assert_eq!(inv.scope.container_id.as_deref(), Some("aaa111"));
        assert_eq!(inv.scope.container_runtime.as_deref(), Some("containerd"));
        let paths: Vec<_> = inv.timeline.iter().filter_map(|e| e.path.clone()).collect();
        assert!(paths.iter().all(|p| p.starts_with("/app/")), "{paths:?}");
        assert_eq!(inv.summary.accesses, 2);
        assert_eq!(inv.summary.infected, 1);
        assert_eq!(inv.summary.denied, 1);
        assert_eq!(inv.summary.processes, 2);
        assert_eq!(inv.timeline[0].category, Category::Agent);
        let d = inv.detection.as_ref().unwrap();
        assert_eq!(d.verdict, "infected");
        assert_eq!(d.rules, vec!["eicar_test_file"]);
        assert_eq!(d.decision.as_deref(), Some("deny (verdict)"));
        assert_eq!(d.who.as_ref().unwrap().pid, 51);
        let f: Vec<_> = inv.timeline.iter().filter(|e| e.focus).collect();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].offset_ms, 0);
        assert!(inv.timeline.iter().filter(|e| e.same_access).count() == 3);
        assert!(inv.timeline.iter().any(|e| e.offset_ms < 0));

        let html = render_html(&inv);
        assert!(html.contains("&lt;dropper&gt;"));
        assert!(!html.contains("<dropper>"));
        assert!(
            !html.contains("http://") && !html.contains("https://") && !html.contains("<script")
        );
        let text = render_text(&inv);
        assert!(text.contains("▶"), "{text}");
        assert!(text.contains("container containerd://aaa111"), "{text}");

        // A host process: its parent's tree.
        let inv = build(host, &log.events, "journal test", window).unwrap();
        assert_eq!(inv.scope.kind, ScopeKind::ProcessTree);
        assert_eq!(inv.scope.pids, vec![79, 80]);
        assert_eq!(inv.summary.accesses, 1);

        let missing = build(EventId::new(), &log.events, "journal test", window).unwrap_err();
        assert!(missing.contains("is not in journal test"), "{missing}");
    }

    /// The text, JSON and HTML renderings of a fixed investigation, against
    /// golden files in `pipeline/tests/fixtures/investigation/`
    /// (`PORTCULLIS_BLESS=1` rewrites them).
    #[test]
    fn golden_renderings() {
        let mut log = Log { events: vec![] };
        let a1 = log.access(None, 4242, 4000, "/srv/app/start.sh");
        log.verdict(a1, "/srv/app/start.sh", false);
        log.decide(a1, Decision::Allow);
        let bad = log.access(None, 4243, 4000, "/srv/app/payload <x>.bin");
        let focus = log.verdict(bad, "/srv/app/payload <x>.bin", true);
        log.decide(bad, Decision::Deny);
        let window = (
            Timestamp(1_000_000_000_000 - 300_000_000_000),
            Timestamp(1_000_000_000_000 + 300_000_000_000),
        );
        let mut inv = build(
            focus,
            &log.events,
            "journal /var/lib/portcullis/journal",
            window,
        )
        .unwrap();
        inv.generated_at = "2026-11-28T00:00:00Z".into();
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/investigation");
        let outputs = [
            ("timeline.txt", render_text(&inv)),
            (
                "investigation.json",
                serde_json::to_string_pretty(&inv).unwrap() + "\n",
            ),
            ("report.html", render_html(&inv)),
        ];
        let bless = std::env::var_os("PORTCULLIS_BLESS").is_some();
        for (name, got) in outputs {
            let path = dir.join(name);
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &got).unwrap();
            }
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                want == got,
                "{} differs (PORTCULLIS_BLESS=1 rewrites it):\n{got}",
                path.display()
            );
        }
    }

    #[test]
    fn html_escaping() {
        assert_eq!(
            html_escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(offset(-1500), "-1.500s");
        assert_eq!(offset(42), "+0.042s");
    }
}
