//! `captrace record -- CMD...`
use anyhow::Context as _;

use crate::{
    cli::RecordArgs,
    launch::{self, Spec},
    minimize, report,
    session::{Session, Wait},
};

pub fn run(args: RecordArgs) -> anyhow::Result<u8> {
    // Everything that can be checked is checked before anything starts.
    launch::resolve(&args.command[0])?;
    if let Some(out) = &args.output {
        let dir = out
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        anyhow::ensure!(
            dir.is_dir(),
            "cannot write profile {}: directory {} does not exist",
            out.display(),
            dir.display()
        );
    }

    let mut session = Session::new()?;
    let spec = Spec {
        argv: args.command.clone(),
        ..Default::default()
    };
    let run = session.run(
        &spec,
        Wait {
            follow_daemons: !args.no_follow_daemons,
            deadline: None,
        },
        &mut |_| {},
    )?;
    let mut profile = session.profile(&run, &args.command)?;
    if args.minimize {
        minimize::minimize(
            &mut session,
            &spec,
            &run,
            args.setup.as_deref(),
            &mut profile,
        )?;
    }

    if args.json {
        eprintln!("{}", profile.to_json());
    } else {
        eprint!("{}", report::render(&profile));
    }
    if let Some(out) = &args.output {
        profile
            .write(out)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok((run.exit_status & 0xff) as u8)
}
