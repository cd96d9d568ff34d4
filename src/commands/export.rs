//! `memwarden export`: tidy tables for pandas and polars users.

use super::own_work;
use super::EXIT_OK;
use crate::cli::{ExportArgs, Format, Table};
use crate::frames::prelude::*;
use crate::recording::columns as col;
use crate::recording::Recording;
use anyhow::Context;
use std::io::{IsTerminal, Write};

pub fn export(args: ExportArgs) -> anyhow::Result<u8> {
    let recording = Recording::open(&args.run_dir)?;
    let mut df = match args.table {
        Table::Samples => recording.samples()?,
        Table::System => recording.system()?,
        Table::Events => recording.events_frame()?,
        Table::Trials => recording.trials_frame()?,
        Table::Smaps => recording.smaps()?,
        Table::Sites => recording.sites_frame()?,
        Table::Cgroups => recording.cgroups()?,
    };
    add_seconds(&mut df, col::T_NS, "t", 0)?;
    add_seconds(&mut df, col::START_NS, "start", 2)?;
    add_seconds(&mut df, col::END_NS, "end", 3)?;
    let stats = recording.stats.get();
    if let Some(skipped) = stats.describe() {
        eprintln!("memwarden: note: {skipped}");
    }
    if recording.events_cut_short() {
        eprintln!("memwarden: note: the run is marked finished but its events.log ends before the run's stop: it was cut short");
    }
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            own_work(
                write(&mut df, args.format, file)
                    .with_context(|| format!("cannot write {}", path.display())),
            )?;
        }
        None => {
            let stdout = std::io::stdout();
            if args.format == Format::Parquet && stdout.is_terminal() {
                anyhow::bail!("Parquet is binary: give --output FILE or redirect standard output");
            }
            let mut pipe = PipeWriter {
                inner: stdout.lock(),
                broken: false,
            };
            let result = write(&mut df, args.format, &mut pipe);
            if !pipe.broken {
                result?;
            }
        }
    }
    Ok(EXIT_OK)
}

/// Inserts `name` (seconds since the run started, float) computed from the `ns` column.
fn add_seconds(df: &mut DataFrame, ns: &str, name: &str, at: usize) -> anyhow::Result<()> {
    let Ok(column) = df.column(ns) else {
        return Ok(());
    };
    let seconds: Vec<Option<f64>> = column
        .u64()?
        .iter()
        .map(|v| v.map(|ns| ns as f64 / 1e9))
        .collect();
    df.insert_column(at.min(df.width()), Column::new(name.into(), seconds))?;
    Ok(())
}

fn write(df: &mut DataFrame, format: Format, out: impl Write) -> anyhow::Result<()> {
    match format {
        Format::Csv => CsvWriter::new(out).finish(df)?,
        Format::Parquet => {
            ParquetWriter::new(out)
                .with_compression(ParquetCompression::Zstd(None))
                .finish(df)?;
        }
    }
    Ok(())
}

/// A reader that went away (`| head`) is not an error: stop writing quietly.
struct PipeWriter<W> {
    inner: W,
    broken: bool,
}

impl<W: Write> Write for PipeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.broken {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.broken = true;
                Ok(buf.len())
            }
            other => other,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.inner.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}
