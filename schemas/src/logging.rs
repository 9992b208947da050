//! The one tracing set-up of the three tools (feature `logging`): logs go to stderr, filtered by
//! the tool's own variable (`BOOTCFG_LOG`, `CONDUCTOR_LOG`, `SIGNER_LOG`), else `RUST_LOG`, else
//! the tool's default.
//!
//! Under systemd (`JOURNAL_STREAM` set: stderr is a journal stream) each line starts with a `<N>`
//! syslog priority, which journald turns into the entry's priority (`SyslogLevelPrefix=`, on by
//! default): an `error!` is recorded at priority 3 (err), so `journalctl -p err` finds fatal
//! errors without a journald client library. Elsewhere lines are colored when stderr is a
//! terminal.

use std::fmt;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Install the global subscriber (a second call does nothing). `env_var` names the tool's filter
/// variable; `default` is the filter without one (`info`, `warn`).
pub fn init(env_var: &str, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(env_var)
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let _ = if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder
            .with_ansi(false)
            .event_format(JournalFormat)
            .try_init()
    } else {
        builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}

/// The syslog priority journald records for a tracing level.
pub fn priority(level: &tracing::Level) -> u8 {
    match *level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        _ => 7,
    }
}

/// `<priority>span{fields}: message fields` (no timestamp: the journal adds one).
pub struct JournalFormat;

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                match ext.get::<FormattedFields<N>>() {
                    Some(f) if !f.is_empty() => write!(writer, "{}{{{f}}}: ", span.name())?,
                    _ => write!(writer, "{}: ", span.name())?,
                }
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_error_reaches_the_journal_at_priority_err() {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .event_format(JournalFormat)
            .finish();
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("module", name = "puppet");
            let _g = span.enter();
            tracing::error!("the CA refused the request");
            tracing::warn!(path = "/etc/x", "kept");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "<3>module{name=\"puppet\"}: the CA refused the request",
                "<4>module{name=\"puppet\"}: kept path=\"/etc/x\""
            ]
        );
    }
}
