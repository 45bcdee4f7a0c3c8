//! Expires lapsed leases when they are due, logs each transition, and purges old stopped items
//! when asked. Sleeps until the table's next wake-up; the write path wakes it only when a
//! change moved that wake-up earlier (a renewal, which moves a deadline later, does not).

use std::sync::Arc;
use std::time::Duration;

use crate::app::Shared;
use crate::submit::until;

/// How long the sweeper waits when the table's next wake-up is still past after a sweep that
/// lapsed nothing. The wake-up is the earliest lease deadline, which a sweep applies, so this
/// should not happen; if it did (a clock stepping back under the table), the pause keeps the
/// sweeper from submitting (and, in a log, writing) sweeps in a tight loop.
const OVERDUE_PAUSE: Duration = Duration::from_secs(1);

/// Runs until the task is aborted.
///
/// With `keep_stopped`, it also purges the items stopped longer ago than that, every so often
/// (the retention, at most a minute), so the table's memory follows its live work.
pub(crate) async fn run(shared: Arc<Shared>, keep_stopped: Option<Duration>) {
    let purge_every =
        keep_stopped.map(|keep| keep.clamp(Duration::from_secs(1), Duration::from_secs(60)));
    let mut last_purge: Option<tokio::time::Instant> = None;
    loop {
        let changed = shared.submit.sweeper_signal().notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let purge_due =
            purge_every.is_some_and(|every| last_purge.is_none_or(|at| at.elapsed() >= every));
        let Some(swept) = shared
            .submit
            .sweep(if purge_due { keep_stopped } else { None })
            .await
        else {
            // A replicated member that does not lead: the leader sweeps (docs/contract.md §8). Look
            // again when this node's role changes.
            shared.submit.role_changed().await;
            continue;
        };
        if let Some(purged) = swept.purged {
            last_purge = Some(tokio::time::Instant::now());
            if purged > 0 {
                tracing::info!(purged, "purged stopped items");
            }
        }
        for transition in &swept.transitions {
            shared.metrics.lapse(transition.to);
            tracing::info!(
                environment_id = %transition.environment_id,
                work_id = %transition.work_id,
                from = %transition.from,
                to = %transition.to,
                lapses = transition.lapses,
                at = %transition.at,
                "lease lapsed"
            );
        }
        // With nothing scheduled, wait for a change to say otherwise.
        let mut wait = swept.next_wakeup.map_or(Duration::from_secs(3600), |at| {
            until(at, shared.submit.now())
        });
        if wait.is_zero() && swept.transitions.is_empty() {
            wait = OVERDUE_PAUSE;
        }
        let wait = purge_every.map_or(wait, |every| wait.min(every));
        tokio::select! {
            () = &mut changed => {}
            () = tokio::time::sleep(wait) => {}
            // A new term: a new leader sweeps at once, a deposed one stops.
            () = shared.submit.role_changed() => {}
        }
    }
}
