//! `portcullis rules check DIR`.

use std::process::ExitCode;

use portcullis_actors::scanner::Ruleset;

use crate::cli::RulesCommand;

pub fn run(cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RulesCommand::Check { dir } => match Ruleset::compile_dir(&dir) {
            Ok(rules) => {
                println!(
                    "ok: {} rules in {} file(s) ({}), ruleset version {}",
                    rules.rule_count(),
                    rules.files().len(),
                    rules.files().join(", "),
                    rules.version()
                );
                for w in rules.warnings() {
                    println!("warning: {w}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(ExitCode::from(2))
            }
        },
    }
}
