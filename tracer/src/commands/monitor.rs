//! `captrace monitor`: host-wide, per container.
use std::{
    io::{IsTerminal as _, Write as _},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;

use crate::{
    capability::Cap,
    cli::MonitorArgs,
    container::container_cgroup,
    error::UsageError,
    escape, metrics,
    monitor::{self, Filter, Monitor},
    output,
    stop::{self, Stop},
};

pub fn run(args: MonitorArgs) -> anyhow::Result<u8> {
    let caps = args
        .cap
        .iter()
        .map(|c| Cap::parse(c).map_err(|e| UsageError(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut cgroups = Vec::new();
    for c in &args.container {
        cgroups.push(container_cgroup(c)?.0);
    }
    let listener = match &args.metrics {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr)
                .with_context(|| format!("--metrics {addr}: cannot listen"))?;
            l.set_nonblocking(true)?;
            Some(l)
        }
        None => None,
    };
    let json = args.json || !std::io::stdout().is_terminal();
    let mut mon = Monitor::start(
        cgroups,
        Filter {
            caps,
            unique: args.unique,
        },
        args.hook.hook,
    )?;
    // Loading takes a moment and the table only comes after the first refresh: a person at a
    // terminal is told when the programs are in place (never a pipe, never with --json).
    if !args.json && std::io::stderr().is_terminal() {
        let what = if args.container.is_empty() {
            "the host".to_string()
        } else {
            args.container
                .iter()
                .map(|c| escape::printable(c).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        output::note(format_args!("attached, watching {what}"));
    }
    if !mon.knows_runtimes() {
        output::note(
            "no container runtime binary found (runc, crun, conmon, ...): the checks of a runtime's init count as its container's",
        );
    }
    stop::block_on(watch(&mut mon, &args, json, listener))??;
    mon.refresh()?;
    if args.summary {
        let mut out = std::io::stdout().lock();
        for s in monitor::summarize(&mut mon) {
            if json {
                let mut v = serde_json::to_value(&s)?;
                v["type"] = "summary".into();
                writeln!(out, "{v}")?;
            } else {
                for line in monitor::summary_lines(&s) {
                    writeln!(out, "{line}")?;
                }
            }
        }
    }
    for line in mon.losses().lines() {
        output::note(format_args!("{line}"));
    }
    Ok(0)
}

async fn watch(
    mon: &mut Monitor,
    args: &MonitorArgs,
    json: bool,
    listener: Option<std::net::TcpListener>,
) -> anyhow::Result<()> {
    let text = Arc::new(Mutex::new(String::new()));
    let _server = match listener {
        Some(l) => Some(tokio::spawn(metrics::serve(
            tokio::net::TcpListener::from_std(l)?,
            text.clone(),
        ))),
        None => None,
    };
    let mut stop_on = Stop::new(Duration::from_millis(200))?
        .until(args.duration.map(|s| Duration::from_secs_f64(s.max(0.0))));
    let mut ticks = 0u64;
    loop {
        let stop = stop_on.next().await.stops();
        let lines = mon.poll();
        if json {
            let mut out = std::io::stdout().lock();
            for line in &lines {
                writeln!(out, "{}", escape::json(serde_json::to_string(line)?))?;
            }
            out.flush()?;
        }
        ticks += 1;
        if stop || ticks.is_multiple_of(5) {
            mon.refresh()?;
            let who = mon.attributions();
            if let Ok(mut t) = text.lock() {
                *t = metrics::render(&mon.stats, &who, mon.losses());
            }
            if !json {
                // Clear the screen and redraw.
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "\x1b[2J\x1b[H{}",
                    monitor::render_table(&mon.stats, &who, mon.losses())
                )?;
                out.flush()?;
            }
        }
        if stop {
            return Ok(());
        }
    }
}
