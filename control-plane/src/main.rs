//! `alfred` — the control-plane binary.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use alfred_control_plane::cli::{self, Cli};
use alfred_control_plane::config::Config;
use clap::Parser as _;
use tracing_subscriber::EnvFilter;

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // `.env` is optional; a malformed one is reported like any bad variable.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("error: cannot read .env: {e}");
            return ExitCode::from(2);
        }
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            for (var, why) in &err.problems {
                eprintln!("error: {var}: {why}");
            }
            return ExitCode::from(2);
        }
    };
    let default_level = if config.debug { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    match cli::run(cli, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(cli::CliError::Config(err)) => {
            for (var, why) in &err.problems {
                eprintln!("error: {var}: {why}");
            }
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
