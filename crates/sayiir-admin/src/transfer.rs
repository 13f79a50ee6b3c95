//! `export` and `import`: a whole store streamed into a portable file and loaded into any
//! backend. The file format is `sayiir_persistence::export_file` (JSON lines, versioned);
//! one workflow is in memory at a time, whatever the size of the store.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sayiir_persistence::export_file::{self, Header, Line, Summary};
use sayiir_persistence::listing::MAX_PAGE;
use sayiir_persistence::{BackendError, ImportOutcome, ListRequest, WorkflowRecord};

use crate::commands::{Failure, spinner};
use crate::store::Store;

/// Standard input or output instead of a file.
const STDIO: &str = "-";

/// `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The file to write (`-`: standard output). Written as FILE.partial and renamed when
    /// complete, so FILE is never a cut-short export.
    file: String,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
    /// Leave out the workflows whose stored snapshot cannot be decoded (they are listed on
    /// stderr) instead of stopping at the first.
    #[arg(long)]
    skip_unreadable: bool,
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export file to load (`-`: standard input).
    file: String,
}

/// A failure to read or write `path`.
fn file_error(what: &str, path: &str, error: &std::io::Error) -> Failure {
    Failure::File(format!("cannot {what} {path}: {error}"))
}

/// Checks the export arguments before the store is opened.
pub fn check_export(args: &ExportArgs) -> Result<(), Failure> {
    if args.file != STDIO && !args.force && Path::new(&args.file).exists() {
        return Err(Failure::Usage(format!(
            "{} exists; choose another file or pass --force to replace it",
            args.file
        )));
    }
    Ok(())
}

/// Checks the import arguments before the store is opened.
pub fn check_import(args: &ImportArgs) -> Result<(), Failure> {
    if args.file != STDIO && !Path::new(&args.file).is_file() {
        return Err(Failure::Usage(format!("no export file at {}", args.file)));
    }
    Ok(())
}

/// Writes every workflow of `store`, then every instance that only has buffered events,
/// then the end line.
async fn write_all(
    store: &Store,
    out: &mut dyn Write,
    progress: &ProgressBar,
    skip_unreadable: bool,
    skipped: &mut Vec<String>,
) -> Result<Summary, Failure> {
    // A snapshot that does not decode: left out and listed, or the end of the export.
    let mut read = async |id: &str| -> Result<Option<WorkflowRecord>, Failure> {
        match store.export(id).await {
            Ok(record) => Ok(record),
            Err(BackendError::Serialization(message)) if skip_unreadable => {
                progress.println(format!("left out: {message}"));
                skipped.push(id.to_string());
                Ok(None)
            }
            Err(BackendError::Serialization(message)) => {
                Err(Failure::Store(BackendError::Serialization(format!(
                    "{message}; pass --skip-unreadable to export the other workflows and list \
                     the ones left out"
                ))))
            }
            Err(other) => Err(Failure::Store(other)),
        }
    };
    let write = |out: &mut dyn Write, line: String| {
        writeln!(out, "{line}").map_err(|e| file_error("write", "the export", &e))
    };
    write(out, export_file::encode_header(&Header::now(store.system_name()))?)?;
    let mut summary = Summary::default();
    let mut emit = |out: &mut dyn Write, record: &WorkflowRecord| -> Result<(), Failure> {
        write(out, export_file::encode_record(record)?)?;
        summary.count(record);
        progress.set_message(format!(
            "{} workflows, {} unstarted queues exported",
            summary.workflows, summary.unstarted_queues
        ));
        Ok(())
    };
    let mut request = ListRequest::default().limit(MAX_PAGE);
    loop {
        let page = store.list(&request).await?;
        for listed in &page.workflows {
            // Deleted since the page was read: nothing to carry.
            if let Some(record) = read(&listed.instance_id).await? {
                emit(out, &record)?;
            }
        }
        match page.next {
            Some(next) => request = request.after(next),
            None => break,
        }
    }
    let mut cursor: Option<String> = None;
    loop {
        let page = store.unstarted(cursor.as_deref(), MAX_PAGE).await?;
        for id in &page.instance_ids {
            // Only records without a snapshot: a workflow started meanwhile was either
            // listed above or started after the export began.
            if let Some(record) = read(id).await?.filter(|r| r.snapshot.is_none()) {
                emit(out, &record)?;
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    write(out, export_file::encode_end(&summary)?)?;
    out.flush().map_err(|e| file_error("write", "the export", &e))?;
    Ok(summary)
}

/// `export`: the whole store into `args.file`.
pub async fn export(store: &Store, args: ExportArgs) -> Result<(), Failure> {
    let progress = spinner();
    let mut skipped = Vec::new();
    let outcome = if args.file == STDIO {
        let mut out = BufWriter::new(std::io::stdout().lock());
        write_all(store, &mut out, &progress, args.skip_unreadable, &mut skipped).await
    } else {
        let partial = PathBuf::from(format!("{}.partial", args.file));
        let written = async {
            let file = File::create(&partial)
                .map_err(|e| file_error("create", &partial.display().to_string(), &e))?;
            let mut out = BufWriter::new(file);
            let summary =
                write_all(store, &mut out, &progress, args.skip_unreadable, &mut skipped).await?;
            let file = out.into_inner().map_err(|e| file_error("write", &args.file, e.error()))?;
            file.sync_all().map_err(|e| file_error("write", &args.file, &e))?;
            std::fs::rename(&partial, &args.file)
                .map_err(|e| file_error("rename the finished export to", &args.file, &e))?;
            Ok(summary)
        }
        .await;
        if written.is_err() {
            // A cut-short file is of no use: leave nothing behind.
            let _ = std::fs::remove_file(&partial);
        }
        written
    };
    progress.finish_and_clear();
    let summary = outcome?;
    let message = format!(
        "exported {} workflow(s) and {} unstarted event queue(s) ({} buffered events) from the \
         {} store{}",
        summary.workflows,
        summary.unstarted_queues,
        summary.events,
        store.backend_name(),
        if args.file == STDIO { String::new() } else { format!(" to {}", args.file) },
    );
    // Standard output carries the export itself when the file is `-`.
    if args.file == STDIO {
        eprintln!("{message}");
    } else {
        say!("{message}");
    }
    if !skipped.is_empty() {
        eprintln!(
            "left out {} workflow(s) whose snapshot cannot be decoded: {}",
            skipped.len(),
            skipped.join(", ")
        );
    }
    Ok(())
}

/// What an import did so far.
#[derive(Debug, Default)]
struct Imported {
    seen: Summary,
    imported: u64,
    skipped: u64,
}

/// Reads `input` line by line and imports each record.
async fn read_all(
    store: &Store,
    input: &mut dyn BufRead,
    progress: &ProgressBar,
    done: &mut Imported,
) -> Result<(), Failure> {
    let mut text = String::new();
    let mut number = 0_u64;
    let mut end: Option<Summary> = None;
    loop {
        text.clear();
        let read = input.read_line(&mut text).map_err(|e| file_error("read", "the export", &e))?;
        if read == 0 {
            break;
        }
        number += 1;
        progress.inc(read as u64);
        let line = text.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            continue;
        }
        if end.is_some() {
            return Err(Failure::File(format!(
                "line {number} follows the end line; the file is not one export"
            )));
        }
        let decoded = match export_file::decode_line(number, line) {
            Ok(decoded) => decoded,
            // The last line, without its newline: the writer stopped in the middle of it.
            Err(_) if !text.ends_with('\n') => {
                return Err(Failure::File(format!(
                    "line {number} ends the file in the middle of a record: the export was cut \
                     short"
                )));
            }
            Err(error) => return Err(Failure::File(error.to_string())),
        };
        match decoded {
            Line::Header(_) if number == 1 => {}
            Line::Header(_) => {
                return Err(Failure::File(format!("line {number} is a second header")));
            }
            _ if number == 1 => {
                return Err(Failure::File(
                    "line 1 is not the header of a Sayiir export; is this file an export?".into(),
                ));
            }
            Line::Workflow(record) => {
                // Checked here, so that a bad record reads as a problem of the file, not of
                // the store.
                record.check().map_err(|error| Failure::File(format!("line {number}: {error}")))?;
                done.seen.count(&record);
                match store.import(&record).await? {
                    ImportOutcome::Imported => done.imported += 1,
                    ImportOutcome::AlreadyStored => done.skipped += 1,
                }
                progress.set_message(format!(
                    "{} imported, {} already stored",
                    done.imported, done.skipped
                ));
            }
            Line::End(summary) => end = Some(summary),
            _ => return Err(Failure::File(format!("line {number} is of an unknown kind"))),
        }
    }
    match end {
        None if number == 0 => Err(Failure::File("the file is empty".into())),
        None => {
            Err(Failure::File("the file ends before its end line: the export was cut short".into()))
        }
        Some(end) if end != done.seen => Err(Failure::File(format!(
            "the end line counts {} workflows, {} unstarted queues and {} events, the file holds \
             {}, {} and {}: lines are missing",
            end.workflows,
            end.unstarted_queues,
            end.events,
            done.seen.workflows,
            done.seen.unstarted_queues,
            done.seen.events
        ))),
        Some(_) => Ok(()),
    }
}

/// `import`: every record of `args.file` into the store.
pub async fn import(store: &Store, args: ImportArgs) -> Result<(), Failure> {
    let mut done = Imported::default();
    let (progress, outcome) = if args.file == STDIO {
        let progress = spinner();
        let mut input = std::io::stdin().lock();
        let outcome = read_all(store, &mut input, &progress, &mut done).await;
        (progress, outcome)
    } else {
        let file = File::open(&args.file).map_err(|e| file_error("open", &args.file, &e))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let progress = ProgressBar::new(size);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {msg} ({eta} left)")
        {
            progress.set_style(style);
        }
        let mut input = BufReader::new(file);
        let outcome = read_all(store, &mut input, &progress, &mut done).await;
        (progress, outcome)
    };
    progress.finish_and_clear();
    if let Err(failure) = outcome {
        let advice = match failure {
            Failure::File(_) => "import a complete export to finish",
            _ => "run the same import again to continue",
        };
        eprintln!(
            "{} record(s) were imported before the failure; {advice}: records already stored \
             are skipped",
            done.imported
        );
        return Err(failure);
    }
    say!(
        "imported {} record(s) into the {} store ({} workflows, {} unstarted event queues, {} \
         buffered events in the file); {} already stored, left as they were",
        done.imported,
        store.backend_name(),
        done.seen.workflows,
        done.seen.unstarted_queues,
        done.seen.events,
        done.skipped
    );
    Ok(())
}
