//! Runtime policies: which files are in scope, and the mode each policy asks
//! for.
//!
//! As in the model product, the interceptor mode is one global setting and
//! it takes precedence: a policy in audit mode under an interceptor in
//! Enforce mode still blocks. The policy's own mode is recorded on every
//! access so investigators can see both.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use portcullis_schemas::{FilePath, Mode, PolicyRef};
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
}

fn default_true() -> bool {
    true
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy[{index}].name is empty")]
    EmptyName { index: usize },
    #[error("policy[{index}].name `{name}` is used twice")]
    DuplicateName { index: usize, name: String },
    #[error("policy[{index}] (`{name}`).{field}: bad mask `{mask}`: {source}")]
    BadMask {
        index: usize,
        name: String,
        field: &'static str,
        mask: String,
        #[source]
        source: globset::Error,
    },
}

#[derive(Debug)]
struct Compiled {
    name: String,
    mode: Mode,
    paths: Option<GlobSet>,
    exclude_paths: GlobSet,
    exclude_executables: GlobSet,
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
            let set = |field: &'static str, masks: &[String]| -> Result<GlobSet, PolicyError> {
                let mut b = GlobSetBuilder::new();
                for mask in masks {
                    let glob = Glob::new(mask).map_err(|source| PolicyError::BadMask {
                        index,
                        name: spec.name.clone(),
                        field,
                        mask: mask.clone(),
                        source,
                    })?;
                    b.add(glob);
                }
                b.build().map_err(|source| PolicyError::BadMask {
                    index,
                    name: spec.name.clone(),
                    field,
                    mask: masks.join(","),
                    source,
                })
            };
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
            });
        }
        Ok(Self { policies: out })
    }

    /// The scope of an access to `path` by `executable`.
    pub fn scope(&self, path: &FilePath, executable: Option<&FilePath>) -> Scope {
        let p = path.to_path_buf();
        let exe: Option<PathBuf> = executable.map(FilePath::to_path_buf);
        for c in &self.policies {
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
            name: name.into(),
            enabled: true,
            mode,
            paths: paths.iter().map(|s| s.to_string()).collect(),
            exclude_paths: vec![],
            exclude_executables: vec![],
        }
    }

    fn fp(s: &str) -> FilePath {
        FilePath::from_bytes(s.as_bytes())
    }

    #[test]
    fn no_policies_means_one_enforcing_default() {
        let p = Policies::build(&[]).unwrap();
        assert_eq!(
            p.scope(&fp("/any/file"), None),
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
            p.scope(&fp("/srv/a/b.log"), None),
            Scope::In(PolicyRef {
                name: "logs".into(),
                mode: Mode::Audit
            })
        );
        assert_eq!(
            p.scope(&fp("/srv/a/b.bin"), None),
            Scope::In(PolicyRef {
                name: "rest".into(),
                mode: Mode::Enforce
            })
        );
        assert_eq!(
            p.scope(&fp("/srv/tmp/x.log"), None),
            Scope::Excluded {
                policy: "logs".into(),
                field: "exclude_paths"
            }
        );
        assert_eq!(p.scope(&fp("/elsewhere"), None), Scope::NotCovered);
    }

    #[test]
    fn disabled_policies_cover_nothing_and_executables_can_be_excluded() {
        let mut off = spec("off", Mode::Enforce, &["/srv/**"]);
        off.enabled = false;
        let mut on = spec("on", Mode::Enforce, &["/data/**"]);
        on.exclude_executables = vec!["/usr/bin/rsync".into()];
        let p = Policies::build(&[off, on]).unwrap();
        assert_eq!(p.scope(&fp("/srv/x"), None), Scope::NotCovered);
        assert_eq!(
            p.scope(&fp("/data/x"), Some(&fp("/usr/bin/rsync"))),
            Scope::Excluded {
                policy: "on".into(),
                field: "exclude_executables"
            }
        );
        assert!(matches!(
            p.scope(&fp("/data/x"), Some(&fp("/bin/cat"))),
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
            p.scope(&FilePath::from_bytes(&b"/srv/\xff.bin"[..]), None),
            Scope::In(_)
        ));
    }
}
