//! What every request shares: the write path, the token, the metrics.

use std::sync::Arc;

use crate::cluster_secret::ClusterSecret;
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
    /// The only credential the internal routes accept (`crate::cluster_secret`); `None`: they
    /// accept none.
    pub(crate) cluster_secret: Option<ClusterSecret>,
}

impl Shared {
    pub(crate) fn new(submit: Submit, token: String, metrics: Arc<Metrics>) -> Self {
        Self {
            submit,
            token,
            mint: Mint::new(),
            metrics,
            cluster_secret: None,
        }
    }

    /// The same, with the cluster secret that opens the internal routes.
    pub(crate) fn with_cluster_secret(self, cluster_secret: Option<ClusterSecret>) -> Self {
        Self {
            cluster_secret,
            ..self
        }
    }
}
