//! `meetinity-auth-server`: the Meetinity Auth HTTP server.
//!
//! Run with `cargo run -p meetinity-auth-server` (port 5001, SQLite file
//! `meetinity.db` in the working directory, in-process cache).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use meetinity_auth::service::Backend;
use meetinity_auth::Config;
use meetinity_auth_server::{bind, build_api, serve, shutdown_signal};

mod cli;

/// Meetinity Auth: sign-in, sessions and user profiles over HTTP.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending database migrations, or revert the newest with `down`.
    Migrate {
        /// `down` reverts the newest applied migration.
        #[arg(value_parser = ["up", "down"], default_value = "up")]
        direction: String,
    },
    /// Delete what is due: erased accounts past `ACCOUNT_RETENTION_DAYS` and
    /// audit events past `AUDIT_RETENTION_DAYS` (run it daily, e.g. from cron,
    /// or set `PURGE_INTERVAL_SECS` for `serve` to do it).
    Purge,
    /// Copy the SQLite database to FILE while the server runs (an online,
    /// consistent backup). For PostgreSQL use pg_dump (see the README).
    Backup {
        /// Where to write the copy (must not exist).
        file: std::path::PathBuf,
    },
    /// Signing keys: `keys generate --alg rs256|es256|eddsa --out FILE`.
    #[command(subcommand)]
    Keys(cli::KeysCommand),
    /// Accounts: `users create-admin --email E`.
    #[command(subcommand)]
    Users(cli::UsersCommand),
    /// The configuration: `config check`.
    #[command(subcommand)]
    Config(cli::ConfigCommand),
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: escape codes garble log files, and
    // formatting them showed in every request's span (benches/README.md).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // These need no (valid) configuration.
    match cli.command {
        Some(Command::Config(cli::ConfigCommand::Check)) => return cli::config_check(),
        Some(Command::Keys(cmd)) => {
            return match cli::keys(cmd) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("meetinity-auth-server: {}", e.message());
                    ExitCode::FAILURE
                }
            }
        }
        _ => {}
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meetinity-auth-server: {}", e.message());
            return ExitCode::from(2);
        }
    };
    init_tracing(&config.log_filter);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => run(config).await,
        Command::Migrate { direction } => migrate(config, direction == "down").await,
        Command::Purge => purge(config).await,
        Command::Backup { file } => backup(config, &file).await,
        Command::Users(cmd) => cli::users(config, cmd).await,
        Command::Keys(_) | Command::Config(_) => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("meetinity-auth-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> meetinity_auth::Result<()> {
    let listener = bind(&config).await?;
    let (api, _) = build_api(&config).await?;
    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        database = %config.database_url.redacted(),
        cache = if config.redis_url.is_some() { "redis" } else { "moka" },
        providers = ?api.service().providers(),
        "meetinity-auth-server listening"
    );
    let purger = config.purge_interval.map(|every| {
        tracing::info!(
            every_secs = every.as_secs(),
            "purging what is due in the background (PURGE_INTERVAL_SECS)"
        );
        meetinity_auth_server::purge::Purger::spawn(
            std::sync::Arc::clone(api.service()),
            std::sync::Arc::new(meetinity_auth::clock::SystemClock),
            every,
        )
    });
    let served = serve(listener, api, config.request_timeout, shutdown_signal()).await;
    if let Some(purger) = purger {
        purger.stop().await;
    }
    served
}

async fn purge(config: Config) -> meetinity_auth::Result<()> {
    use meetinity_auth::clock::{Clock, SystemClock};
    use meetinity_auth::service::UserService;
    let auth = meetinity_auth::service::AuthServiceBuilder::from_config(config)
        .build()
        .await?;
    let report = auth.purge_due(SystemClock.now()).await?;
    println!(
        "purged {} erased account(s) and {} audit event(s)",
        report.users, report.audit_events
    );
    Ok(())
}

async fn backup(config: Config, file: &std::path::Path) -> meetinity_auth::Result<()> {
    let report = meetinity_auth_server::backup::backup(&config, file).await?;
    println!(
        "backed up {} user(s) and {} session(s) to {} ({} bytes)",
        report.users,
        report.sessions,
        report.path.display(),
        report.bytes
    );
    Ok(())
}

async fn migrate(config: Config, down: bool) -> meetinity_auth::Result<()> {
    let (_, backend) = meetinity_auth::service::AuthServiceBuilder::from_config(config)
        .migrate(!down)
        .build_with_backend()
        .await?;
    let reverted = match (&backend, down) {
        (_, false) => {
            println!("migrations applied");
            return Ok(());
        }
        (Backend::Sqlite(s), true) => s.undo_last_migration().await?,
        (Backend::Postgres(s), true) => s.undo_last_migration().await?,
        (_, true) => None,
    };
    match reverted {
        Some(v) => println!("reverted migration {v}"),
        None => println!("no migration to revert"),
    }
    Ok(())
}
