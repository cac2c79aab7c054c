//! Replay filters, and the correlation that lets them apply to every event
//! of an access.
//!
//! Only `FileAccessed` names the process and the container; the events that
//! follow it (`ScanRequested`, `VerdictIssued`, `DecisionMade`,
//! `ActionTaken`) name the access by id. The [`Correlator`] remembers what
//! each access was (bounded: the oldest accesses are forgotten first), so a
//! `--container` or `--pid` filter keeps the whole story of the accesses it
//! selects, and a `--verdict`/`--rule` filter keeps the verdict and what
//! followed it (decision, actions).

use std::collections::{HashMap, HashSet, VecDeque};

use globset::{Glob, GlobSet, GlobSetBuilder};
use portcullis_schemas::{
    ContainerRef, Envelope, EventBody, EventId, EventKind, FilePath, ProcessInfo, Timestamp,
    VerdictClass,
};

/// Accesses remembered for correlation.
pub const CORRELATION_CAPACITY: usize = 1 << 20;

/// What is known about one access, from its `FileAccessed` and its verdict.
#[derive(Debug, Clone, Default)]
pub struct AccessFacts {
    /// The container id.
    pub container: Option<String>,
    /// The container as the access named it, completed by what the
    /// container's earlier events said (a `described` event that came
    /// before).
    pub container_ref: Option<ContainerRef>,
    pub process: Option<ProcessInfo>,
    pub path: Option<FilePath>,
    pub verdict: Option<VerdictClass>,
    pub rules: Vec<String>,
    pub sha256: Option<[u8; 32]>,
}

/// Containers remembered for their metadata.
pub const CONTAINER_CAPACITY: usize = 1 << 16;

/// Remembers accesses by id, up to a capacity, and what each container's
/// events said of it.
#[derive(Debug)]
pub struct Correlator {
    facts: HashMap<EventId, AccessFacts>,
    order: VecDeque<EventId>,
    capacity: usize,
    containers: HashMap<String, ContainerRef>,
}

impl Default for Correlator {
    fn default() -> Self {
        Self::with_capacity(CORRELATION_CAPACITY)
    }
}

impl Correlator {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            facts: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            containers: HashMap::new(),
        }
    }

    /// Merges `c` with what is known of its container; returns the result.
    fn learn(&mut self, c: &ContainerRef) -> ContainerRef {
        if self.containers.len() >= CONTAINER_CAPACITY && !self.containers.contains_key(&c.id) {
            self.containers.clear();
        }
        let known = self
            .containers
            .entry(c.id.clone())
            .or_insert_with(|| c.clone());
        // What the event says wins; the rest comes from earlier events.
        let mut merged = c.clone();
        merged.fill_from(known);
        *known = merged.clone();
        merged
    }

    /// Learns what a `ContainerObserved` event says of its container ahead
    /// of the events before it: replay's first pass, so that an access
    /// journaled before its container was described is still selected by
    /// (and shown with) the container's name.
    pub fn preload(&mut self, c: &ContainerRef) {
        self.learn(c);
    }

    /// The best-known container of `env`: its access's, or the one a
    /// `ContainerObserved` names.
    pub fn container_of<'a>(
        &'a self,
        env: &'a Envelope,
        facts: Option<&'a AccessFacts>,
    ) -> Option<&'a ContainerRef> {
        match &env.body {
            EventBody::ContainerObserved(o) => self.containers.get(&o.container.id),
            _ => facts.and_then(|f| f.container_ref.as_ref()),
        }
    }

    /// Learns from `env`; returns the facts of its access (if any).
    pub fn observe(&mut self, env: &Envelope) -> Option<&AccessFacts> {
        match &env.body {
            EventBody::ContainerObserved(o) => {
                self.learn(&o.container);
                None
            }
            EventBody::FileAccessed(a) => {
                let container_ref = a.container.as_ref().map(|c| self.learn(c));
                if self.facts.len() >= self.capacity {
                    if let Some(old) = self.order.pop_front() {
                        self.facts.remove(&old);
                    }
                }
                self.order.push_back(env.event_id);
                self.facts.insert(
                    env.event_id,
                    AccessFacts {
                        container: a.container.as_ref().map(|c| c.id.clone()),
                        container_ref,
                        process: Some(a.process.clone()),
                        path: Some(a.file.path.clone()),
                        ..AccessFacts::default()
                    },
                );
                self.facts.get(&env.event_id)
            }
            EventBody::VerdictIssued(v) => {
                let f = self.facts.entry(v.access).or_default();
                f.verdict = Some(v.verdict.class());
                f.sha256 = v.sha256;
                if f.path.is_none() {
                    f.path = Some(v.path.clone());
                }
                if let Some(matches) = v.verdict.matches() {
                    f.rules = matches.iter().map(|m| m.rule.clone()).collect();
                }
                self.facts.get(&v.access)
            }
            body => body.access_id().and_then(|id| self.facts.get(&id)),
        }
    }

    pub fn get(&self, access: &EventId) -> Option<&AccessFacts> {
        self.facts.get(access)
    }
}

/// What `portcullis replay` keeps. Empty lists keep everything.
#[derive(Debug, Default)]
pub struct Filter {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub nodes: Vec<String>,
    pub containers: Vec<String>,
    /// Container name masks.
    pub container_names: Option<GlobSet>,
    /// Image masks, matched against the image name and its digest.
    pub images: Option<GlobSet>,
    /// Pod namespace masks.
    pub namespaces: Option<GlobSet>,
    /// Pod masks, matched against `name` and `namespace/name`.
    pub pods: Option<GlobSet>,
    pub pids: Vec<u32>,
    pub paths: Option<GlobSet>,
    pub kinds: HashSet<EventKind>,
    pub verdicts: HashSet<VerdictClass>,
    pub rules: Option<GlobSet>,
}

/// Builds a glob set, naming the flag and pattern that does not compile.
pub fn globs(flag: &str, patterns: &[String]) -> anyhow::Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| anyhow::anyhow!("{flag}: `{p}` is not a valid glob: {e}"))?);
    }
    Ok(Some(b.build().map_err(|e| anyhow::anyhow!("{flag}: {e}"))?))
}

impl Filter {
    /// Whether any filter needs the facts of an event's access (else the
    /// correlation can be skipped).
    pub fn needs_facts(&self) -> bool {
        !self.containers.is_empty()
            || self.selects_container_metadata()
            || !self.pids.is_empty()
            || self.paths.is_some()
            || !self.verdicts.is_empty()
            || self.rules.is_some()
    }

    /// Whether a container's name, image, namespace or pod is asked for.
    pub fn selects_container_metadata(&self) -> bool {
        self.container_names.is_some()
            || self.images.is_some()
            || self.namespaces.is_some()
            || self.pods.is_some()
    }

    /// Whether container `c` passes the container filters.
    fn container_matches(&self, c: Option<&ContainerRef>) -> bool {
        if self.containers.is_empty() && !self.selects_container_metadata() {
            return true;
        }
        let Some(c) = c else {
            return false;
        };
        let any = |set: &Option<GlobSet>, values: &[Option<&str>]| match set {
            None => true,
            Some(set) => values.iter().flatten().any(|v| set.is_match(v)),
        };
        let pod = c.pod.as_ref();
        let pod_path = pod.map(|p| format!("{}/{}", p.namespace, p.name));
        (self.containers.is_empty()
            || self
                .containers
                .iter()
                .any(|want| c.id.starts_with(want.as_str())))
            && any(&self.container_names, &[c.name.as_deref()])
            && any(
                &self.images,
                &[c.image.as_deref(), c.image_digest.as_deref()],
            )
            && any(&self.namespaces, &[pod.map(|p| p.namespace.as_str())])
            && any(
                &self.pods,
                &[pod.map(|p| p.name.as_str()), pod_path.as_deref()],
            )
    }

    /// True when a time bound alone rules `env` out.
    pub fn outside_window(&self, env: &Envelope) -> bool {
        self.from.is_some_and(|t| env.timestamp < t) || self.to.is_some_and(|t| env.timestamp > t)
    }

    /// Whether `env` is kept, given the facts of its access and (for the
    /// container filters) its best-known container
    /// ([`Correlator::container_of`]).
    pub fn matches(
        &self,
        env: &Envelope,
        facts: Option<&AccessFacts>,
        container: Option<&ContainerRef>,
    ) -> bool {
        if self.outside_window(env) {
            return false;
        }
        if !self.nodes.is_empty() && !self.nodes.contains(&env.node_id.0) {
            return false;
        }
        if !self.kinds.is_empty() && !self.kinds.contains(&env.body.kind()) {
            return false;
        }
        if !self.container_matches(container) {
            return false;
        }
        if !self.pids.is_empty() {
            let pid = match &env.body {
                EventBody::ActionTaken(a) => Some(a.pid),
                _ => facts.and_then(|f| f.process.as_ref()).map(|p| p.pid),
            };
            if !pid.is_some_and(|p| self.pids.contains(&p)) {
                return false;
            }
        }
        if let Some(paths) = &self.paths {
            let path = env
                .body
                .path()
                .or_else(|| facts.and_then(|f| f.path.as_ref()));
            if !path.is_some_and(|p| paths.is_match(p.to_path_buf())) {
                return false;
            }
        }
        if !self.verdicts.is_empty() {
            let v = facts.and_then(|f| f.verdict);
            if !v.is_some_and(|v| self.verdicts.contains(&v)) {
                return false;
            }
        }
        if let Some(rules) = &self.rules {
            if !facts.is_some_and(|f| f.rules.iter().any(|r| rules.is_match(r))) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use portcullis_schemas::{
        AccessKind, ContainerRef, ContainerRuntime, Decision, DecisionMade, DecisionReason,
        FileAccessed, FileInfo, Mode, NodeId, RuleMatch, RulesetVersion, TraceContext, Verdict,
        VerdictIssued,
    };

    use super::*;

    fn env(body: EventBody, seq: u64) -> Envelope {
        let id = EventId::new();
        Envelope {
            schema: portcullis_schemas::SCHEMA_VERSION,
            event_id: id,
            node_id: NodeId("n1".into()),
            seq,
            timestamp: Timestamp(seq as i64 * 1_000_000_000),
            trace: TraceContext::root_for(&id),
            body,
        }
    }

    fn story(container: &str, pid: u32, path: &str, infected: bool) -> Vec<Envelope> {
        let access = env(
            EventBody::FileAccessed(FileAccessed {
                kind: AccessKind::Open,
                file: FileInfo {
                    path: FilePath::from_bytes(path.as_bytes()),
                    ..FileInfo::default()
                },
                process: ProcessInfo {
                    pid,
                    ..ProcessInfo::default()
                },
                container: Some(ContainerRef::new(ContainerRuntime::Containerd, container)),
                interceptor_mode: Mode::Enforce,
                policy: None,
                blocking: true,
            }),
            1,
        );
        let verdict = if infected {
            Verdict::Infected {
                matches: vec![RuleMatch {
                    rule: "EICAR_Test_File".into(),
                    namespace: "default".into(),
                    tags: vec![],
                    metadata: vec![],
                }],
            }
        } else {
            Verdict::Clean
        };
        let v = env(
            EventBody::VerdictIssued(VerdictIssued {
                access: access.event_id,
                path: FilePath::from_bytes(path.as_bytes()),
                verdict,
                sha256: None,
                size: 0,
                ruleset: RulesetVersion("r".into()),
                scan_duration_us: 1,
            }),
            2,
        );
        let d = env(
            EventBody::DecisionMade(DecisionMade {
                access: access.event_id,
                decision: if infected {
                    Decision::Deny
                } else {
                    Decision::Allow
                },
                reason: DecisionReason::Verdict,
                latency_us: 5,
            }),
            3,
        );
        vec![access, v, d]
    }

    fn kept(filter: &Filter, events: &[Envelope]) -> Vec<EventKind> {
        let mut c = Correlator::default();
        events
            .iter()
            .filter(|e| {
                c.observe(e);
                let facts = e.access_id().and_then(|id| c.get(&id));
                filter.matches(e, facts, c.container_of(e, facts))
            })
            .map(|e| e.body.kind())
            .collect()
    }

    #[test]
    fn container_and_pid_keep_the_whole_story_of_an_access() {
        let mut events = story("abc123", 7, "/data/a", false);
        events.extend(story("def456", 8, "/data/b", true));
        let f = Filter {
            containers: vec!["abc".into()],
            ..Filter::default()
        };
        assert_eq!(
            kept(&f, &events),
            vec![
                EventKind::FileAccessed,
                EventKind::VerdictIssued,
                EventKind::DecisionMade
            ]
        );
        let f = Filter {
            pids: vec![8],
            ..Filter::default()
        };
        assert_eq!(kept(&f, &events).len(), 3);
        let f = Filter {
            pids: vec![9],
            ..Filter::default()
        };
        assert!(kept(&f, &events).is_empty());
    }

    #[test]
    fn container_metadata_filters_use_what_the_container_events_said() {
        use portcullis_schemas::{ContainerChange, ContainerObserved, PodRef};
        // Container "abc" is named by a `described` event after its first
        // access; "def" names itself on its access.
        let mut events = story("abc123", 7, "/data/a", false);
        let mut described = ContainerRef::new(ContainerRuntime::Containerd, "abc123");
        described.name = Some("web".into());
        described.image = Some("registry.example/shop/web:2".into());
        described.pod = Some(PodRef {
            name: "web-1".into(),
            namespace: "shop".into(),
            uid: None,
        });
        events.push(env(
            EventBody::ContainerObserved(ContainerObserved {
                container: described,
                change: ContainerChange::Described,
                labels: vec![],
            }),
            4,
        ));
        events.extend(story("abc123", 7, "/data/later", false));
        let mut def = story("def456", 8, "/data/b", true);
        if let EventBody::FileAccessed(a) = &mut def[0].body {
            a.container.as_mut().unwrap().image_digest = Some("sha256:feed".into());
        }
        events.extend(def);
        let by = |f: Filter| kept(&f, &events);
        let g = |p: &str| globs("--x", &[p.to_string()]).unwrap();
        let later = vec![
            EventKind::ContainerObserved,
            EventKind::FileAccessed,
            EventKind::VerdictIssued,
            EventKind::DecisionMade,
        ];
        assert_eq!(
            by(Filter {
                container_names: g("we*"),
                ..Filter::default()
            }),
            later,
            "from the described event on"
        );
        assert_eq!(
            by(Filter {
                images: g("registry.example/shop/*"),
                namespaces: g("shop"),
                pods: g("shop/web-*"),
                ..Filter::default()
            }),
            later
        );
        assert_eq!(
            by(Filter {
                images: g("sha256:fe*"),
                ..Filter::default()
            })
            .len(),
            3,
            "by digest: def's access, verdict and decision"
        );
        assert!(by(Filter {
            namespaces: g("prod"),
            ..Filter::default()
        })
        .is_empty());
    }

    #[test]
    fn verdict_and_rule_keep_the_verdict_and_what_followed() {
        let mut events = story("abc", 7, "/data/a", false);
        events.extend(story("def", 8, "/data/b", true));
        let f = Filter {
            verdicts: [VerdictClass::Infected].into(),
            ..Filter::default()
        };
        assert_eq!(
            kept(&f, &events),
            vec![EventKind::VerdictIssued, EventKind::DecisionMade]
        );
        let f = Filter {
            rules: globs("--rule", &["EICAR*".into()]).unwrap(),
            ..Filter::default()
        };
        assert_eq!(kept(&f, &events).len(), 2);
        let f = Filter {
            rules: globs("--rule", &["Other".into()]).unwrap(),
            ..Filter::default()
        };
        assert!(kept(&f, &events).is_empty());
    }

    #[test]
    fn path_kind_and_time() {
        let mut events = story("abc", 7, "/data/a.txt", false);
        events.extend(story("def", 8, "/srv/b.bin", true));
        let f = Filter {
            paths: globs("--path", &["/srv/**".into()]).unwrap(),
            kinds: [EventKind::DecisionMade].into(),
            ..Filter::default()
        };
        assert_eq!(kept(&f, &events), vec![EventKind::DecisionMade]);
        let f = Filter {
            from: Some(Timestamp(2_000_000_000)),
            to: Some(Timestamp(2_000_000_000)),
            ..Filter::default()
        };
        assert_eq!(
            kept(&f, &events),
            vec![EventKind::VerdictIssued, EventKind::VerdictIssued]
        );
        assert!(globs("--path", &["[".into()])
            .unwrap_err()
            .to_string()
            .contains("--path: `[`"));
    }

    #[test]
    fn the_correlator_forgets_the_oldest_access_first() {
        let mut c = Correlator::with_capacity(1);
        let a = story("a", 1, "/a", false);
        let b = story("b", 2, "/b", false);
        c.observe(&a[0]);
        c.observe(&b[0]);
        assert!(c.get(&a[0].event_id).is_none());
        assert!(c.get(&b[0].event_id).is_some());
    }
}
