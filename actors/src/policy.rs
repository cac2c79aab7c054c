//! Runtime policies: which files are in scope, and the mode each policy asks
//! for.
//!
//! As in the model product, a policy can be scoped to containers (by name,
//! image or digest, pod namespace, pod labels) or to the host (processes
//! outside every container), besides path masks and executables. The
//! selectors of one policy must all match (a list matches when any of its
//! masks does); first match wins.
//!
//! As in the model product, the interceptor mode is one global setting and
//! it takes precedence: a policy in audit mode under an interceptor in
//! Enforce mode still blocks. The policy's own mode is recorded on every
//! access so investigators can see both.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};
use portcullis_schemas::{ContainerRef, FilePath, Mode, PolicyRef};
use serde::Deserialize;

/// One runtime policy as written in the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// A unique name, recorded on every access it covers.
    pub name: String,
    /// A disabled policy covers nothing.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The policy's own mode (the interceptor mode takes precedence).
    #[serde(default)]
    pub mode: Mode,
    /// Path masks (`*` within a component, `**` across components) of the
    /// files this policy covers. Empty: every file under the protected paths.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Path masks excluded from this policy.
    #[serde(default)]
    pub exclude_paths: Vec<String>,
    /// Masks of executables whose accesses are not scanned (trusted tools,
    /// e.g. a backup agent).
    #[serde(default)]
    pub exclude_executables: Vec<String>,
    /// Container name masks. Any container selector limits the policy to
    /// accesses from containers that match every selector given.
    #[serde(default)]
    pub containers: Vec<String>,
    /// Image masks (`docker.io/library/nginx:*`) or digests
    /// (`sha256:...`), matched against the image name and its digest.
    #[serde(default)]
    pub images: Vec<String>,
    /// Pod namespace masks (Kubernetes).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Pod labels the container must carry, each value a mask.
    #[serde(default)]
    pub pod_labels: std::collections::BTreeMap<String, String>,
    /// Only accesses from processes outside every container (the host).
    #[serde(default)]
    pub host: bool,
}

fn default_true() -> bool {
    true
}

impl PolicySpec {
    /// An enabled enforce-mode policy covering everything, as the config
    /// file's defaults make it.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            enabled: true,
            mode: Mode::Enforce,
            paths: Vec::new(),
            exclude_paths: Vec::new(),
            exclude_executables: Vec::new(),
            containers: Vec::new(),
            images: Vec::new(),
            namespaces: Vec::new(),
            pod_labels: Default::default(),
            host: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy[{index}].name is empty")]
    EmptyName { index: usize },
    #[error("policy[{index}].name `{name}` is used twice")]
    DuplicateName { index: usize, name: String },
    #[error("policy[{index}] (`{name}`).host: a host-only policy cannot also select containers ({field})")]
    HostWithContainers {
        index: usize,
        name: String,
        field: &'static str,
    },
    #[error("policy[{index}] (`{name}`).{field}: bad mask `{mask}`: {source}")]
    BadMask {
        index: usize,
        name: String,
        field: String,
        mask: String,
        #[source]
        source: Box<globset::Error>,
    },
}

#[derive(Debug)]
struct Compiled {
    name: String,
    mode: Mode,
    paths: Option<GlobSet>,
    exclude_paths: GlobSet,
    exclude_executables: GlobSet,
    place: Place,
}

/// Where a policy applies.
#[derive(Debug, Default)]
struct Place {
    host_only: bool,
    containers: Option<GlobSet>,
    images: Option<GlobSet>,
    namespaces: Option<GlobSet>,
    pod_labels: Vec<(String, GlobMatcher)>,
}

impl Place {
    fn selects_containers(&self) -> bool {
        self.containers.is_some()
            || self.images.is_some()
            || self.namespaces.is_some()
            || !self.pod_labels.is_empty()
    }

    fn matches(&self, s: &Subject<'_>) -> bool {
        let Some(c) = s.container else {
            return !self.selects_containers();
        };
        if self.host_only {
            return false;
        }
        let any = |set: &Option<GlobSet>, values: &[Option<&str>]| match set {
            None => true,
            Some(set) => values.iter().flatten().any(|v| set.is_match(v)),
        };
        any(&self.containers, &[c.name.as_deref()])
            && any(
                &self.images,
                &[c.image.as_deref(), c.image_digest.as_deref()],
            )
            && any(
                &self.namespaces,
                &[c.pod.as_ref().map(|p| p.namespace.as_str())],
            )
            && self.pod_labels.iter().all(|(k, m)| {
                s.labels
                    .and_then(|l| l.get(k))
                    .is_some_and(|v| m.is_match(v))
            })
    }
}

/// What an access is about, for [`Policies::scope`].
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub path: &'a FilePath,
    pub executable: Option<&'a FilePath>,
    /// The container of the process (`None`: a host process).
    pub container: Option<&'a ContainerRef>,
    /// The container's labels.
    pub labels: Option<&'a std::collections::BTreeMap<String, String>>,
}

impl<'a> Subject<'a> {
    /// A host process' access.
    pub fn host(path: &'a FilePath, executable: Option<&'a FilePath>) -> Self {
        Self {
            path,
            executable,
            container: None,
            labels: None,
        }
    }
}

/// Why a file is out of scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Covered by this policy.
    In(PolicyRef),
    /// No enabled policy covers the path.
    NotCovered,
    /// Excluded by a policy's exclusion (`field` names which list).
    Excluded { policy: String, field: &'static str },
}

/// The compiled set of policies, first match wins.
#[derive(Debug)]
pub struct Policies {
    policies: Vec<Compiled>,
}

impl Policies {
    /// Compiles the specs. With no specs, one enforce-mode policy named
    /// `default` covers everything under the protected paths.
    pub fn build(specs: &[PolicySpec]) -> Result<Self, PolicyError> {
        if specs.is_empty() {
            return Ok(Self {
                policies: vec![Compiled {
                    name: "default".into(),
                    mode: Mode::Enforce,
                    paths: None,
                    exclude_paths: GlobSet::empty(),
                    exclude_executables: GlobSet::empty(),
                    place: Place::default(),
                }],
            });
        }
        let mut out = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            if spec.name.trim().is_empty() {
                return Err(PolicyError::EmptyName { index });
            }
            if specs[..index].iter().any(|s| s.name == spec.name) {
                return Err(PolicyError::DuplicateName {
                    index,
                    name: spec.name.clone(),
                });
            }
            if !spec.enabled {
                continue;
            }
            let bad = |field: &str, mask: &str, source| PolicyError::BadMask {
                index,
                name: spec.name.clone(),
                field: field.to_string(),
                mask: mask.to_string(),
                source: Box::new(source),
            };
            let set = |field: &'static str, masks: &[String]| -> Result<GlobSet, PolicyError> {
                let mut b = GlobSetBuilder::new();
                for mask in masks {
                    b.add(Glob::new(mask).map_err(|e| bad(field, mask, e))?);
                }
                b.build().map_err(|e| bad(field, &masks.join(","), e))
            };
            let optional = |field: &'static str, masks: &[String]| {
                (!masks.is_empty()).then(|| set(field, masks)).transpose()
            };
            let mut pod_labels = Vec::with_capacity(spec.pod_labels.len());
            for (k, v) in &spec.pod_labels {
                let m = Glob::new(v)
                    .map_err(|e| bad(&format!("pod_labels.{k}"), v, e))?
                    .compile_matcher();
                pod_labels.push((k.clone(), m));
            }
            let place = Place {
                host_only: spec.host,
                containers: optional("containers", &spec.containers)?,
                images: optional("images", &spec.images)?,
                namespaces: optional("namespaces", &spec.namespaces)?,
                pod_labels,
            };
            if place.host_only {
                let field = [
                    ("containers", spec.containers.is_empty()),
                    ("images", spec.images.is_empty()),
                    ("namespaces", spec.namespaces.is_empty()),
                    ("pod_labels", spec.pod_labels.is_empty()),
                ]
                .into_iter()
                .find(|(_, empty)| !empty);
                if let Some((field, _)) = field {
                    return Err(PolicyError::HostWithContainers {
                        index,
                        name: spec.name.clone(),
                        field,
                    });
                }
            }
            out.push(Compiled {
                name: spec.name.clone(),
                mode: spec.mode,
                paths: if spec.paths.is_empty() {
                    None
                } else {
                    Some(set("paths", &spec.paths)?)
                },
                exclude_paths: set("exclude_paths", &spec.exclude_paths)?,
                exclude_executables: set("exclude_executables", &spec.exclude_executables)?,
                place,
            });
        }
        Ok(Self { policies: out })
    }

    /// The enabled policies whose place (host, container selectors)
    /// selects `container` (`None`: the host), in order: for each of its
    /// files the first of them whose paths cover it applies.
    pub fn selecting(
        &self,
        container: Option<&ContainerRef>,
        labels: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Vec<&str> {
        let root = FilePath::from_bytes(b"/".to_vec());
        let s = Subject {
            path: &root,
            executable: None,
            container,
            labels,
        };
        self.policies
            .iter()
            .filter(|c| c.place.matches(&s))
            .map(|c| c.name.as_str())
            .collect()
    }

    /// The scope of an access: the first enabled policy whose place
    /// (host, container selectors) and paths match.
    pub fn scope(&self, s: &Subject<'_>) -> Scope {
        let p = s.path.to_path_buf();
        let exe: Option<PathBuf> = s.executable.map(FilePath::to_path_buf);
        for c in &self.policies {
            if !c.place.matches(s) {
                continue;
            }
            if let Some(paths) = &c.paths {
                if !paths.is_match(&p) {
                    continue;
                }
            }
            if c.exclude_paths.is_match(&p) {
                return Scope::Excluded {
                    policy: c.name.clone(),
                    field: "exclude_paths",
                };
            }
            if let Some(exe) = exe.as_deref() {
                if c.exclude_executables.is_match(Path::new(exe)) {
                    return Scope::Excluded {
                        policy: c.name.clone(),
                        field: "exclude_executables",
                    };
                }
            }
            return Scope::In(PolicyRef {
                name: c.name.clone(),
                mode: c.mode,
            });
        }
        Scope::NotCovered
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(name: &str, mode: Mode, paths: &[&str]) -> PolicySpec {
        PolicySpec {
            mode,
            paths: paths.iter().map(|s| s.to_string()).collect(),
            ..PolicySpec::named(name)
        }
    }

    fn fp(s: &str) -> FilePath {
        FilePath::from_bytes(s.as_bytes())
    }

    #[test]
    fn selecting_lists_the_policies_whose_place_matches_a_container() {
        let mut web = PolicySpec::named("web");
        web.containers = vec!["web-*".into()];
        let mut host = PolicySpec::named("host");
        host.host = true;
        let all = PolicySpec::named("all");
        let p = Policies::build(&[web, host, all]).unwrap();
        let mut c = ContainerRef::new(portcullis_schemas::ContainerRuntime::Podman, "x");
        c.name = Some("web-1".into());
        assert_eq!(p.selecting(Some(&c), None), vec!["web", "all"]);
        c.name = Some("db".into());
        assert_eq!(p.selecting(Some(&c), None), vec!["all"]);
        assert_eq!(p.selecting(None, None), vec!["host", "all"]);
    }

    #[test]
    fn no_policies_means_one_enforcing_default() {
        let p = Policies::build(&[]).unwrap();
        assert_eq!(
            p.scope(&Subject::host(&fp("/any/file"), None)),
            Scope::In(PolicyRef {
                name: "default".into(),
                mode: Mode::Enforce
            })
        );
    }

    #[test]
    fn first_matching_policy_wins_and_masks_apply() {
        let mut logs = spec("logs", Mode::Audit, &["/srv/**/*.log"]);
        logs.exclude_paths = vec!["/srv/tmp/**".into()];
        let p = Policies::build(&[logs, spec("rest", Mode::Enforce, &["/srv/**"])]).unwrap();
        assert_eq!(
            p.scope(&Subject::host(&fp("/srv/a/b.log"), None)),
            Scope::In(PolicyRef {
                name: "logs".into(),
                mode: Mode::Audit
            })
        );
        assert_eq!(
            p.scope(&Subject::host(&fp("/srv/a/b.bin"), None)),
            Scope::In(PolicyRef {
                name: "rest".into(),
                mode: Mode::Enforce
            })
        );
        assert_eq!(
            p.scope(&Subject::host(&fp("/srv/tmp/x.log"), None)),
            Scope::Excluded {
                policy: "logs".into(),
                field: "exclude_paths"
            }
        );
        assert_eq!(
            p.scope(&Subject::host(&fp("/elsewhere"), None)),
            Scope::NotCovered
        );
    }

    #[test]
    fn disabled_policies_cover_nothing_and_executables_can_be_excluded() {
        let mut off = spec("off", Mode::Enforce, &["/srv/**"]);
        off.enabled = false;
        let mut on = spec("on", Mode::Enforce, &["/data/**"]);
        on.exclude_executables = vec!["/usr/bin/rsync".into()];
        let p = Policies::build(&[off, on]).unwrap();
        assert_eq!(
            p.scope(&Subject::host(&fp("/srv/x"), None)),
            Scope::NotCovered
        );
        assert_eq!(
            p.scope(&Subject::host(&fp("/data/x"), Some(&fp("/usr/bin/rsync")))),
            Scope::Excluded {
                policy: "on".into(),
                field: "exclude_executables"
            }
        );
        assert!(matches!(
            p.scope(&Subject::host(&fp("/data/x"), Some(&fp("/bin/cat")))),
            Scope::In(_)
        ));
    }

    #[test]
    fn errors_name_the_policy_and_field() {
        let bad = spec("bad", Mode::Enforce, &["/srv/[unclosed"]);
        let err = Policies::build(&[bad]).unwrap_err().to_string();
        assert!(
            err.contains("policy[0]") && err.contains("paths") && err.contains("[unclosed"),
            "{err}"
        );
        let dup = Policies::build(&[spec("a", Mode::Audit, &[]), spec("a", Mode::Audit, &[])])
            .unwrap_err()
            .to_string();
        assert!(dup.contains("policy[1].name"), "{dup}");
    }

    #[test]
    fn non_utf8_paths_are_matched_by_bytes() {
        let p = Policies::build(&[spec("p", Mode::Enforce, &["/srv/**"])]).unwrap();
        assert!(matches!(
            p.scope(&Subject::host(
                &FilePath::from_bytes(&b"/srv/\xff.bin"[..]),
                None
            )),
            Scope::In(_)
        ));
    }

    fn in_container<'a>(
        path: &'a FilePath,
        c: &'a ContainerRef,
        labels: Option<&'a std::collections::BTreeMap<String, String>>,
    ) -> Subject<'a> {
        Subject {
            path,
            executable: None,
            container: Some(c),
            labels,
        }
    }

    #[test]
    fn policies_scoped_by_container_image_namespace_labels_and_host() {
        use portcullis_schemas::{ContainerRuntime, PodRef};
        let mut by_image = spec("shop-images", Mode::Enforce, &[]);
        by_image.images = vec!["registry.example/shop/*".into(), "sha256:feed*".into()];
        let mut by_ns = spec("prod", Mode::Audit, &[]);
        by_ns.namespaces = vec!["prod-*".into()];
        by_ns.pod_labels = [("tier".to_string(), "front*".to_string())].into();
        let mut by_name = spec("web", Mode::Enforce, &[]);
        by_name.containers = vec!["web-?".into()];
        let mut host = spec("host", Mode::Audit, &[]);
        host.host = true;
        let p = Policies::build(&[by_image, by_ns, by_name, host]).unwrap();
        let name = |s: &Scope| match s {
            Scope::In(p) => p.name.clone(),
            other => format!("{other:?}"),
        };
        let f = fp("/app/x");
        let mut c = ContainerRef::new(ContainerRuntime::Containerd, "c1");
        assert_eq!(name(&p.scope(&in_container(&f, &c, None))), "NotCovered");
        c.image = Some("registry.example/shop/cart:2".into());
        assert_eq!(name(&p.scope(&in_container(&f, &c, None))), "shop-images");
        c.image = Some("other:1".into());
        c.image_digest = Some("sha256:feedface".into());
        assert_eq!(
            name(&p.scope(&in_container(&f, &c, None))),
            "shop-images",
            "by digest"
        );
        c.image_digest = None;
        c.pod = Some(PodRef {
            name: "p".into(),
            namespace: "prod-eu".into(),
            uid: None,
        });
        assert_eq!(
            name(&p.scope(&in_container(&f, &c, None))),
            "NotCovered",
            "the labels are required too"
        );
        let labels = [("tier".to_string(), "frontend".to_string())].into();
        assert_eq!(name(&p.scope(&in_container(&f, &c, Some(&labels)))), "prod");
        c.pod = None;
        c.name = Some("web-1".into());
        assert_eq!(name(&p.scope(&in_container(&f, &c, None))), "web");
        assert_eq!(name(&p.scope(&Subject::host(&f, None))), "host");
    }

    #[test]
    fn a_host_policy_selecting_containers_is_refused() {
        let mut h = spec("h", Mode::Enforce, &[]);
        h.host = true;
        h.images = vec!["x".into()];
        let err = Policies::build(&[h]).unwrap_err().to_string();
        assert!(
            err.contains("policy[0]") && err.contains(".host") && err.contains("images"),
            "{err}"
        );
        let mut bad = spec("b", Mode::Enforce, &[]);
        bad.pod_labels = [("app".to_string(), "[".to_string())].into();
        let err = Policies::build(&[bad]).unwrap_err().to_string();
        assert!(err.contains("pod_labels.app"), "{err}");
    }
}
