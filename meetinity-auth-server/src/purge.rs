//! The in-process purge of `serve` (`PURGE_INTERVAL_SECS`): what the
//! `purge` command deletes (erased accounts past `ACCOUNT_RETENTION_DAYS`,
//! audit events past `AUDIT_RETENTION_DAYS`), every interval, in a
//! background task.
//!
//! A failed run (database down, a panic) is logged and the next one runs at
//! the next tick: the purge never takes the server down. Several instances
//! may run it at once; each account is deleted once (the others find nothing
//! due). The first run starts at once, so a server restarted more often than
//! the interval still purges.

use std::sync::Arc;
use std::time::Duration;

use meetinity_auth::clock::Clock;
use meetinity_auth::service::AuthService;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// A running periodic purge. [`Purger::stop`] ends it (dropping it does too,
/// at the latest when the run in progress ends).
#[derive(Debug)]
pub struct Purger {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Purger {
    /// Runs [`purge_due`](meetinity_auth::service::UserService::purge_due)
    /// of `service` at `clock`'s time every `every`, the first time at once.
    /// Must be called within a Tokio runtime.
    pub fn spawn(service: Arc<dyn AuthService>, clock: Arc<dyn Clock>, every: Duration) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopped.changed() => break,
                }
                // Each run is a task of its own: a panic ends that run only.
                let service = Arc::clone(&service);
                let now = clock.now();
                let mut run = tokio::spawn(async move { service.purge_due(now).await });
                tokio::select! {
                    done = &mut run => match done {
                        Ok(Ok(report)) if report.users > 0 || report.audit_events > 0 => {
                            tracing::info!(
                                users = report.users,
                                audit_events = report.audit_events,
                                "periodic purge deleted what was due"
                            );
                        }
                        Ok(Ok(_)) => tracing::debug!("periodic purge: nothing due"),
                        Ok(Err(e)) => tracing::warn!(error = %e, "periodic purge failed; retrying at the next interval"),
                        Err(e) => tracing::error!(error = %e, "periodic purge panicked; retrying at the next interval"),
                    },
                    _ = stopped.changed() => {
                        // Shutting down: an interrupted run rolls back its
                        // current account; the next start finishes the work.
                        run.abort();
                        break;
                    }
                }
            }
        });
        Self { stop, task }
    }

    /// Stops the purge (interrupting a run in progress) and waits for the
    /// task to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Whether the task is still running (it only ends when stopped).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}
