//! What every stage binary does around its own logic: a metrics registry, readiness
//! checks, the admin listener and the broker probe, all stopped by one shutdown signal.
//!
//! A stage builds a [`Stage`], registers its own metrics and readiness checks on it,
//! then [`Stage::start`]s it and runs its logic until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;

use crate::admin::{AdminServer, Readiness};
use crate::broker::BrokerProbe;
use crate::config::{KafkaArgs, ProcessingArgs};
use crate::error::Result;
use crate::shutdown::Shutdown;
use crate::task::Application;
use crate::worker::{RuntimeMetrics, WorkerConfig};

/// A stage being assembled: register metrics and readiness checks, then start it.
#[derive(Debug)]
pub struct Stage {
    name: &'static str,
    registry: Registry,
    readiness: Readiness,
    probe: BrokerProbe,
    shutdown: Shutdown,
}

/// A started stage: its admin listener and broker probe run in the background.
#[derive(Debug)]
pub struct RunningStage {
    name: &'static str,
    admin_addr: SocketAddr,
    readiness: Readiness,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
}

impl Stage {
    /// `name` is the binary's name; it labels the metrics and the Kafka client ids.
    pub fn new(name: &'static str, kafka: &KafkaArgs, shutdown: Shutdown) -> Result<Self> {
        // Fail at start-up on a bad prefix, not at the first topic name.
        kafka.topic_names()?;
        let mut registry = Registry::default();
        registry.register(
            "build",
            "The running binary and its version",
            Info::new(vec![("stage", name), ("version", env!("CARGO_PKG_VERSION"))]),
        );
        let readiness = Readiness::default();
        let probe = BrokerProbe::new(
            kafka,
            &format!("{name}-probe"),
            &mut registry,
            readiness.check("broker"),
        )?;
        Ok(Stage {
            name,
            registry,
            readiness,
            probe,
            shutdown,
        })
    }

    /// Where the stage registers its own metrics.
    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Where the stage registers its own readiness checks.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Runs a stateful stage: one exactly-once worker of `app`, with the runtime's metrics
    /// and a `state` readiness check (ready once its partitions are restored), until
    /// shutdown or until the worker fails (then the error is returned, for the process
    /// to exit non-zero and be restarted). The worker starts once `prerequisite` is done
    /// (say, settings the task reads are loaded); the admin listener is up before.
    pub async fn run_application(
        mut self,
        admin_addr: SocketAddr,
        app: Arc<dyn Application>,
        kafka: KafkaArgs,
        processing: ProcessingArgs,
        prerequisite: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        processing.validate()?;
        let metrics = RuntimeMetrics::register(&mut self.registry);
        let ready = self.readiness.check("state");
        ready.fail("starting");
        let shutdown = self.shutdown.clone();
        let running = self.start(admin_addr).await?;
        let result = tokio::select! {
            _ = prerequisite => {
                let config = WorkerConfig { kafka, processing };
                crate::worker::run(app, config, metrics, ready, shutdown.clone()).await
            }
            _ = shutdown.requested() => Ok(()),
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "the worker stopped on an error");
        }
        shutdown.trigger();
        running.until_shutdown().await;
        result
    }

    /// Binds the admin listener (failing now if the address is taken) and starts it and
    /// the broker probe in the background.
    pub async fn start(self, admin_addr: SocketAddr) -> Result<RunningStage> {
        let server = AdminServer::bind(admin_addr).await?;
        let admin_addr = server.local_addr().unwrap_or(admin_addr);
        let registry = Arc::new(self.registry);
        let admin = tokio::spawn({
            let (readiness, shutdown) = (self.readiness.clone(), self.shutdown.clone());
            async move {
                if let Err(e) = server.serve(registry, readiness, shutdown).await {
                    tracing::error!(error = %e, "admin listener failed");
                }
            }
        });
        let probe = tokio::spawn(self.probe.run(self.shutdown.clone()));
        tracing::info!(stage = self.name, %admin_addr, "admin listener up: /healthz /readyz /metrics");
        Ok(RunningStage {
            name: self.name,
            admin_addr,
            readiness: self.readiness,
            shutdown: self.shutdown,
            tasks: vec![admin, probe],
        })
    }
}

impl RunningStage {
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Waits for shutdown to be requested, then for the background tasks to finish.
    pub async fn until_shutdown(self) {
        self.shutdown.requested().await;
        tracing::info!(stage = self.name, "stopping");
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "background task failed while stopping");
            }
        }
        tracing::info!(stage = self.name, "stopped");
    }
}
