//! The ruleset an agent or a one-shot scan uses: a directory of rule files,
//! or the built-in ruleset (the files of `rules/` compiled into the binary).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use portcullis_actors::scanner::Ruleset;

/// The files of the repository's `rules/` directory, compiled in.
const BUILTIN: &[(&str, &str)] = &[
    ("eicar.yar", include_str!("../../rules/eicar.yar")),
    ("examples.yar", include_str!("../../rules/examples.yar")),
];

/// Compiles `dir`, or the built-in ruleset when `dir` is `None`.
pub fn load_ruleset(dir: Option<&Path>) -> anyhow::Result<Ruleset> {
    match dir {
        Some(d) => Ok(Ruleset::compile_dir(d)?),
        None => {
            let sources: Vec<(PathBuf, String)> = BUILTIN
                .iter()
                .map(|(n, s)| (PathBuf::from(n), (*s).to_owned()))
                .collect();
            Ruleset::compile_sources(Path::new("<built-in>"), &sources)
                .context("the built-in ruleset")
        }
    }
}
