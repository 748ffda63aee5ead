//! `meetinity-auth-server`: the Meetinity Auth HTTP server.
//!
//! Run with `cargo run -p meetinity-auth-server` (port 5001, SQLite file
//! `meetinity.db` in the working directory, in-process cache).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use meetinity_auth::service::Backend;
use meetinity_auth::Config;
use meetinity_auth_server::{bind, build_api, serve, shutdown_signal};

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
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
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
    serve(listener, api, config.request_timeout, shutdown_signal()).await
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
