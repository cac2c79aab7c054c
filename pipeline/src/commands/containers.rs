//! `portcullis containers`: what a running agent protects.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use portcullis_containers::control::{self, Request, Response};

use crate::cli::{ContainersArgs, ContainersFormat};
use crate::config::{ConfigFile, Overrides};

pub fn run(args: ContainersArgs) -> anyhow::Result<ExitCode> {
    let socket = match (&args.socket, &args.config) {
        (Some(s), _) => s.clone(),
        (None, Some(file)) => {
            ConfigFile::load(file)?
                .build(&file.display().to_string(), Overrides::default())?
                .containers
                .control_socket
        }
        (None, None) => control::DEFAULT_SOCKET.into(),
    };
    let answer = control::request(&socket, &Request::List, Duration::from_secs(5))
        .context("is the agent running with --containers?")?;
    let Response::Containers {
        containers,
        recently_gone,
        marks,
    } = answer
    else {
        anyhow::bail!("unexpected answer from the agent: {answer:?}");
    };
    match args.format {
        ContainersFormat::Json => {
            let out = serde_json::json!({
                "containers": containers,
                "recently_gone": recently_gone,
                "marks": marks,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        ContainersFormat::Table => {
            println!(
                "{:<13} {:<10} {:<20} {:<34} {:<24} {:>7} {:>7}  POLICY",
                "CONTAINER", "RUNTIME", "NAME", "IMAGE", "POD", "PID", "VOLUMES"
            );
            for c in &containers {
                let pod = c
                    .meta
                    .pod
                    .as_ref()
                    .map(|p| format!("{}/{}", p.namespace, p.name))
                    .unwrap_or_else(|| "-".into());
                let policy = if c.policies.is_empty() {
                    "- (none: not scanned)".to_string()
                } else {
                    c.policies.join(",")
                };
                println!(
                    "{:<13} {:<10} {:<20} {:<34} {:<24} {:>7} {:>7}  {policy}",
                    c.container.id.get(..12).unwrap_or(&c.container.id),
                    c.container.runtime.as_str(),
                    c.meta.name.as_deref().unwrap_or("-"),
                    c.meta.image.as_deref().unwrap_or("-"),
                    pod,
                    c.pid,
                    c.volumes.len()
                );
            }
            println!(
                "{} protected, {} recently gone; marks: {} filesystems, {} mounts, {} cached inodes",
                containers.len(),
                recently_gone,
                marks.filesystems,
                marks.mounts,
                marks.inodes
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
