//! `memwarden publish` and `memwarden fleet`.

use super::analyze::print;
use super::EXIT_OK;
use crate::cli::{FleetArgs, PublishArgs};
use crate::console::say;
use crate::fleet::{publish as publish_run, query, report, terminal};

pub fn publish(args: PublishArgs) -> anyhow::Result<u8> {
    let published = publish_run(&args.run_dir, &args.dest)?;
    if published.already {
        say(format!(
            "already published (the same run; nothing written): {}",
            published.run_path.display()
        ));
    } else {
        let rows: Vec<String> = published
            .rows
            .iter()
            .map(|(table, n)| format!("{table} {n}"))
            .collect();
        say(format!("published: {}", rows.join(", ")));
    }
    if let Some(note) = &published.note {
        say(format!("note: {note}"));
    }
    print(&format!("{}\n", published.run_path.display()))?;
    Ok(EXIT_OK)
}

pub fn fleet(args: FleetArgs) -> anyhow::Result<u8> {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let since_ns = args
        .since
        .map(|d| now_ns.saturating_sub(d.as_nanos() as u64));
    let answers = query::answer(&args.dest, since_ns)?;
    if args.json {
        print(&(serde_json::to_string_pretty(&answers)? + "\n"))?;
    } else {
        print(&terminal::text(&answers))?;
    }
    if let Some(dir) = &args.report {
        let path = report::write(&answers, dir)?;
        say(format!("report: {}", path.display()));
    }
    Ok(EXIT_OK)
}
