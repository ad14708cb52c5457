//! Logging, set up once per process.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetryArgs};
use crate::error::{Error, Result};

/// Installs the global `tracing` subscriber (text or JSON lines on stderr, filtered by
/// `args.log_filter`). librdkafka's own logs arrive through the `log` crate and are
/// forwarded into the same stream.
pub fn init(args: &TelemetryArgs) -> Result<()> {
    let filter = EnvFilter::try_new(&args.log_filter)
        .map_err(|e| Error::Config(format!("--log-filter {:?}: {e}", args.log_filter)))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
    installed.map_err(|e| Error::Telemetry(e.to_string()))
}
