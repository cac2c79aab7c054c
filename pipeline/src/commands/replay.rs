//! `portcullis replay`: read a node's journal, an export, or the Kafka
//! events topic back, filtered, in ECS, OCSF, CEF, a table or an export;
//! `--verify` checks the log is whole instead.

use std::collections::HashSet;
use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context as _;
use portcullis_schemas::{codec, Envelope, EventBody, EventKind, VerdictClass};

use crate::cli::{ReplayArgs, SourceArgs};
use crate::config::{ConfigFile, Overrides};
use crate::forensics::filter::{globs, Correlator, Filter};
use crate::forensics::output::{Format, Output};
use crate::forensics::parse_time;
use crate::forensics::progress::Progress;
use crate::forensics::source::{self, ReadOptions, SourceMsg, SourceSpec};
use crate::forensics::verify::Verifier;

impl SourceArgs {
    /// The source these flags name (default: the default journal).
    pub fn spec(&self) -> anyhow::Result<SourceSpec> {
        if self.kafka {
            let Some(path) = &self.config else {
                anyhow::bail!("--kafka needs --config FILE with a [kafka] section");
            };
            let origin = path.display().to_string();
            let settings = ConfigFile::load(path)?.build(&origin, Overrides::default())?;
            let kafka = settings
                .kafka
                .with_context(|| format!("{origin}: kafka: --kafka needs a [kafka] section"))?;
            return Ok(SourceSpec::Kafka(kafka));
        }
        if let Some(file) = &self.export {
            return Ok(SourceSpec::Export(file.clone()));
        }
        Ok(SourceSpec::Journal(self.journal.clone()))
    }
}

fn parse_list<T: std::str::FromStr<Err = String> + Eq + std::hash::Hash>(
    flag: &str,
    values: &[String],
) -> anyhow::Result<HashSet<T>> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
        })
        .collect()
}

/// The filter of `args`.
pub fn filter_of(args: &ReplayArgs) -> anyhow::Result<Filter> {
    Ok(Filter {
        from: args
            .from
            .as_deref()
            .map(|s| parse_time("--from", s))
            .transpose()?,
        to: args
            .to
            .as_deref()
            .map(|s| parse_time("--to", s))
            .transpose()?,
        nodes: args.node.clone(),
        containers: args.container.clone(),
        container_names: globs("--container-name", &args.container_name)?,
        images: globs("--image", &args.image)?,
        namespaces: globs("--namespace", &args.namespace)?,
        pods: globs("--pod", &args.pod)?,
        pids: args.pid.clone(),
        paths: globs("--path", &args.path)?,
        kinds: parse_list::<EventKind>("--kind", &args.kind)?,
        verdicts: parse_list::<VerdictClass>("--verdict", &args.verdict)?,
        rules: globs("--rule", &args.rule)?,
    })
}

/// A first pass over the whole source: every container's metadata as its
/// `ContainerObserved` events tell it (a container described after its
/// first accesses is known for those too).
fn preload_containers(spec: &SourceSpec, correlator: &mut Correlator) -> anyhow::Result<()> {
    let handle = source::open(
        spec,
        ReadOptions {
            from: None,
            to: None,
            follow: false,
        },
    )?;
    for msg in handle.rx.iter() {
        let SourceMsg::Records(batch) = msg else {
            continue;
        };
        for raw in &batch {
            if let Ok(env) = codec::decode(&raw.bytes) {
                if let EventBody::ContainerObserved(o) = &env.body {
                    correlator.preload(&o.container);
                }
            }
        }
        handle.recycle(batch);
    }
    handle.finish()?;
    Ok(())
}

/// Fills an access's container with what is known of it (name, image,
/// pod) when the access itself was journaled before that was known.
fn enrich(env: &mut Envelope, correlator: &Correlator) {
    let id = env.event_id;
    if let EventBody::FileAccessed(a) = &mut env.body {
        if let (Some(c), Some(known)) = (
            a.container.as_mut(),
            correlator.get(&id).and_then(|f| f.container_ref.as_ref()),
        ) {
            c.fill_from(known);
        }
    }
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let filter = filter_of(&args)?;
    let spec = args.source.spec()?;
    if args.format == Format::Export && matches!(spec, SourceSpec::Kafka(_)) {
        anyhow::bail!("--format export writes one node's journal; read a --journal or an --export");
    }
    if args.format == Format::Export && args.verify {
        anyhow::bail!("--verify writes a report, not an export; drop one of them");
    }
    let handle = source::open(
        &spec,
        ReadOptions {
            from: filter.from,
            to: filter.to,
            follow: args.follow,
        },
    )?;
    let total = handle.total;
    let started = std::time::Instant::now();
    let mut pb = Progress::new(
        if args.follow { None } else { total },
        args.progress,
        &spec.describe(),
    );
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(io::stdout().lock()),
    };
    let mut out = Output::new(
        io::BufWriter::with_capacity(1 << 18, sink),
        args.format,
        total.unwrap_or(0),
    );
    let mut correlator = Correlator::default();
    let correlate = filter.needs_facts();
    if filter.selects_container_metadata() && !args.follow {
        preload_containers(&spec, &mut correlator)
            .with_context(|| format!("reading {} for its containers", spec.describe()))?;
    }
    let mut verifier = args.verify.then(Verifier::default);
    let (mut read, mut written, mut bad) = (0u64, 0u64, 0u64);

    let result: anyhow::Result<()> = (|| {
        for msg in handle.rx.iter() {
            let batch = match msg {
                SourceMsg::Note(n) => {
                    pb.note(format_args!("note: {n}"));
                    continue;
                }
                SourceMsg::Records(b) => b,
            };
            pb.inc(batch.len() as u64);
            for raw in &batch {
                read += 1;
                let mut env = match codec::decode(&raw.bytes) {
                    Ok(env) => env,
                    Err(e) => {
                        bad += 1;
                        match &mut verifier {
                            Some(v) => v.undecodable(raw.node.as_deref(), &raw.pos, &e.to_string()),
                            None => pb.note(format_args!(
                                "warning: {}: undecodable record: {e}",
                                raw.pos
                            )),
                        }
                        continue;
                    }
                };
                let keep = if correlate {
                    correlator.observe(&env);
                    let facts = env.access_id().and_then(|id| correlator.get(&id));
                    filter.matches(&env, facts, correlator.container_of(&env, facts))
                } else {
                    filter.matches(&env, None, None)
                };
                if !keep {
                    continue;
                }
                if correlate && args.format != Format::Export {
                    enrich(&mut env, &correlator);
                }
                match &mut verifier {
                    Some(v) => {
                        v.record(&env);
                        written += 1;
                    }
                    None => {
                        if out.write(&env, &raw.pos, &raw.bytes)? {
                            written += 1;
                        }
                    }
                }
            }
            handle.recycle(batch);
            if args.follow {
                out.flush()?;
            }
        }
        Ok(())
    })();
    pb.finish();
    let source_result = handle.finish();
    match result {
        Err(e) if is_broken_pipe(&e) => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    source_result.with_context(|| format!("reading {}", spec.describe()))?;
    let mut sink = out.finish().or_else(|e| {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Ok(io::BufWriter::new(Box::new(io::sink()) as Box<dyn Write>))
        } else {
            Err(e)
        }
    })?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} {written} of {read} records from {} in {secs:.2} s ({:.0} records/s){}",
        if verifier.is_some() {
            "verified"
        } else {
            "replayed"
        },
        spec.describe(),
        read as f64 / secs.max(1e-9),
        if bad > 0 {
            format!(" ({bad} undecodable)")
        } else {
            String::new()
        }
    );
    if let Some(v) = verifier {
        let report = v.finish();
        sink.write_all(report.render().as_bytes())?;
        sink.flush()?;
        return Ok(if report.is_clean() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    Ok(if bad > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}
