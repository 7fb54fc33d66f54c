//! What is generated from the definitions: shell completions and man pages from clap's, the
//! plan's JSON Schema from the plan module's.

use clap::CommandFactory;

use super::Exit;
use super::args::{Cli, CompletionsArgs, ManArgs};

pub fn completions(args: &CompletionsArgs) -> anyhow::Result<Exit> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "rollout", &mut std::io::stdout());
    Ok(Exit::Success)
}

pub fn schema() -> anyhow::Result<Exit> {
    let schema = rollout::plan::schema::schema();
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(Exit::Success)
}

/// One page for `rollout` and one per subcommand (`rollout-run.1`), as clap_mangen renders them.
pub fn man(args: &ManArgs) -> anyhow::Result<Exit> {
    std::fs::create_dir_all(&args.dir)?;
    let mut command = Cli::command();
    // Built, so that each subcommand carries the version and the global options.
    command.build();
    write_page(&args.dir, "rollout", command.clone())?;
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("rollout-{}", sub.get_name());
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("rollout {}", sub.get_name()));
        write_page(&args.dir, &name, page)?;
    }
    Ok(Exit::Success)
}

fn write_page(dir: &std::path::Path, name: &str, command: clap::Command) -> anyhow::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command).render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.1")), page)?;
    Ok(())
}
