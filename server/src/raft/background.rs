//! Work that must not take a CPU from the apply path: encoding a snapshot.
//!
//! On a machine with few cores the snapshot encoder and the state machine's apply thread take
//! turns on the same CPU, and an apply that waits for its turn is a pause of the whole table
//! (docs/contract.md §12: snapshots never stall the table). Measured at a million leases on
//! two cores (`snapshot_pause_at_a_million_leases`), almost all of the longest pause while a
//! snapshot was encoded was time spent waiting for a CPU, not working. So the encoder runs on a
//! thread of its own under Linux's `SCHED_IDLE` policy: it gets a CPU only when nothing else of
//! ours (or anyone's) wants one, and the apply thread preempts it at once when it wakes.
//!
//! Why a fresh thread per snapshot, and not the replica's thread lowered and raised again: an
//! unprivileged thread may enter `SCHED_IDLE` but, with the default `RLIMIT_NICE` of 0, never
//! leave it, and the replica must keep applying at normal priority between snapshots (an idle
//! replica under sustained load would fall behind without bound). A thread start costs tens
//! of microseconds, once per snapshot.

use thread_priority::{
    set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy, ThreadPriority,
    ThreadSchedulePolicy,
};

/// Runs `work` on a thread of its own at the lowest scheduling priority the OS grants, and
/// waits for it. Where the OS refuses the lower priority (or a thread cannot be started),
/// `work` still runs: at normal priority, and on the caller's thread if need be.
pub(crate) fn at_lowest_priority<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    let mut work = Some(work);
    let outcome = std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("worklease-encode".to_owned())
            .spawn_scoped(scope, || {
                lower_own_priority();
                work.take().map(|work| work())
            });
        match spawned {
            Ok(handle) => handle.join().ok().flatten(),
            Err(error) => {
                tracing::warn!(%error, "cannot start a background thread; encoding on this one");
                None
            }
        }
    });
    match (outcome, work) {
        (Some(value), _) => value,
        (None, Some(work)) => work(),
        // The thread took the work and panicked: the caller sees the same panic it would have
        // seen running the work itself.
        (None, None) => panic!("a background task panicked (logged above)"),
    }
}

fn lower_own_priority() {
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(error) =
        set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle)
    {
        tracing::debug!(
            ?error,
            "the OS refused SCHED_IDLE; encoding at normal priority"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_runs_on_another_thread_under_the_idle_policy_and_its_answer_comes_back() {
        let caller = std::thread::current().id();
        let (answer, thread, policy) = at_lowest_priority(|| {
            (
                6 * 7,
                std::thread::current().id(),
                thread_priority::thread_schedule_policy().expect("readable"),
            )
        });
        assert_eq!(answer, 42);
        assert_ne!(thread, caller);
        assert_eq!(
            policy,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle)
        );
        // The caller's own policy is untouched.
        assert_ne!(
            thread_priority::thread_schedule_policy().expect("readable"),
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle)
        );
    }
}
