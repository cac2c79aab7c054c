//! `[containers]`: every container on the node protected from its first
//! open (docs/containers.md). The section, its validation, and the running
//! pieces the agent owns: the protector, its watcher and the control socket.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use portcullis_containers::control::{ControlServer, PolicyNames, DEFAULT_SOCKET};
use portcullis_containers::nri::NriConfig;
use portcullis_containers::spool::{self, HookDecision};
use portcullis_containers::{
    runtime, ContainerEvent, Protector, ProtectorConfig, Registry, SkipRule, SkipRules,
};
use portcullis_interceptor::{Fanotify, Watch};
use portcullis_schemas::{
    ContainerChange, ContainerObserved, ContainerRef, ContainerRuntime, EventBody, FilePath,
    HookOutcome, Timestamp,
};
use serde::Deserialize;

/// A runtime named in `containers.runtimes`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeSetting {
    /// Every runtime whose socket exists.
    Auto,
    Podman,
    Docker,
    Containerd,
    CriO,
}

/// What the OCI hook does when the agent does not answer.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OnAgentUnavailable {
    /// Let the container start unprotected; the start is journaled once the
    /// agent is back.
    #[default]
    Allow,
    /// Fail the container's start.
    Refuse,
}

/// `[containers.hook]`: read by `portcullis oci-hook --config FILE`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSection {
    /// The longest a hook holds a container's start waiting for the agent.
    #[serde(default = "d_hook_timeout")]
    pub timeout: String,
    #[serde(default)]
    pub on_agent_unavailable: OnAgentUnavailable,
    /// Where the hook records starts it let through (or refused) while the
    /// agent was down; the agent journals and removes them at start.
    #[serde(default = "d_spool")]
    pub spool_dir: PathBuf,
}

impl Default for HookSection {
    fn default() -> Self {
        Self {
            timeout: d_hook_timeout(),
            on_agent_unavailable: OnAgentUnavailable::Allow,
            spool_dir: d_spool(),
        }
    }
}

/// `[containers.nri]`: the NRI plugin (containerd, CRI-O).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NriSection {
    /// Serve NRI when containerd or CRI-O is among `runtimes`.
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// The runtime's NRI socket.
    #[serde(default = "d_nri_socket")]
    pub socket: PathBuf,
    /// The name the plugin registers as: what the runtime's
    /// `default_validator.required_plugins` names to refuse every container
    /// start while the agent is away.
    #[serde(default = "d_nri_name")]
    pub plugin_name: String,
    /// Two digits; plugins are called in ascending order.
    #[serde(default = "d_nri_index")]
    pub plugin_index: String,
}

impl Default for NriSection {
    fn default() -> Self {
        Self {
            enabled: true,
            socket: d_nri_socket(),
            plugin_name: d_nri_name(),
            plugin_index: d_nri_index(),
        }
    }
}

fn d_nri_socket() -> PathBuf {
    PathBuf::from(portcullis_containers::nri::DEFAULT_SOCKET)
}
fn d_nri_name() -> String {
    "portcullis".into()
}
fn d_nri_index() -> String {
    "10".into()
}

/// One `[[containers.skip]]` rule as written: a container it matches is
/// never marked. Every field given must match; `*` and `?` are wildcards.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipSection {
    /// The container's name.
    pub name: Option<String>,
    /// The image reference it was created from.
    pub image: Option<String>,
    /// Its pod's Kubernetes namespace.
    pub namespace: Option<String>,
    /// Labels (keys exact, values patterns; `"*"`: any value).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

impl SkipSection {
    fn build(self, index: usize) -> Result<SkipRule, (String, String)> {
        let field = |f: &str| format!("containers.skip[{index}].{f}");
        for (f, v) in [
            ("name", &self.name),
            ("image", &self.image),
            ("namespace", &self.namespace),
        ] {
            if v.as_deref().is_some_and(str::is_empty) {
                return Err((
                    field(f),
                    "an empty pattern matches nothing; use \"*\" for any".into(),
                ));
            }
        }
        if let Some(k) = self.labels.keys().find(|k| k.is_empty()) {
            return Err((
                field(&format!("labels.{k:?}")),
                "a label key cannot be empty".into(),
            ));
        }
        let rule = SkipRule {
            name: self.name,
            image: self.image,
            namespace: self.namespace,
            labels: self.labels.into_iter().collect(),
        };
        if rule.is_empty() {
            return Err((
                format!("containers.skip[{index}]"),
                "names no name, image, namespace or labels: it would leave every container unprotected".into(),
            ));
        }
        Ok(rule)
    }
}

/// `[containers]` as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainersSection {
    /// Protect every container on the node (also `run --containers`).
    #[serde(default)]
    pub enabled: bool,
    /// `["auto"]` (default): every runtime whose API socket exists; or
    /// a list of `podman`, `docker`, `containerd`, `cri-o`.
    #[serde(default = "d_runtimes")]
    pub runtimes: Vec<RuntimeSetting>,
    /// API sockets, each overriding the runtime's default path.
    pub podman_socket: Option<PathBuf>,
    pub docker_socket: Option<PathBuf>,
    pub containerd_socket: Option<PathBuf>,
    pub crio_socket: Option<PathBuf>,
    /// Podman's storage root: its container list there names a container
    /// the moment its hook runs.
    #[serde(default = "d_podman_storage")]
    pub podman_storage: PathBuf,
    /// containerd's state directory: the bundles of its running containers
    /// name them (`io.kubernetes.cri.*` annotations).
    #[serde(default = "d_containerd_state")]
    pub containerd_state: PathBuf,
    /// CRI-O's storage run root, for the same.
    #[serde(default = "d_crio_run_root")]
    pub crio_run_root: PathBuf,
    /// Mount marks on each container's volumes too.
    #[serde(default = "d_true")]
    pub volumes: bool,
    /// The agent's control socket (root only): the OCI hook and
    /// `portcullis containers` talk to it.
    #[serde(default = "d_socket")]
    pub control_socket: PathBuf,
    /// How long the agent keeps asking a runtime for a new container's
    /// name and image.
    #[serde(default = "d_metadata_timeout")]
    pub metadata_timeout: String,
    /// How often `/proc` is rescanned without a mount change.
    #[serde(default = "d_rescan")]
    pub rescan_interval: String,
    /// Scan `/proc` after every mount change of the host: the fallback
    /// for runtimes without a synchronous hook (Docker; containerd or CRI-O
    /// without NRI). Where every runtime has its hook or NRI, `false` saves
    /// those scans.
    #[serde(default = "d_true")]
    pub watch_mounts: bool,
    /// Gone containers whose metadata is kept for late events.
    #[serde(default = "d_gone")]
    pub recently_gone: usize,
    /// Containers never marked (docs/containers.md).
    #[serde(default)]
    pub skip: Vec<SkipSection>,
    #[serde(default)]
    pub hook: HookSection,
    #[serde(default)]
    pub nri: NriSection,
}

impl Default for ContainersSection {
    fn default() -> Self {
        Self {
            enabled: false,
            runtimes: d_runtimes(),
            podman_socket: None,
            docker_socket: None,
            containerd_socket: None,
            crio_socket: None,
            podman_storage: d_podman_storage(),
            containerd_state: d_containerd_state(),
            crio_run_root: d_crio_run_root(),
            volumes: true,
            control_socket: d_socket(),
            metadata_timeout: d_metadata_timeout(),
            rescan_interval: d_rescan(),
            watch_mounts: true,
            recently_gone: d_gone(),
            skip: Vec::new(),
            hook: HookSection::default(),
            nri: NriSection::default(),
        }
    }
}

fn d_true() -> bool {
    true
}
fn d_runtimes() -> Vec<RuntimeSetting> {
    vec![RuntimeSetting::Auto]
}
fn d_podman_storage() -> PathBuf {
    PathBuf::from(portcullis_containers::runtime::storage::DEFAULT_ROOT)
}
fn d_containerd_state() -> PathBuf {
    PathBuf::from(runtime::bundles::CONTAINERD_STATE)
}
fn d_crio_run_root() -> PathBuf {
    PathBuf::from(runtime::bundles::CRIO_RUN_ROOT)
}
fn d_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}
fn d_metadata_timeout() -> String {
    "5s".into()
}
fn d_rescan() -> String {
    "2s".into()
}
fn d_gone() -> usize {
    1024
}
fn d_hook_timeout() -> String {
    "5s".into()
}
fn d_spool() -> PathBuf {
    PathBuf::from("/var/lib/portcullis/hook-spool")
}

/// `[containers.hook]`, validated.
#[derive(Clone, Debug)]
pub struct HookSettings {
    pub timeout: Duration,
    pub on_agent_unavailable: OnAgentUnavailable,
    pub spool_dir: PathBuf,
}

/// `[containers]`, validated.
#[derive(Clone, Debug)]
pub struct ContainersSettings {
    pub enabled: bool,
    /// Each runtime with its socket (`None`: the default paths).
    pub runtimes: Vec<(ContainerRuntime, Option<PathBuf>)>,
    pub local: runtime::LocalRoots,
    pub volumes: bool,
    pub control_socket: PathBuf,
    pub metadata_timeout: Duration,
    pub rescan_interval: Duration,
    pub watch_mounts: bool,
    pub recently_gone: usize,
    pub skip: SkipRules,
    pub hook: HookSettings,
    /// The NRI plugin, when containerd or CRI-O is protected and
    /// `nri.enabled`.
    pub nri: Option<NriConfig>,
}

impl Default for ContainersSettings {
    fn default() -> Self {
        // The defaults are valid by construction.
        ContainersSection::default()
            .build()
            .unwrap_or_else(|(field, message)| {
                unreachable!("default [containers] invalid: {field}: {message}")
            })
    }
}

fn duration(field: &str, s: &str) -> Result<Duration, (String, String)> {
    let d = humantime::parse_duration(s).map_err(|e| {
        (
            field.to_string(),
            format!("`{s}` is not a duration (e.g. \"5s\", \"250ms\"): {e}"),
        )
    })?;
    if d.is_zero() {
        return Err((field.to_string(), "must be greater than zero".into()));
    }
    Ok(d)
}

impl HookSection {
    pub fn build(self) -> Result<HookSettings, (String, String)> {
        let timeout = duration("containers.hook.timeout", &self.timeout)?;
        if timeout > Duration::from_secs(60) {
            return Err((
                "containers.hook.timeout".into(),
                format!(
                    "{} holds every container start too long; at most 60s",
                    self.timeout
                ),
            ));
        }
        if !self.spool_dir.is_absolute() {
            return Err((
                "containers.hook.spool_dir".into(),
                format!("`{}` must be an absolute path", self.spool_dir.display()),
            ));
        }
        Ok(HookSettings {
            timeout,
            on_agent_unavailable: self.on_agent_unavailable,
            spool_dir: self.spool_dir,
        })
    }
}

impl ContainersSection {
    /// Validates; errors are `(field, message)`.
    pub fn build(self) -> Result<ContainersSettings, (String, String)> {
        if self.runtimes.is_empty() {
            return Err((
                "containers.runtimes".into(),
                "must name at least one runtime, or \"auto\"".into(),
            ));
        }
        let socket_of = |kind| match kind {
            ContainerRuntime::Podman => self.podman_socket.clone(),
            ContainerRuntime::Docker => self.docker_socket.clone(),
            ContainerRuntime::Containerd => self.containerd_socket.clone(),
            ContainerRuntime::CriO => self.crio_socket.clone(),
        };
        let all = [
            ContainerRuntime::Podman,
            ContainerRuntime::Docker,
            ContainerRuntime::Containerd,
            ContainerRuntime::CriO,
        ];
        let mut runtimes: Vec<(ContainerRuntime, Option<PathBuf>)> = Vec::new();
        for r in &self.runtimes {
            let kinds: &[ContainerRuntime] = match r {
                RuntimeSetting::Auto => &all,
                RuntimeSetting::Podman => &all[0..1],
                RuntimeSetting::Docker => &all[1..2],
                RuntimeSetting::Containerd => &all[2..3],
                RuntimeSetting::CriO => &all[3..4],
            };
            for k in kinds {
                if !runtimes.iter().any(|(have, _)| have == k) {
                    runtimes.push((*k, socket_of(*k)));
                }
            }
        }
        for (field, p) in [
            ("containers.podman_socket", &self.podman_socket),
            ("containers.docker_socket", &self.docker_socket),
            ("containers.containerd_socket", &self.containerd_socket),
            ("containers.crio_socket", &self.crio_socket),
            (
                "containers.control_socket",
                &Some(self.control_socket.clone()),
            ),
            (
                "containers.podman_storage",
                &Some(self.podman_storage.clone()),
            ),
            (
                "containers.containerd_state",
                &Some(self.containerd_state.clone()),
            ),
            (
                "containers.crio_run_root",
                &Some(self.crio_run_root.clone()),
            ),
        ] {
            if let Some(p) = p {
                if !p.is_absolute() {
                    return Err((
                        field.into(),
                        format!("`{}` must be an absolute path", p.display()),
                    ));
                }
            }
        }
        if self.recently_gone == 0 || self.recently_gone > 1_000_000 {
            return Err((
                "containers.recently_gone".into(),
                format!("{} is not in 1..=1000000", self.recently_gone),
            ));
        }
        // Both serve NRI on the same default path; the one named is the
        // runtime NRI's containers belong to (containerd when both are asked
        // for, as with `auto`: the common one).
        let nri_runtime = [ContainerRuntime::Containerd, ContainerRuntime::CriO]
            .into_iter()
            .find(|k| runtimes.iter().any(|(r, _)| r == k));
        let nri = match nri_runtime.filter(|_| self.nri.enabled) {
            Some(runtime) => {
                if !self.nri.socket.is_absolute() {
                    return Err((
                        "containers.nri.socket".into(),
                        format!("`{}` must be an absolute path", self.nri.socket.display()),
                    ));
                }
                let config = NriConfig {
                    socket: self.nri.socket,
                    name: self.nri.plugin_name,
                    index: self.nri.plugin_index,
                    runtime,
                    retry: Duration::from_secs(1),
                };
                if let Err((field, message)) = config.validate() {
                    return Err((format!("containers.nri.{field}"), message));
                }
                Some(config)
            }
            None => None,
        };
        let skip = SkipRules(
            self.skip
                .into_iter()
                .enumerate()
                .map(|(i, r)| r.build(i))
                .collect::<Result<_, _>>()?,
        );
        Ok(ContainersSettings {
            nri,
            skip,
            enabled: self.enabled,
            runtimes,
            local: runtime::LocalRoots {
                podman_storage: self.podman_storage,
                containerd_state: self.containerd_state,
                crio_run_root: self.crio_run_root,
            },
            volumes: self.volumes,
            control_socket: self.control_socket,
            metadata_timeout: duration("containers.metadata_timeout", &self.metadata_timeout)?,
            rescan_interval: duration("containers.rescan_interval", &self.rescan_interval)?,
            watch_mounts: self.watch_mounts,
            recently_gone: self.recently_gone,
            hook: self.hook.build()?,
        })
    }
}

/// The running container protection of an agent.
#[derive(Debug)]
pub struct ContainerProtection {
    protector: Arc<Protector>,
    control: Option<ControlServer>,
    stop: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
    nri: Option<std::thread::JoinHandle<()>>,
}

/// Journals a fact: the agent appends it to its journal.
pub type Emit = Arc<dyn Fn(EventBody) + Send + Sync>;

impl ContainerProtection {
    /// Journals what the hook spooled while the agent was down, protects
    /// every running container, then starts the control socket (for the
    /// hook) and the watcher. `refused` are the devices the agent marks
    /// otherwise (its `protect` mounts).
    pub fn start(
        settings: &ContainersSettings,
        fan: Arc<Fanotify>,
        watch: Watch,
        refused: Vec<u64>,
        registry: Arc<Registry>,
        emit: Emit,
        policies: Option<PolicyNames>,
    ) -> anyhow::Result<Self> {
        for r in spool::drain(&settings.hook.spool_dir) {
            match r {
                Ok(rec) => {
                    tracing::warn!(
                        container = %rec.container_id,
                        decision = ?rec.decision,
                        reason = %rec.reason,
                        "a container started while the agent was unavailable"
                    );
                    emit(spooled_event(rec));
                }
                Err(e) => {
                    tracing::error!(error = %e, "unreadable hook spool record (kept as *.bad)")
                }
            }
        }
        let runtimes =
            runtime::connect(&settings.runtimes, &settings.local, Duration::from_secs(2));
        let observe = emit.clone();
        let protector = Protector::start(
            fan,
            ProtectorConfig {
                watch,
                volumes: settings.volumes,
                refused_devices: refused,
                metadata_timeout: settings.metadata_timeout,
                rescan: settings.rescan_interval,
                watch_mounts: settings.watch_mounts,
                gone_capacity: settings.recently_gone,
                skip: settings.skip.clone(),
            },
            registry,
            runtimes,
            Arc::new(move |e| observe(observed_event(e))),
        )
        .context("starting container protection")?;
        let n = protector.scan();
        tracing::info!(containers = n, "running containers protected");
        let control = ControlServer::start(&settings.control_socket, protector.clone(), policies)
            .context("starting the agent control socket")?;
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = protector.spawn_watcher(stop.clone())?;
        let nri = match &settings.nri {
            Some(config) => Some(
                portcullis_containers::nri::spawn(config.clone(), protector.clone(), stop.clone())
                    .context("starting the NRI plugin")?,
            ),
            None => None,
        };
        Ok(Self {
            protector,
            control: Some(control),
            stop,
            watcher: Some(watcher),
            nri,
        })
    }

    pub fn protector(&self) -> &Arc<Protector> {
        &self.protector
    }

    /// Stops the watcher and the control socket (no new marks from here).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.control.take();
        for t in [self.watcher.take(), self.nri.take()].into_iter().flatten() {
            let _ = t.join();
        }
    }
}

/// The filesystems of `paths` (`st_dev`), which are never marked as a
/// container root.
pub fn devices_of(paths: &[PathBuf]) -> Vec<u64> {
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok().map(|m| m.dev()))
        .collect()
}

/// The journal event of a container fact.
pub fn observed_event(e: ContainerEvent) -> EventBody {
    let (container, change, labels) = match e {
        ContainerEvent::Protected(c) => (
            c.reference(),
            ContainerChange::Protected {
                pid: c.pid,
                via: c.via,
                root_device: c.root_device,
                volumes: c
                    .volumes
                    .iter()
                    .map(|v| FilePath::from(v.as_path()))
                    .collect(),
            },
            c.label_pairs(),
        ),
        ContainerEvent::Described(c) => {
            (c.reference(), ContainerChange::Described, c.label_pairs())
        }
        ContainerEvent::Gone(c) => (c.reference(), ContainerChange::Gone, Vec::new()),
        ContainerEvent::Refused {
            container,
            pid,
            reason,
        } => (
            container,
            ContainerChange::Unprotected {
                pid: Some(pid),
                reason,
                hook: None,
                at: Timestamp::now(),
            },
            Vec::new(),
        ),
    };
    EventBody::ContainerObserved(ContainerObserved {
        container,
        change,
        labels,
    })
}

/// The journal event of what the hook did while the agent was down.
fn spooled_event(rec: spool::HookRecord) -> EventBody {
    EventBody::ContainerObserved(ContainerObserved {
        container: ContainerRef::new(
            rec.runtime.unwrap_or(ContainerRuntime::Podman),
            rec.container_id,
        ),
        change: ContainerChange::Unprotected {
            pid: rec.pid,
            reason: rec.reason,
            hook: Some(match rec.decision {
                HookDecision::Allowed => HookOutcome::Allowed,
                HookDecision::Refused => HookOutcome::Refused,
            }),
            at: Timestamp(i64::try_from(rec.at_ms).unwrap_or(i64::MAX / 1_000_000) * 1_000_000),
        },
        labels: Vec::new(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn build(text: &str) -> Result<ContainersSettings, (String, String)> {
        toml::from_str::<ContainersSection>(text).unwrap().build()
    }

    #[test]
    fn defaults_and_auto() {
        let s = build("").unwrap();
        assert!(!s.enabled);
        assert_eq!(s.runtimes.len(), 4);
        assert_eq!(s.control_socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(s.hook.on_agent_unavailable, OnAgentUnavailable::Allow);
        assert_eq!(s.hook.timeout, Duration::from_secs(5));
        let nri = s.nri.unwrap();
        assert_eq!(nri.runtime, ContainerRuntime::Containerd);
        assert_eq!(
            (nri.name.as_str(), nri.index.as_str()),
            ("portcullis", "10")
        );
        assert!(build("runtimes = [\"podman\"]\n").unwrap().nri.is_none());
        assert!(build("[nri]\nenabled = false\n").unwrap().nri.is_none());
        assert_eq!(
            build("runtimes = [\"cri-o\"]\n")
                .unwrap()
                .nri
                .unwrap()
                .runtime,
            ContainerRuntime::CriO
        );
        let s =
            build("runtimes = [\"podman\", \"podman\"]\npodman_socket = \"/x.sock\"\n").unwrap();
        assert_eq!(
            s.runtimes,
            vec![(ContainerRuntime::Podman, Some(PathBuf::from("/x.sock")))]
        );
    }

    #[test]
    fn bad_values_name_the_field() {
        for (text, field) in [
            ("runtimes = []\n", "containers.runtimes"),
            ("podman_socket = \"rel.sock\"\n", "containers.podman_socket"),
            (
                "metadata_timeout = \"soon\"\n",
                "containers.metadata_timeout",
            ),
            ("recently_gone = 0\n", "containers.recently_gone"),
            ("[hook]\ntimeout = \"5m\"\n", "containers.hook.timeout"),
            (
                "[nri]\nplugin_index = \"1\"\n",
                "containers.nri.plugin_index",
            ),
            (
                "[nri]\nplugin_name = \"a b\"\n",
                "containers.nri.plugin_name",
            ),
            ("[nri]\nsocket = \"nri.sock\"\n", "containers.nri.socket"),
            (
                "[hook]\nspool_dir = \"spool\"\n",
                "containers.hook.spool_dir",
            ),
            ("[[skip]]\n", "containers.skip[0]"),
            (
                "[[skip]]\nname = \"a*\"\n[[skip]]\nimage = \"\"\n",
                "containers.skip[1].image",
            ),
            (
                "[[skip]]\nlabels = { \"\" = \"x\" }\n",
                "containers.skip[0].labels.\"\"",
            ),
        ] {
            assert_eq!(build(text).unwrap_err().0, field, "{text}");
        }
        assert!(toml::from_str::<ContainersSection>("runtimes = [\"lxc\"]\n").is_err());
    }

    #[test]
    fn skip_rules_keep_their_order_and_fields() {
        let s = build(
            "[[skip]]\nname = \"portcullis-*\"\n\n[[skip]]\nnamespace = \"kube-system\"\nlabels = { tier = \"*\" }\n",
        )
        .unwrap();
        assert_eq!(
            s.skip,
            SkipRules(vec![
                SkipRule {
                    name: Some("portcullis-*".into()),
                    ..SkipRule::default()
                },
                SkipRule {
                    namespace: Some("kube-system".into()),
                    labels: vec![("tier".into(), "*".into())],
                    ..SkipRule::default()
                },
            ])
        );
        assert!(build("").unwrap().skip.is_empty());
        let e = toml::from_str::<ContainersSection>("[[skip]]\nnames = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `names`"), "{e}");
    }
}
