//! `portcullis events`: the local journal as a table (or ECS lines), a
//! shortcut for `portcullis replay --journal DIR --format table`.

use std::process::ExitCode;

use crate::cli::{EventsArgs, EventsFormat, ReplayArgs, SourceArgs};
use crate::forensics::output::Format;

pub fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    super::replay::run(ReplayArgs {
        source: SourceArgs {
            journal: args.journal,
            export: None,
            kafka: false,
            config: None,
        },
        format: match args.format {
            EventsFormat::Table => Format::Table,
            EventsFormat::Jsonl => Format::Ecs,
        },
        from: args.since,
        to: None,
        node: vec![],
        container: vec![],
        container_name: vec![],
        image: vec![],
        namespace: vec![],
        pod: vec![],
        pid: vec![],
        path: vec![],
        kind: vec![],
        verdict: args.verdict.into_iter().collect(),
        rule: vec![],
        verify: false,
        follow: false,
        progress: false,
        output: None,
    })
}
