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
        /// Train on exactly this Kaggle-format CSV with a Survived column (it is also
        /// appended to the offline history). Default: every passenger labelled in the
        /// offline store, with the features it had at --as-of.
        #[arg(long, conflicts_with = "as_of")]
        data: Option<PathBuf>,
        /// Read the training set as of this time (RFC 3339, e.g. 2026-11-26T12:00:00Z):
        /// no label or feature value with a later event time is used. Default: now.
        #[arg(long)]
        as_of: Option<String>,
        /// Make the new version the served one (alias `production`).
        #[arg(long)]
        promote: bool,
    },
    /// Copy the latest offline feature values into the online store (Redis when configured).
    Materialize {
        /// Every entity, instead of those written since the last run.
        #[arg(long)]
        full: bool,
        /// One feature view (default: the views of the production model's feature service).
        #[arg(long)]
        view: Option<String>,
        /// Version of --view (default: its latest).
        #[arg(long, requires = "view")]
        version: Option<i64>,
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
        Command::Train {
            data,
            as_of,
            promote,
        } => {
            let source = match (&data, as_of) {
                (Some(path), _) => app::TrainingData::File(path),
                (None, Some(text)) => app::TrainingData::AsOf(
                    titanic::core::time::parse_rfc3339(&text)
                        .map_err(|e| anyhow::anyhow!("--as-of: {e}"))?,
                ),
                (None, None) => app::TrainingData::Latest,
            };
            let stores = app::Stores::open(settings).await?;
            let trained = app::train_model(settings, &stores, source, promote).await?;
            print!("{}", app::training_report(&trained));
            Ok(())
        }
        Command::Materialize {
            full,
            view,
            version,
        } => {
            let mode = if full {
                titanic::feature_store::materialize::Mode::Full
            } else {
                titanic::feature_store::materialize::Mode::Incremental
            };
            let target = view.as_deref().map(|v| (v, version));
            for r in app::materialize_command(settings, target, mode).await? {
                println!(
                    "{}@{}: {:?}, {} entities in {} chunks, watermark {}",
                    r.view, r.version, r.mode, r.entities, r.chunks, r.watermark
                );
            }
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
