//! `portcullis oci-hook`: the OCI `createRuntime` hook. The runtime has
//! created the container (its init exists, in its namespaces and cgroup)
//! and runs no code of it until the hook returns: the hook asks the agent
//! to mark the container's root and waits for the answer, bounded by
//! `containers.hook.timeout`.
//!
//! When the agent does not answer, `on_agent_unavailable` decides: `allow`
//! (exit 0; the container starts unprotected until the agent's scan finds
//! it) or `refuse` (exit 1; the runtime fails the start). Either way the
//! start is spooled and journaled by the agent once it is back.

use std::process::ExitCode;

use anyhow::Context as _;
use portcullis_containers::control::{self, Request, Response};
use portcullis_containers::spool::{self, HookDecision};
use portcullis_containers::OciState;
use portcullis_schemas::ContainerRuntime;

use crate::cli::OciHookArgs;
use crate::config::{ConfigFile, Overrides};
use crate::containers::OnAgentUnavailable;

pub fn run(args: OciHookArgs) -> anyhow::Result<ExitCode> {
    let containers = match &args.config {
        Some(file) => {
            ConfigFile::load(file)?
                .build(&file.display().to_string(), Overrides::default())?
                .containers
        }
        None => crate::containers::ContainersSettings::default(),
    };
    let socket = args.socket.unwrap_or(containers.control_socket);
    let timeout = match &args.timeout {
        Some(t) => humantime::parse_duration(t)
            .with_context(|| format!("--timeout: `{t}` is not a duration"))?,
        None => containers.hook.timeout,
    };
    let on_unavailable = args
        .on_agent_unavailable
        .unwrap_or(containers.hook.on_agent_unavailable);
    let spool_dir = args.spool_dir.unwrap_or(containers.hook.spool_dir);
    let runtime = match args.runtime.as_deref() {
        None => None,
        Some("podman") => Some(ContainerRuntime::Podman),
        Some("docker") => Some(ContainerRuntime::Docker),
        Some("containerd") => Some(ContainerRuntime::Containerd),
        Some("cri-o") => Some(ContainerRuntime::CriO),
        Some(other) => {
            anyhow::bail!("--runtime: `{other}` is not podman, docker, containerd or cri-o")
        }
    };

    let state = OciState::read(std::io::stdin().lock())?;
    let id = state.id.clone();
    let pid = state.pid;
    let runtime_seen = runtime.or_else(|| control::runtime_from_annotations(&state.annotations));
    let reason = match control::request(&socket, &Request::Protect { state, runtime }, timeout) {
        Ok(Response::Protected { container }) => {
            tracing::debug!(container = %container.container.id, device = container.root_device, "protected");
            return Ok(ExitCode::SUCCESS);
        }
        // The agent answered but could not protect this container (not an
        // overlay, a refused filesystem): that is the agent's decision,
        // journaled there; the container starts.
        Ok(Response::Error { message }) => {
            eprintln!(
                "portcullis oci-hook: container {id}: the agent did not protect it: {message}"
            );
            return Ok(ExitCode::SUCCESS);
        }
        Ok(other) => format!("unexpected answer: {other:?}"),
        Err(e) => e.to_string(),
    };
    let decision = match on_unavailable {
        OnAgentUnavailable::Allow => HookDecision::Allowed,
        OnAgentUnavailable::Refuse => HookDecision::Refused,
    };
    if let Err(e) = spool::write(
        &spool_dir,
        &spool::record(&id, runtime_seen, pid, decision, reason.clone()),
    ) {
        eprintln!("portcullis oci-hook: {e}");
    }
    match decision {
        HookDecision::Allowed => {
            eprintln!("portcullis oci-hook: container {id} starts UNPROTECTED: the agent is unavailable ({reason}); on_agent_unavailable = allow");
            Ok(ExitCode::SUCCESS)
        }
        HookDecision::Refused => {
            eprintln!("portcullis oci-hook: container {id} refused: the agent is unavailable ({reason}); on_agent_unavailable = refuse");
            Ok(ExitCode::from(1))
        }
    }
}
