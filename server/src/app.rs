//! What every request shares: the write path, the token, the metrics.

use std::sync::Arc;

use crate::access::{Access, AdminTokens};
use crate::cluster_secret::ClusterSecret;
use crate::metrics::Metrics;
use crate::mint::Mint;
use crate::submit::Submit;

#[derive(Debug)]
pub(crate) struct Shared {
    /// The table, behind the one write path.
    pub(crate) submit: Submit,
    /// The first admin token (the one a server without `--token` generated and printed).
    pub(crate) token: String,
    /// Who may do what: every admin token, and the check of environment keys and item secrets.
    pub(crate) access: Access,
    /// Request ids.
    pub(crate) mint: Mint,
    pub(crate) metrics: Arc<Metrics>,
    /// The only credential the internal routes accept (`crate::cluster_secret`); `None`: they
    /// accept none.
    pub(crate) cluster_secret: Option<ClusterSecret>,
}

impl Shared {
    /// With `token` the one admin token.
    #[cfg(test)]
    pub(crate) fn new(submit: Submit, token: String, metrics: Arc<Metrics>) -> Self {
        Self::with_admin_tokens(submit, &[token], metrics)
    }

    /// With every token of `tokens` (at least one) an admin token.
    pub(crate) fn with_admin_tokens(
        submit: Submit,
        tokens: &[String],
        metrics: Arc<Metrics>,
    ) -> Self {
        let token = tokens.first().cloned().unwrap_or_default();
        Self {
            submit,
            access: Access::new(AdminTokens::new(tokens)),
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
