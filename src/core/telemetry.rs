//! Tracing: JSON lines when the log stream is not a terminal (or when asked), readable text
//! otherwise. `serve` logs to stdout; the other commands log to stderr so that their stdout
//! carries only their result (a token, a metrics report).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::core::config::{LogFormat, LogSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// Installs the global subscriber once; later calls are no-ops (tests may call it freely).
/// `RUST_LOG` overrides the configured level.
pub fn init(settings: &LogSettings, stream: LogStream) {
    match stream {
        LogStream::Stdout => install(settings, std::io::stdout().is_terminal(), std::io::stdout),
        LogStream::Stderr => install(settings, std::io::stderr().is_terminal(), std::io::stderr),
    }
}

fn install<W>(settings: &LogSettings, terminal: bool, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match settings.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !terminal,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_ansi(terminal).try_init()
    };
}
