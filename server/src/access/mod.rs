//! Who may do what (docs/contract.md §10): the credentials a request can present, and the one
//! check the edge makes before a route runs.
//!
//! | credential | file | may |
//! |---|---|---|
//! | admin token | [`admin_tokens`] | everything on the API |
//! | environment key `wlk_…` | [`environment_key`] | in its environment: poll, ack, heartbeat, stop, list work, stats |
//! | item secret `wls_…` | [`item_secret`] | heartbeat and stop of its item, while its delivery is current |
//!
//! A check costs microseconds: comparisons with the admin tokens, then at most one SHA-256
//! (a key) or one HMAC-SHA256 (a secret), and reads of this member's table under its lock.
//! Keys and secrets carry 256 bits of randomness or a 256-bit tag, so no slow password hash
//! is needed. The check reads the table of the member that serves the request: in replicated
//! mode that is the leader (a follower forwards the client's credential unchecked), so a key
//! revoked there is refused at once, whichever member the request reached.

mod admin_tokens;
pub(crate) mod environment_key;
pub(crate) mod item_secret;
mod presented;
mod refusal;

use std::borrow::Cow;
use std::sync::OnceLock;

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;
use worklease::{ItemSecretKey, KeyDigest};

pub(crate) use admin_tokens::AdminTokens;
use presented::Presented;
pub(crate) use refusal::Refusal;

use crate::submit::Submit;

/// What a route opens to credentials other than an admin token, and whether a member that
/// does not lead passes it to the leader (the edge reads it off its route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Opens {
    /// The route is served by the leader.
    pub(crate) at_leader: bool,
    /// An environment key may use it in its own environment.
    pub(crate) to_environment_keys: bool,
    /// An item secret may use it on its own item.
    pub(crate) to_item_secrets: bool,
}

/// What a request's credential is, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grant {
    /// An admin token: everything.
    Admin,
    /// An environment key or an item secret, checked against this member's table for this
    /// route and path.
    Scoped,
    /// Not an admin token, and this member does not lead: the leader checks it.
    AtLeader,
}

/// The admin tokens and the check.
pub(crate) struct Access {
    admin: AdminTokens,
    /// The table's item-secret key, prepared for HMAC, once a secret was checked.
    verifier: OnceLock<item_secret::Verifier>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").finish_non_exhaustive()
    }
}

impl Access {
    pub(crate) fn new(admin: AdminTokens) -> Self {
        Self {
            admin,
            verifier: OnceLock::new(),
        }
    }

    /// Whether `headers`' credential opens `route` at `path` on this member.
    ///
    /// # Errors
    ///
    /// The [`Refusal`]: 401 for no, malformed or unknown credentials, 403 for a valid one
    /// out of its scope (another environment or item, a stale delivery, an admin route).
    pub(crate) fn check(
        &self,
        route: Opens,
        path: Target<'_>,
        headers: &HeaderMap,
        submit: &Submit,
    ) -> Result<Grant, Refusal> {
        let presented = match presented::of(headers) {
            Presented::Nothing => return Err(Refusal::Missing),
            Presented::Unreadable => return Err(Refusal::Malformed),
            Presented::Text(text) => text,
        };
        if self.admin.admit(presented) {
            return Ok(Grant::Admin);
        }
        if route.at_leader && submit.is_replicated() && !submit.leads() {
            return Ok(Grant::AtLeader);
        }
        self.scoped(route, path, presented, submit)
            .map(|()| Grant::Scoped)
    }

    /// The check of a request that reached the leader unchecked (`Grant::AtLeader` where it
    /// arrived, and this member leads now): the same, without leaving it to anyone else.
    pub(crate) fn check_here(
        &self,
        route: Opens,
        path: Target<'_>,
        headers: &HeaderMap,
        submit: &Submit,
    ) -> Result<(), Refusal> {
        let presented = match presented::of(headers) {
            Presented::Nothing => return Err(Refusal::Missing),
            Presented::Unreadable => return Err(Refusal::Malformed),
            Presented::Text(text) => text,
        };
        if self.admin.admit(presented) {
            return Ok(());
        }
        self.scoped(route, path, presented, submit)
    }

    /// Whether `signed`'s tag is the table's key's (`None`: the table has no key yet).
    fn verify(&self, key: Option<&ItemSecretKey>, signed: &item_secret::Signed<'_>) -> bool {
        let Some(key) = key else {
            return false;
        };
        let verifier = self
            .verifier
            .get_or_init(|| item_secret::Verifier::new(*key));
        if verifier.is_for(key) {
            verifier.verify(signed)
        } else {
            // The table's key is set once, so this is a table restored from elsewhere.
            signed.verify(key)
        }
    }

    /// What an environment key or an item secret may do here.
    fn scoped(
        &self,
        route: Opens,
        path: Target<'_>,
        presented: &str,
        submit: &Submit,
    ) -> Result<(), Refusal> {
        if let Some(key) = environment_key::parse(presented) {
            let held = submit.peek(|table| {
                table
                    .environment_keys(key.environment)
                    .is_ok_and(|keys| holds(keys, &key.digest))
            });
            if !held {
                return Err(if key.names_an_environment() {
                    Refusal::Unknown
                } else {
                    Refusal::Malformed
                });
            }
            // Ids have one spelling each (`worklease::ids`), so the texts compare as the ids.
            let ids = PathIds::of(path);
            let own = ids.environment.as_deref() == Some(key.environment);
            return if route.to_environment_keys && own {
                Ok(())
            } else {
                Err(Refusal::OutOfScope)
            };
        }
        let mut buffer = [0; item_secret::MAX_TOKEN_BYTES];
        if let Some(signed) = item_secret::parse(presented, &mut buffer) {
            let ids = PathIds::of(path);
            let delivery = &signed.delivery;
            // The item the secret is for, named by the path's text (the same bytes).
            let item = match (ids.environment.as_deref(), ids.work.as_deref()) {
                (Some(environment), Some(work))
                    if route.to_item_secrets
                        && environment.as_bytes() == &*delivery.environment
                        && work.as_bytes() == &*delivery.work =>
                {
                    Some((environment, work))
                }
                _ => None,
            };
            let own = item.is_some();
            let now = submit.now();
            // One short look at the table: its signing key and, for the secret's own item only,
            // whether the item is still in this delivery (a summary: nothing copied but a few
            // counters). The HMAC runs after, outside the table's lock, which every other
            // request of this member needs.
            let (key, current) = submit.peek(|table| {
                let current = item.is_some_and(|(environment, work)| {
                    table
                        .summary(environment, work, now)
                        .is_ok_and(|item| delivery.is_current(&item))
                });
                (table.item_secret_key().copied(), current)
            });
            return if !self.verify(key.as_ref(), &signed) {
                Err(Refusal::Unknown)
            } else if !own {
                Err(Refusal::OutOfScope)
            } else if current {
                Ok(())
            } else {
                Err(Refusal::StaleDelivery)
            };
        }
        if presented.starts_with(environment_key::PREFIX)
            || presented.starts_with(item_secret::PREFIX)
        {
            Err(Refusal::Malformed)
        } else {
            Err(Refusal::Unknown)
        }
    }
}

/// Whether `keys` hold `digest`: every key compared, each in constant time, as four 64-bit
/// words (`subtle` puts each comparison behind an optimisation barrier: four a key, where
/// comparing bytes would take 32).
fn holds(keys: &worklease::EnvironmentKeys, digest: &KeyDigest) -> bool {
    let presented = words(digest);
    keys.iter()
        .fold(subtle::Choice::from(0), |found, held| {
            found | words(&held.digest)[..].ct_eq(&presented[..])
        })
        .into()
}

fn words(digest: &KeyDigest) -> [u64; 4] {
    let bytes = digest.as_bytes();
    std::array::from_fn(|word| {
        let mut chunk = [0; 8];
        chunk.copy_from_slice(&bytes[word * 8..word * 8 + 8]);
        u64::from_le_bytes(chunk)
    })
}

/// What a request is for, as the scope checks read it: its path, and the ids in it when the
/// edge found them already (a heartbeat whose ids need no percent-decoding), so the path is
/// not read twice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    path: &'a str,
    ids: Option<(&'a str, &'a str)>,
}

impl<'a> Target<'a> {
    /// A request to `path`.
    pub(crate) fn path(path: &'a str) -> Self {
        Self { path, ids: None }
    }

    /// A request to `path` whose environment and work ids are these (as the path has them,
    /// needing no decoding).
    pub(crate) fn with_ids(path: &'a str, environment: &'a str, work: &'a str) -> Self {
        Self {
            path,
            ids: Some((environment, work)),
        }
    }
}

/// The environment and work ids a path names (percent-decoded), for scope checks.
#[derive(Debug, Default, PartialEq, Eq)]
struct PathIds<'a> {
    environment: Option<Cow<'a, str>>,
    work: Option<Cow<'a, str>>,
}

impl<'a> PathIds<'a> {
    fn of(target: Target<'a>) -> Self {
        if let Some((environment, work)) = target.ids {
            return Self {
                environment: Some(Cow::Borrowed(environment)),
                work: Some(Cow::Borrowed(work)),
            };
        }
        Self::read(target.path)
    }

    fn read(path: &'a str) -> Self {
        let Some(rest) = path
            .strip_prefix("/api/v1/cloud")
            .or_else(|| path.strip_prefix("/v1"))
            .and_then(|tail| tail.strip_prefix("/environments/"))
        else {
            return Self::default();
        };
        let mut segments = rest.split('/');
        // Ids are plain ASCII: a segment without `%` is its own decoding.
        let decode = |segment: &'a str| {
            if segment.contains('%') {
                percent_encoding::percent_decode_str(segment)
                    .decode_utf8()
                    .ok()
            } else {
                Some(Cow::Borrowed(segment))
            }
        };
        let environment = segments.next().and_then(decode);
        let work = match (segments.next(), segments.next()) {
            (Some("work"), Some(work)) => decode(work),
            _ => None,
        };
        Self { environment, work }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_ids_are_read_under_both_prefixes_and_decoded() {
        for prefix in ["/v1", "/api/v1/cloud"] {
            let ids = PathIds::of_owned(&format!("{prefix}/environments/env_a/work/work_%31/stop"));
            assert_eq!(ids, (Some("env_a".to_owned()), Some("work_1".to_owned())));
            let ids = PathIds::of_owned(&format!("{prefix}/environments/env_a/work/poll"));
            assert_eq!(ids.0.as_deref(), Some("env_a"));
        }
        assert_eq!(PathIds::of_owned("/metrics"), (None, None));
        assert_eq!(
            PathIds::of_owned("/v1/environments/%ff/work/w"),
            (None, Some("w".to_owned()))
        );
    }

    impl PathIds<'_> {
        fn of_owned(path: &str) -> (Option<String>, Option<String>) {
            let ids = PathIds::read(path);
            (
                ids.environment.map(Cow::into_owned),
                ids.work.map(Cow::into_owned),
            )
        }
    }
}
