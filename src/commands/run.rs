//! `berth run`: create and start a container; wait for it and exit with its status unless
//! `--detach`.

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub create: super::create::CreateArgs,
    /// Return once the container runs instead of waiting for it
    #[arg(short, long)]
    pub detach: bool,
}

pub fn run(global: &Global, args: Args) -> super::Result {
    let detach = args.detach;
    let code = super::sealed(berth::container::run(
        &global.root,
        &args.create.options(global)?,
        detach,
    ))?;
    Ok(code.clamp(0, 255) as u8)
}
