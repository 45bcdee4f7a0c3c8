//! What two members compare to agree that they apply commands under the same table
//! configuration (`worklease::Config`): a fingerprint built from named fields, with a version.
//!
//! Members whose configurations differ would apply the same log into different tables (a
//! heartbeat without a TTL takes the default), so every Raft RPC carries the sender's
//! fingerprints in [`super::CONFIG_HEADER`] and a member refuses RPCs whose fingerprint differs
//! from its own.
//!
//! The fingerprint is wire format: version 1 is
//! `v1:default_ttl_us=…;ack_ttl_us=…;max_attempts=…|none;reclaim_older_than_ms=…`, and it
//! never changes. A build that needs to compare more (a new field) adds a version and sends
//! every version it can build, newest first, separated by spaces (`v2:… v1:…`); a receiver
//! compares the newest version both sides know. So members of adjacent builds still agree
//! during a rolling upgrade, and a harmless change to how `Config` prints changes nothing.

use worklease::Config;

/// The fingerprint versions this build knows, newest first.
const VERSIONS: [&str; 1] = ["v1"];

/// This build's header value for `config`: every fingerprint version it knows, newest first.
pub(crate) fn header(config: &Config) -> String {
    v1(config)
}

/// Version 1: the four fields `worklease::Config` had when it was defined.
fn v1(config: &Config) -> String {
    format!(
        "v1:default_ttl_us={};ack_ttl_us={};max_attempts={};reclaim_older_than_ms={}",
        config.default_ttl.micros(),
        config.ack_ttl.micros(),
        config
            .max_attempts
            .map_or_else(|| "none".to_owned(), |n| n.get().to_string()),
        config.reclaim_older_than_ms
    )
}

/// Why two members' fingerprints do not agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Disagreement {
    /// The sender sent no fingerprint at all.
    Missing,
    /// No version both sides know.
    NoCommonVersion,
    /// The fingerprints of the newest common version differ.
    Differs {
        /// That version.
        version: &'static str,
    },
}

impl std::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("no table configuration fingerprint was sent"),
            Self::NoCommonVersion => f.write_str(
                "no table configuration fingerprint version in common (builds too far apart)",
            ),
            Self::Differs { version } => {
                write!(f, "the table configuration differs (fingerprint {version})")
            }
        }
    }
}

/// Whether a sender's header value (`theirs`) agrees with this member's (`ours`, from
/// [`header`]): their fingerprints of the newest version both know are equal.
///
/// # Errors
///
/// [`Disagreement`]: none sent, no version in common, or different fingerprints.
pub(crate) fn agree(ours: &str, theirs: Option<&str>) -> Result<(), Disagreement> {
    let theirs = theirs.ok_or(Disagreement::Missing)?;
    let of = |header: &str, version: &str| {
        header
            .split(' ')
            .find(|tag| tag.split_once(':').is_some_and(|(v, _)| v == version))
            .map(str::to_owned)
    };
    for version in VERSIONS {
        if let (Some(mine), Some(sent)) = (of(ours, version), of(theirs, version)) {
            return if mine == sent {
                Ok(())
            } else {
                Err(Disagreement::Differs { version })
            };
        }
    }
    Err(Disagreement::NoCommonVersion)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use worklease::Ttl;

    use super::*;

    #[test]
    fn version_1_is_stable() {
        // Wire format: members of other builds send exactly this for the default table.
        assert_eq!(
            header(&Config::default()),
            "v1:default_ttl_us=60000000;ack_ttl_us=60000000;max_attempts=none;\
             reclaim_older_than_ms=5000"
        );
        let mut config = Config::default();
        config.default_ttl = Ttl::from_seconds(30).expect("a ttl");
        config.max_attempts = NonZeroU32::new(3);
        assert_eq!(
            header(&config),
            "v1:default_ttl_us=30000000;ack_ttl_us=60000000;max_attempts=3;\
             reclaim_older_than_ms=5000"
        );
    }

    #[test]
    fn configs_that_differ_in_one_field_disagree() {
        let base = Config::default();
        let mut variants = Vec::new();
        let mut config = base;
        config.default_ttl = Ttl::from_seconds(61).expect("a ttl");
        variants.push(config);
        let mut config = base;
        config.ack_ttl = Ttl::from_seconds(61).expect("a ttl");
        variants.push(config);
        let mut config = base;
        config.max_attempts = NonZeroU32::new(1);
        variants.push(config);
        let mut config = base;
        config.reclaim_older_than_ms += 1;
        variants.push(config);
        let ours = header(&base);
        assert_eq!(agree(&ours, Some(&header(&base))), Ok(()));
        for variant in &variants {
            assert_eq!(
                agree(&ours, Some(&header(variant))),
                Err(Disagreement::Differs { version: "v1" }),
                "{variant:?}"
            );
        }
    }

    #[test]
    fn the_newest_common_version_is_compared() {
        let ours = header(&Config::default());
        // A next build sends a v2 this build cannot read, and the v1 it can.
        let next = format!("v2:something=new {ours}");
        assert_eq!(agree(&ours, Some(&next)), Ok(()));
        assert_eq!(
            agree(&ours, Some("v2:something=new")),
            Err(Disagreement::NoCommonVersion)
        );
        assert_eq!(agree(&ours, None), Err(Disagreement::Missing));
        // The CRC of the Debug text an earlier build sent is no version at all.
        assert_eq!(
            agree(&ours, Some("1a2b3c4d")),
            Err(Disagreement::NoCommonVersion)
        );
    }

    #[test]
    fn every_config_field_is_in_the_fingerprint() {
        // `Config` is non-exhaustive, so no destructuring here can catch a new field; its
        // Debug print names every field (only the names are compared, not the formatting). A
        // field added to it belongs in a new fingerprint version (v2), with v1 still sent.
        let printed = format!("{:?}", Config::default());
        let names: Vec<&str> = printed
            .split(['{', ','])
            .skip(1)
            .filter_map(|field| field.split_once(':').map(|(name, _)| name.trim()))
            .collect();
        assert_eq!(
            names,
            [
                "default_ttl",
                "ack_ttl",
                "max_attempts",
                "reclaim_older_than_ms"
            ],
            "{printed}"
        );
    }
}
