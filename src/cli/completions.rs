use clap::CommandFactory;

use super::Exit;
use super::args::{Cli, CompletionsArgs};

pub fn completions(args: &CompletionsArgs) -> anyhow::Result<Exit> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "rollout", &mut std::io::stdout());
    Ok(Exit::Success)
}
