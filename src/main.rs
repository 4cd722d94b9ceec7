//! `titanic`: the command line. Parses arguments and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use titanic::core::config::Settings;
use titanic::core::telemetry::{self, LogStream};
use titanic::ml::lifecycle::{self, Stores, TrainingData};
use titanic::{app, cli, service};

/// mimalloc instead of glibc's malloc: cheaper allocation under load, and freed memory goes
/// back instead of staying in per-thread arenas. `no_thp`: huge pages on its arena held far
/// more memory than was touched.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Instead of training a new version: rebuild this version's training set from what
        /// it recorded, check its hash, train again with its parameters and seed, and report
        /// whether the coefficients match (exit status 1 when anything differs).
        #[arg(long, value_name = "VERSION", conflicts_with_all = ["data", "as_of", "promote"])]
        reproduce: Option<String>,
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
    /// Historical retrieval: each row of an entity table with its features as of its own time.
    Historical {
        /// A CSV with the join key's column (`passenger_id`) and `event_timestamp` (RFC 3339);
        /// other columns are carried through. Streamed: any size.
        #[arg(long)]
        entities: PathBuf,
        /// Where to write the rows, each followed by one column per feature.
        #[arg(long)]
        output: PathBuf,
        /// The feature service whose features to read, `name` or `name@version` (default: the
        /// latest titanic_survival).
        #[arg(long)]
        feature_service: Option<String>,
        /// Only rows written at or before this time (RFC 3339): the same call then always
        /// gives the same file.
        #[arg(long)]
        created_as_of: Option<String>,
    },
    /// Model versions and aliases: list, promote, roll back, history.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Print a signed JWT (and nothing else) for the configured secret.
    Token {
        /// Subject: who the token is for.
        #[arg(long)]
        sub: String,
        /// Comma-separated scopes: predict, features:write, models:write, feedback:write.
        /// Without any, the token only reads (GET routes, the /monitoring page).
        #[arg(long, default_value = "")]
        scopes: String,
        /// Lifetime in seconds (default: auth.default_token_ttl_secs).
        #[arg(long)]
        ttl: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Every version with its metrics and aliases.
    List,
    /// Point an alias (default: production) at a version, after checking it can be served.
    Promote {
        version: String,
        #[arg(long, default_value = "production")]
        alias: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Move an alias (default: production) back to the version it held before.
    Rollback {
        #[arg(long, default_value = "production")]
        alias: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Who moved which alias to which version, when (all aliases, or one).
    History {
        #[arg(long)]
        alias: Option<String>,
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
            reproduce: Some(version),
            ..
        } => {
            let stores = Stores::open(settings).await?;
            let r = lifecycle::reproduce(&stores, &version).await?;
            println!("model version:   {}", r.version);
            let source = serde_json::to_string(&r.source).unwrap_or_default();
            println!("training set:    {} rows from {source}", r.rows);
            println!("recorded hash:   {}", r.recorded_hash);
            println!("rebuilt hash:    {}", r.data_hash);
            println!("max coefficient difference: {:e}", r.max_difference);
            if r.identical() {
                println!("reproduced: the same training set and the same coefficients");
                Ok(())
            } else {
                anyhow::bail!("version {version} was not reproduced (see the differences above)")
            }
        }
        Command::Train {
            data,
            as_of,
            promote,
            reproduce: None,
        } => {
            let source = match (data, as_of) {
                (Some(path), _) => TrainingData::File(path),
                (None, Some(text)) => TrainingData::AsOf(
                    titanic::core::time::parse_rfc3339(&text)
                        .map_err(|e| anyhow::anyhow!("--as-of: {e}"))?,
                ),
                (None, None) => TrainingData::Latest,
            };
            let stores = Stores::open(settings).await?;
            let actor = cli::cli_actor();
            let trained =
                lifecycle::train_model_by(settings, &stores, &source, &actor, promote).await?;
            print!("{}", cli::training_report(&trained));
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
            for r in service::batch::materialize_command(settings, target, mode).await? {
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
            let rows =
                service::batch::predict_file(settings, &input, &output, model.as_deref()).await?;
            eprintln!("wrote {rows} predictions to {}", output.display());
            Ok(())
        }
        Command::Historical {
            entities,
            output,
            feature_service,
            created_as_of,
        } => {
            let created_as_of = created_as_of
                .as_deref()
                .map(titanic::core::time::parse_rfc3339)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--created-as-of: {e}"))?;
            let stores = Stores::open(settings).await?;
            let rows = service::batch::historical_file(
                &stores,
                &entities,
                &output,
                feature_service.as_deref(),
                created_as_of,
            )
            .await?;
            eprintln!("wrote {rows} rows to {}", output.display());
            Ok(())
        }
        Command::Models { command } => {
            let stores = Stores::open(settings).await?;
            let out = match command {
                ModelsCommand::List => cli::models_list(&stores).await?,
                ModelsCommand::Promote {
                    version,
                    alias,
                    reason,
                } => cli::models_promote(&stores, &alias, &version, &reason).await?,
                ModelsCommand::Rollback { alias, reason } => {
                    cli::models_rollback(&stores, &alias, &reason).await?
                }
                ModelsCommand::History { alias } => {
                    cli::models_history(&stores, alias.as_deref()).await?
                }
            };
            print!("{out}");
            Ok(())
        }
        Command::Token { sub, scopes, ttl } => {
            println!("{}", cli::mint_token(settings, &sub, &scopes, ttl)?);
            Ok(())
        }
    }
}
