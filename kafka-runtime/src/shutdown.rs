//! One shutdown signal for the whole process.
//!
//! SIGINT or SIGTERM cancels a single [`CancellationToken`]; every task holds a clone and
//! finishes its work in hand when it fires (the admin listener stops accepting, a stage
//! commits or aborts its open transaction and leaves its consumer group).

use tokio_util::sync::CancellationToken;

/// The process-wide shutdown signal.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A signal that only fires when [`Shutdown::trigger`] is called (tests use this).
    pub fn new() -> Self {
        Self::default()
    }

    /// A signal that also fires on SIGINT or SIGTERM. A second signal while shutting
    /// down exits at once, for an operator whose drain is taking too long.
    pub fn on_signals() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let shutdown = Shutdown::new();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let token = shutdown.token.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
                _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
            }
            token.cancel();
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("second signal received, exiting without draining");
            std::process::exit(130);
        });
        Ok(shutdown)
    }

    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes when shutdown has been requested.
    pub async fn requested(&self) {
        self.token.cancelled().await
    }

    /// The underlying token, for APIs that take one.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}
