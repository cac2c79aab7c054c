//! Writing replayed records in the chosen format, each with its source
//! position.

use std::io::{self, Write};

use portcullis_actors::journal::export;
use portcullis_schemas::cef::{self, CefHeader};
use portcullis_schemas::{ecs, ocsf, Envelope, SourcePosition};

use crate::render;

/// Output formats of `portcullis replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JSON lines, Elastic Common Schema (`portcullis.source` holds the
    /// position).
    #[value(alias = "jsonl", alias = "json")]
    Ecs,
    /// JSON lines, OCSF 1.3: File System Activity (1001) and Detection
    /// Finding (2004); events without an OCSF class are left out.
    Ocsf,
    /// ArcSight CEF lines (`cs5` holds the position).
    Cef,
    /// A human table.
    Table,
    /// A journal export (binary; `replay --export FILE` reads it back).
    Export,
}

/// Writes records in one format.
#[derive(Debug)]
pub struct Output<W: Write> {
    out: W,
    format: Format,
    cef: CefHeader,
    /// `last_seq` for an export's header (the source's snapshot end).
    export_last: u64,
    started: bool,
}

impl<W: Write> Output<W> {
    pub fn new(out: W, format: Format, export_last: u64) -> Self {
        Self {
            out,
            format,
            cef: CefHeader::default(),
            export_last,
            started: false,
        }
    }

    /// Writes one record; false when the format has nothing for it (an
    /// event without an OCSF class).
    pub fn write(&mut self, env: &Envelope, pos: &SourcePosition, raw: &[u8]) -> io::Result<bool> {
        let out = &mut self.out;
        match self.format {
            Format::Ecs => ecs::write_ecs_line(env, Some(pos), out)?,
            Format::Ocsf => {
                if !ocsf::write_ocsf_line(env, Some(pos), out)? {
                    return Ok(false);
                }
            }
            Format::Cef => cef::write_cef(env, Some(pos), &self.cef, out)?,
            Format::Table => {
                if !self.started {
                    self.started = true;
                    writeln!(out, "{}", render::HEADER)?;
                }
                out.write_all(render::row(env).as_bytes())?;
                if let SourcePosition::Kafka { .. } = pos {
                    write!(out, "  [{pos}]")?;
                }
            }
            Format::Export => {
                if !self.started {
                    self.started = true;
                    export::write_header(
                        out,
                        &export::ExportHeader {
                            node_id: env.node_id.clone(),
                            from_seq: env.seq,
                            last_seq: self.export_last.max(env.seq),
                        },
                    )?;
                }
                export::write_record(out, env.seq, raw)?;
                return Ok(true);
            }
        }
        out.write_all(b"\n")?;
        Ok(true)
    }

    /// Ends the output (an export's end marker) and flushes.
    pub fn finish(mut self) -> io::Result<W> {
        if self.format == Format::Export {
            export::write_end(&mut self.out)?;
        }
        self.out.flush()?;
        Ok(self.out)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
