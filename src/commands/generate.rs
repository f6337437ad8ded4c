//! `fpmctl generate man DIR` and `fpmctl generate completions SHELL`: man pages (clap_mangen)
//! and shell completions (clap_complete) made from the command-line definitions, so they can
//! never disagree with `--help`. Hidden from `--help`; packagers run it (packaging/deb).

use super::Outcome;
use crate::cli::{Cli, GenerateArgs};
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use clap::CommandFactory;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Runs `generate`.
pub fn run(what: &GenerateArgs) -> Result<Outcome> {
    match what {
        GenerateArgs::Man { dir } => {
            let written = man_pages(dir)?;
            let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
            Ok(Outcome::ok(
                names.iter().map(|n| format!("{n}\n")).collect::<String>(),
                json!({ "written": names }),
            ))
        }
        GenerateArgs::Completions { shell } => {
            let mut cmd = public_command();
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "fpmctl", &mut buf);
            let text = String::from_utf8(buf).map_err(|e| {
                Error::Other(format!("the {shell} completion script is not UTF-8: {e}"))
            })?;
            Ok(Outcome::ok(text, json!({ "shell": shell.to_string() })))
        }
    }
}

/// The command line without its hidden commands: the completion generators would offer them.
fn public_command() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new("fpmctl")
        .version(crate::cli::VERSION)
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd
}

/// Writes `fpmctl.1` and one `fpmctl-COMMAND.1` per visible command into `dir`; returns the
/// paths written, the main page first.
pub fn man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    // Building resolves each subcommand's display name (`fpmctl-stop`), which names its page.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![cmd.clone()];
    pages.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    let mut written = Vec::new();
    for page in pages {
        let man = clap_mangen::Man::new(page.clone())
            .source(format!("fpmctl {}", crate::cli::VERSION))
            .manual("fpmctl manual");
        let path = dir.join(man.get_filename());
        let text = render(&man, &page)
            .map_err(|e| Error::io(format!("rendering {}", path.display()), e))?;
        std::fs::write(&path, text)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        written.push(path);
    }
    Ok(written)
}

/// One page: clap_mangen's sections, with the exit-code table as EXIT STATUS on every page
/// (each code means the same for every command) in place of the main page's after-help.
fn render(man: &clap_mangen::Man, cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out)?;
    }
    out.extend_from_slice(exit_status_section().as_bytes());
    if cmd.get_version().is_some() {
        man.render_version_section(&mut out)?;
    }
    Ok(out)
}

/// The exit-code table in roff.
fn exit_status_section() -> String {
    let mut roff = String::from(".SH \"EXIT STATUS\"\n");
    for code in ExitCode::ALL {
        // Hyphens as roff wants them; no meaning starts a line with a dot or quote.
        let meaning = code.meaning().replace('\\', "\\e").replace('-', "\\-");
        roff.push_str(&format!(".TP\n\\fB{}\\fR\n{meaning}\n", code.code()));
    }
    roff
}
