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

/// Lets through at most one log line a second, counting those it held back in between, so a
/// flood of one kind of event (refused tokens) cannot flood the log.
#[derive(Debug, Default)]
pub struct Throttle {
    /// The second (since the Unix epoch) from which the next line may pass.
    next: std::sync::atomic::AtomicU64,
    held: std::sync::atomic::AtomicU64,
}

impl Throttle {
    /// `Some(lines held back since the last one let through)` when this line may be logged.
    pub fn admit(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = crate::core::time::now_micros().max(0) as u64 / 1_000_000;
        let next = self.next.load(Relaxed);
        if now >= next
            && self
                .next
                .compare_exchange(next, now + 1, Relaxed, Relaxed)
                .is_ok()
        {
            Some(self.held.swap(0, Relaxed))
        } else {
            self.held.fetch_add(1, Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Throttle;

    #[test]
    fn one_line_a_second_with_the_count_of_the_others() {
        let throttle = Throttle::default();
        assert_eq!(throttle.admit(), Some(0));
        assert_eq!((0..5).filter_map(|_| throttle.admit()).count(), 0);
        // As if a second had passed.
        throttle.next.store(0, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(throttle.admit(), Some(5));
    }
}
