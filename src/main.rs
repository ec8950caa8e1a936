//! The `herald` command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use herald::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    if matches!(args.command, cli::Command::HashPassword) {
        // Needs no configuration (it is how a part of it is made).
        return match cli::hash_password() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let cli::Command::Doctor(doctor) = args.command {
        let config = Config::load();
        if let Ok(c) = &config {
            herald::telemetry::init(c.log_format, "error");
        }
        return cli::doctor(doctor, config).await;
    }
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            for line in &e.0 {
                eprintln!("error: {line}");
            }
            return ExitCode::from(2);
        }
    };
    let level = args.command.log_level().unwrap_or(&config.log_level).to_owned();
    herald::telemetry::init(config.log_format, &level);
    if let Some(country) = &config.default_country {
        if let Err(e) = herald::domain::set_default_country(country) {
            eprintln!("error: DEFAULT_COUNTRY: {e}");
            return ExitCode::from(2);
        }
    }
    match cli::run(args.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
