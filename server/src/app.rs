//! What every request shares: the write path, the token, the metrics.

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::mint::Mint;
use crate::submit::Submit;

#[derive(Debug)]
pub(crate) struct Shared {
    /// The table, behind the one write path.
    pub(crate) submit: Submit,
    /// The token clients must present.
    pub(crate) token: String,
    /// Request ids.
    pub(crate) mint: Mint,
    pub(crate) metrics: Arc<Metrics>,
}

impl Shared {
    pub(crate) fn new(submit: Submit, token: String, metrics: Arc<Metrics>) -> Self {
        Self {
            submit,
            token,
            mint: Mint::new(),
            metrics,
        }
    }
}
