//! The `herald` command line.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use herald::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            for line in &e.0 {
                eprintln!("error: {line}");
            }
            return ExitCode::from(2);
        }
    };
    herald::telemetry::init(config.log_format, &config.log_level);
    match cli::run(args.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
