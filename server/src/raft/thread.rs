//! The Raft thread: openraft's core, its state-machine worker and the proposer run on a
//! single-threaded tokio runtime of their own, not on the runtime that serves HTTP.
//!
//! Why: every durable write crosses these tasks several times (proposer → core → log writer
//! → core → state machine). On the shared runtime each of those wake-ups queued behind the
//! HTTP tasks woken by the previous batch's answers, and a wake-up from the log writer's
//! thread went to the global queue, which a busy worker checks only every few dozen polls;
//! the disk idled meanwhile. On a thread of their own they run as soon as the OS schedules
//! it, and hand-offs between them stay on that thread. Measured on the 2-core bench machine
//! (durable server, wrk -c50, 3 alternating 10 s rounds): 40.0k–43.1k heartbeats/s against
//! 32.8k–36.6k on the shared runtime, with less CPU a request (22.6–24.5 µs against
//! 25.3–28.1 µs). Giving HTTP one worker or three made no difference.

use std::future::Future;

use tokio::sync::oneshot;

/// The running thread; dropping this stops it (and the tasks still on it).
#[derive(Debug)]
pub(crate) struct RaftThread {
    handle: tokio::runtime::Handle,
    _stop: oneshot::Sender<()>,
}

impl RaftThread {
    /// Starts the thread.
    ///
    /// # Errors
    ///
    /// When the OS refuses a thread or the runtime its resources.
    pub(crate) fn start() -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the raft runtime: {e}"))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("raft".to_owned())
            .spawn(move || {
                // Runs the spawned tasks until the sender is dropped.
                let _ = runtime.block_on(stopped);
            })
            .map_err(|e| format!("cannot start the raft thread: {e}"))?;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }

    /// Runs `work` on the Raft thread; everything it spawns stays there.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        self.handle
            .spawn(work)
            .await
            .map_err(|e| format!("the raft thread failed: {e}"))
    }
}
