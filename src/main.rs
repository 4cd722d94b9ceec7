//! `titanic`: the command line. Parses arguments and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use titanic::app;
use titanic::core::config::Settings;
use titanic::core::telemetry::{self, LogStream};

#[derive(Debug, Parser)]
#[command(
    name = "titanic",
    version,
    about = "Titanic survival prediction service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Migrate, bootstrap an empty store (ingest, train, promote), then serve HTTP.
    Serve,
    /// Train with stratified k-fold evaluation and register a model version.
    Train {
        /// A Kaggle-format CSV with a Survived column (ingested first). Default: the
        /// labelled passengers already in the offline store.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Make the new version the served one (alias `production`).
        #[arg(long)]
        promote: bool,
    },
    /// Batch-predict a Kaggle-format CSV into PassengerId,Survived,Probability.
    Predict {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// Model version (default: the production alias).
        #[arg(long)]
        model: Option<String>,
    },
    /// Print a signed JWT (and nothing else) for the configured secret.
    Token {
        /// Subject: who the token is for.
        #[arg(long)]
        sub: String,
        /// Comma-separated scopes: predict, features:write, models:write.
        #[arg(long)]
        scopes: String,
        /// Lifetime in seconds (default: auth.default_token_ttl_secs).
        #[arg(long)]
        ttl: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let stream = match cli.command {
        Command::Serve => LogStream::Stdout,
        _ => LogStream::Stderr,
    };
    telemetry::init(&settings.log, stream);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command, &settings));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "command failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: &Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => app::serve(settings).await,
        Command::Train { data, promote } => {
            let stores = app::Stores::open(settings).await?;
            let trained = app::train_model(settings, &stores, data.as_deref(), promote).await?;
            print!("{}", app::training_report(&trained));
            Ok(())
        }
        Command::Predict {
            input,
            output,
            model,
        } => {
            let rows = app::predict_file(settings, &input, &output, model.as_deref()).await?;
            eprintln!("wrote {rows} predictions to {}", output.display());
            Ok(())
        }
        Command::Token { sub, scopes, ttl } => {
            println!("{}", app::mint_token(settings, &sub, &scopes, ttl)?);
            Ok(())
        }
    }
}
