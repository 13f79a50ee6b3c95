#![deny(missing_docs)]
//! `sayiir-admin`: look into a sayiir-persistence store and keep it healthy from the command
//! line. See the README for a walk-through.

/// Prints a line on stdout. A closed stdout (`sayiir-admin list | head`) is not an error of
/// the command: the line is dropped instead of panicking as `println!` would.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod commands;
mod store;
mod transfer;
mod when;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::store::Target;

/// Exit status of a command that ran and failed (the store refused it or could not be reached).
const FAILED: u8 = 1;
/// Exit status when the instance asked for does not exist.
const NOT_FOUND: u8 = 3;

/// Operate a sayiir-persistence store: list, inspect, cancel, pause, resume and prune
/// workflows, export a store and import it into another backend, and bring a schema up to
/// date.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    /// The store: sqlite:PATH, postgres://…, redis://… or rediss://…
    #[arg(long, env = "SAYIIR_STORE_URL", global = true)]
    url: Option<String>,
    /// PostgreSQL schema holding the tables (default: sayiir).
    #[arg(long, global = true)]
    schema: Option<String>,
    /// Redis key prefix (default: sayiir).
    #[arg(long, global = true)]
    key_prefix: Option<String>,
    /// Redis: the URL names nodes of a Redis Cluster (several comma-separated:
    /// redis://a:6379,redis://b:6379).
    #[arg(long, global = true)]
    cluster: bool,
    /// Redis: the store's index shards, as the library's RedisOptions::index_shards (default:
    /// 16 on a cluster, else the single-node layout).
    #[arg(long, global = true)]
    index_shards: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "Examples:
  sayiir-admin --url sqlite:./workflows.db list --status Failed
  sayiir-admin --url postgres://app@db/prod --schema jobs show order-42
  sayiir-admin --url redis://127.0.0.1:6379 cancel order-42 --reason \"customer left\"
  sayiir-admin --url sqlite:./workflows.db prune --before 30d
  sayiir-admin --url sqlite:./workflows.db export store.jsonl
  sayiir-admin --url postgres://app@db/prod import store.jsonl
  sayiir-admin --url redis://10.0.0.1:6379,redis://10.0.0.2:6379 --cluster stats
  SAYIIR_STORE_URL=postgres://app@db/prod sayiir-admin migrate

Exit status: 0 done, 1 the store refused or could not be reached or a file is not a complete
export, 2 bad arguments, 3 no such workflow.";

#[derive(Debug, Subcommand)]
enum Command {
    /// List workflows, newest first.
    List(commands::ListArgs),
    /// Show one workflow: state, position, results, pending requests.
    Show(commands::ShowArgs),
    /// Ask a workflow to stop; the runtime applies it at its next task boundary.
    Cancel(commands::RequestArgs),
    /// Ask a workflow to pause; the runtime applies it at its next task boundary.
    Pause(commands::RequestArgs),
    /// Resume a paused workflow.
    Resume(commands::ResumeArgs),
    /// Count workflows per status, tasks ready for a worker and live claims.
    Stats(commands::StatsArgs),
    /// Remove finished workflows (Completed, Failed, Cancelled) older than a cut-off.
    Prune(commands::PruneArgs),
    /// Write every workflow (snapshot, results, pending requests, buffered events) into a
    /// portable file; stop the workers first for a complete copy.
    Export(transfer::ExportArgs),
    /// Load an export file into this store (of any backend); instances it already holds are
    /// skipped, so an interrupted import can be run again.
    Import(transfer::ImportArgs),
    /// Bring the store's schema up to date without starting workers.
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(url) = cli.url.clone() else {
        eprintln!("error: no store given; pass --url <URL> or set SAYIIR_STORE_URL");
        return ExitCode::from(2);
    };
    let target = Target {
        url,
        schema: cli.schema.clone(),
        key_prefix: cli.key_prefix.clone(),
        cluster: cli.cluster,
        index_shards: cli.index_shards,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(FAILED);
        }
    };
    match runtime.block_on(commands::run(&target, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(commands::Failure::NotFound(what)) => {
            eprintln!("error: {what}");
            ExitCode::from(NOT_FOUND)
        }
        Err(commands::Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(commands::Failure::Store(error)) => {
            eprintln!("error: {error}");
            ExitCode::from(FAILED)
        }
        Err(commands::Failure::File(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(FAILED)
        }
    }
}
