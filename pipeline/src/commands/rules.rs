//! `portcullis rules check DIR`: the dry run of a reload (the same
//! compile, rule files and hash lists, without touching a running agent).

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
                let lists = rules.hash_lists();
                if !lists.files().is_empty() {
                    let (trusted, bad) = lists.counts();
                    println!(
                        "ok: hash lists {}: {trusted} trusted, {bad} known-bad digest(s)",
                        lists.files().join(", ")
                    );
                }
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
