//! Containers the agent leaves unmarked on purpose: `[[containers.skip]]`
//! rules, decided before a container is marked.
//!
//! A rule names a container by its name, image, Kubernetes namespace
//! and/or labels (every field given must match; `*` and `?` are
//! wildcards); the first rule that matches skips the container. The
//! agent's own container is always skipped. Typical uses: the broker and
//! scanner services of the node's own portcullis deployment (an agent that
//! intercepts the broker it sends its scan requests to waits on itself
//! until every deadline), and system pods an operator vouches for.
//!
//! Only what is known before marking can match: the hook's or NRI's
//! annotations and the local sources (Podman's container list,
//! containerd's and CRI-O's bundles); a rule that needs more asks the
//! runtime's API first (Docker names its containers only there).

use crate::meta::ContainerMeta;

/// One `[[containers.skip]]` rule. Every field given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SkipRule {
    /// The container's name (`portcullis-*`).
    pub name: Option<String>,
    /// The image reference (`localhost/portcullis*`).
    pub image: Option<String>,
    /// The pod's Kubernetes namespace (`kube-system`).
    pub namespace: Option<String>,
    /// Labels: `(key, value pattern)`; `*` matches any value of the key.
    pub labels: Vec<(String, String)>,
}

impl SkipRule {
    /// `true` when the rule has no field: it would skip every container.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.image.is_none()
            && self.namespace.is_none()
            && self.labels.is_empty()
    }

    /// `Some(true)`: it matches; `Some(false)`: it cannot match;
    /// `None`: a field it needs is not known (yet).
    pub fn decide(&self, meta: &ContainerMeta) -> Option<bool> {
        let mut unknown = false;
        let mut check = |pattern: &Option<String>, value: Option<&str>| match (pattern, value) {
            (None, _) => true,
            (Some(_), None) => {
                unknown = true;
                true
            }
            (Some(p), Some(v)) => glob(p, v),
        };
        let namespace = meta.pod.as_ref().map(|p| p.namespace.as_str());
        let fields = check(&self.name, meta.name.as_deref())
            && check(&self.image, meta.image.as_deref())
            && check(&self.namespace, namespace);
        if !fields {
            return Some(false);
        }
        for (key, want) in &self.labels {
            match meta.labels.get(key) {
                None => unknown = true,
                Some(v) => {
                    if !glob(want, v) {
                        return Some(false);
                    }
                }
            }
        }
        if unknown {
            None
        } else {
            Some(true)
        }
    }

    /// The rule as written, for the journal (`name = "portcullis-*"`).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (field, v) in [
            ("name", &self.name),
            ("image", &self.image),
            ("namespace", &self.namespace),
        ] {
            if let Some(v) = v {
                parts.push(format!("{field} = {v:?}"));
            }
        }
        for (k, v) in &self.labels {
            parts.push(format!("labels.{k:?} = {v:?}"));
        }
        parts.join(", ")
    }
}

/// The rules, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SkipRules(pub Vec<SkipRule>);

/// What the rules say about a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipDecision {
    /// Mark it.
    Protect,
    /// Rule `index` (0-based) matches: leave it unmarked.
    Skip { index: usize, reason: String },
    /// No rule matched yet, but one needs a field not known yet.
    Undecided,
}

impl SkipRules {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first rule that matches `meta`. A rule that needs an unknown
    /// field makes the answer [`SkipDecision::Undecided`] unless an earlier
    /// or later rule matches outright.
    pub fn decide(&self, meta: &ContainerMeta) -> SkipDecision {
        let mut undecided = false;
        for (index, rule) in self.0.iter().enumerate() {
            match rule.decide(meta) {
                Some(true) => {
                    return SkipDecision::Skip {
                        index,
                        reason: format!(
                            "skipped by containers.skip[{index}] ({})",
                            rule.describe()
                        ),
                    }
                }
                Some(false) => {}
                None => undecided = true,
            }
        }
        if undecided {
            SkipDecision::Undecided
        } else {
            SkipDecision::Protect
        }
    }

    /// Like [`Self::decide`], with what is still unknown taken as not
    /// matching (the last word, once every source was asked).
    pub fn decide_final(&self, meta: &ContainerMeta) -> SkipDecision {
        match self.decide(meta) {
            SkipDecision::Undecided => SkipDecision::Protect,
            d => d,
        }
    }
}

/// Matches `text` against `pattern`, where `*` is any run of characters
/// (also none) and `?` one character; everything else is literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point (the last `*`): linear in
    // practice, never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_schemas::PodRef;

    fn meta(name: &str, image: &str) -> ContainerMeta {
        ContainerMeta {
            name: Some(name.into()),
            image: Some(image.into()),
            ..ContainerMeta::default()
        }
    }

    #[test]
    fn globs() {
        assert!(glob("portcullis-*", "portcullis-broker"));
        assert!(glob("portcullis-*", "portcullis-"));
        assert!(!glob("portcullis-*", "xportcullis-broker"));
        assert!(glob("*portcullis*", "compose_portcullis_1"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*", ""));
        assert!(!glob("", "a"));
        assert!(glob("a*b*c", "aXXbYYbc"));
        assert!(!glob("a*b*c", "aXXbYYb"));
        assert!(glob("exact", "exact"));
    }

    #[test]
    fn every_field_given_must_match() {
        let r = SkipRule {
            name: Some("portcullis-*".into()),
            image: Some("localhost/portcullis*".into()),
            ..SkipRule::default()
        };
        assert_eq!(
            r.decide(&meta(
                "portcullis-broker",
                "localhost/portcullis-kafka:latest"
            )),
            Some(true)
        );
        assert_eq!(
            r.decide(&meta("portcullis-broker", "docker.io/library/nginx")),
            Some(false)
        );
        assert_eq!(r.decide(&meta("web", "localhost/portcullis")), Some(false));
    }

    #[test]
    fn unknown_fields_leave_the_rule_undecided_unless_another_field_fails() {
        let r = SkipRule {
            name: Some("portcullis-*".into()),
            labels: vec![("io.portcullis.role".into(), "*".into())],
            ..SkipRule::default()
        };
        let named = ContainerMeta {
            name: Some("portcullis-scanner-1".into()),
            ..ContainerMeta::default()
        };
        assert_eq!(r.decide(&named), None, "the label is not known yet");
        let other = ContainerMeta {
            name: Some("web".into()),
            ..ContainerMeta::default()
        };
        assert_eq!(r.decide(&other), Some(false), "the name already fails");
        let mut labelled = named.clone();
        labelled
            .labels
            .insert("io.portcullis.role".into(), "scanner".into());
        assert_eq!(r.decide(&labelled), Some(true));
    }

    #[test]
    fn namespaces_and_label_values() {
        let r = SkipRule {
            namespace: Some("kube-*".into()),
            labels: vec![("tier".into(), "sys*".into())],
            ..SkipRule::default()
        };
        let mut m = ContainerMeta {
            pod: Some(PodRef {
                name: "coredns-1".into(),
                namespace: "kube-system".into(),
                uid: None,
            }),
            ..ContainerMeta::default()
        };
        m.labels.insert("tier".into(), "system".into());
        assert_eq!(r.decide(&m), Some(true));
        m.labels.insert("tier".into(), "app".into());
        assert_eq!(r.decide(&m), Some(false));
    }

    #[test]
    fn the_first_matching_rule_names_itself() {
        let rules = SkipRules(vec![
            SkipRule {
                image: Some("*/nginx*".into()),
                ..SkipRule::default()
            },
            SkipRule {
                name: Some("portcullis-*".into()),
                ..SkipRule::default()
            },
        ]);
        assert_eq!(
            rules.decide(&meta("portcullis-agent", "localhost/portcullis")),
            SkipDecision::Skip {
                index: 1,
                reason: "skipped by containers.skip[1] (name = \"portcullis-*\")".into()
            }
        );
        assert_eq!(
            rules.decide(&meta("web", "localhost/app")),
            SkipDecision::Protect
        );
        assert_eq!(
            rules.decide(&ContainerMeta::default()),
            SkipDecision::Undecided
        );
        assert_eq!(
            rules.decide_final(&ContainerMeta::default()),
            SkipDecision::Protect
        );
    }
}
