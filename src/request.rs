//! Request parsing: the raw strings a server receives (query values, headers) into typed
//! requests, validated exactly as docs/contract.md §3 says. Bad input is a typed [`Error`] naming the
//! parameter, whatever the bytes; nothing here panics or allocates on refusal.

use std::num::NonZeroU64;

use crate::error::{Error, Param};
use crate::heartbeat::{HeartbeatRequest, Precondition};
use crate::ids::{WorkId, WorkerId};
use crate::time::{ParsedInstant, Timestamp};

/// Digits of a non-negative decimal integer, saturating at `u64::MAX`; `None` unless the text
/// is one or more ASCII digits and nothing else (no sign, no spaces, no point).
pub(crate) fn decimal(raw: &str) -> Option<u64> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(raw.bytes().fold(0u64, |acc, digit| {
        acc.saturating_mul(10)
            .saturating_add(u64::from(digit - b'0'))
    }))
}

impl Precondition {
    /// Parses `expected_last_heartbeat`: omitted, `NO_HEARTBEAT`, or an RFC 3339 date-time.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`expected_last_heartbeat`) for anything else.
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::{Precondition, Timestamp};
    /// assert_eq!(Precondition::parse(None), Ok(Precondition::Unconditional));
    /// assert_eq!(Precondition::parse(Some("NO_HEARTBEAT")), Ok(Precondition::NoHeartbeat));
    /// let token = Precondition::parse(Some("2026-07-01T14:15:06.120394+06:00")).unwrap();
    /// assert_eq!(token, Precondition::parse(Some("2026-07-01T08:15:06.120394000Z")).unwrap());
    /// assert!(Precondition::parse(Some("yesterday")).is_err());
    /// ```
    #[inline]
    pub fn parse(raw: Option<&str>) -> Result<Self, Error> {
        let Some(raw) = raw else {
            return Ok(Self::Unconditional);
        };
        if raw == "NO_HEARTBEAT" {
            return Ok(Self::NoHeartbeat);
        }
        match Timestamp::parse_rfc3339(raw) {
            Ok(ParsedInstant::Exact(token)) => Ok(Self::LastHeartbeat(token)),
            Ok(ParsedInstant::Inexact) => Ok(Self::Unmatchable),
            Err(_) => Err(Self::refusal(raw)),
        }
    }

    /// The 400 for a value that is none of the three forms; out of line, so the parse that
    /// every heartbeat runs does not carry the error's stack frame.
    #[cold]
    #[inline(never)]
    fn refusal(raw: &str) -> Error {
        Error::invalid(
            Param::ExpectedLastHeartbeat,
            "NO_HEARTBEAT or an RFC 3339 timestamp",
            raw,
        )
    }
}

impl HeartbeatRequest {
    /// Parses the heartbeat's query values (`expected_last_heartbeat`, `desired_ttl_seconds`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] naming `desired_ttl_seconds` when it is not a positive
    /// decimal integer (`""`, `"0"`, `"-5"`, `"1.5"`, `" 60"` are all refused; huge values are
    /// accepted and clamp to 600), or naming `expected_last_heartbeat` (see
    /// [`Precondition::parse`]). `desired_ttl_seconds` is checked first.
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::{HeartbeatRequest, Precondition};
    /// let request = HeartbeatRequest::parse(Some("NO_HEARTBEAT"), Some("60")).unwrap();
    /// assert_eq!(request.precondition, Precondition::NoHeartbeat);
    /// assert_eq!(request.desired_ttl_seconds.map(|s| s.get()), Some(60));
    /// assert_eq!(HeartbeatRequest::parse(None, Some("0")).unwrap_err().status(), 400);
    /// ```
    pub fn parse(
        expected_last_heartbeat: Option<&str>,
        desired_ttl_seconds: Option<&str>,
    ) -> Result<Self, Error> {
        let desired_ttl_seconds = match desired_ttl_seconds {
            None => None,
            Some(raw) => Some(decimal(raw).and_then(NonZeroU64::new).ok_or_else(|| {
                Error::invalid(Param::DesiredTtlSeconds, "a positive integer", raw)
            })?),
        };
        Ok(Self {
            precondition: Precondition::parse(expected_last_heartbeat)?,
            desired_ttl_seconds,
        })
    }
}

/// Parses an optional worker id header (`Worker-ID` / `Anthropic-Worker-ID`).
///
/// # Errors
///
/// [`Error::InvalidParameter`] (`worker_id`) when present but not 1–128 visible ASCII
/// characters.
pub fn parse_worker_id(raw: Option<&str>) -> Result<Option<WorkerId>, Error> {
    raw.map(|text| {
        WorkerId::parse(text)
            .map_err(|_| Error::invalid(Param::WorkerId, "1–128 visible ASCII characters", text))
    })
    .transpose()
}

/// A parsed poll request (docs/contract.md §3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollRequest {
    /// The polling worker, if it named itself.
    pub worker: Option<WorkerId>,
    /// A delivered, unacknowledged item becomes claimable again this long after its delivery.
    pub reclaim_older_than_ms: u64,
    /// How long the server may hold an empty poll open (1–999 ms); `None` answers at once.
    pub block_ms: Option<u16>,
}

impl Default for PollRequest {
    fn default() -> Self {
        Self {
            worker: None,
            reclaim_older_than_ms: Self::DEFAULT_RECLAIM_OLDER_THAN_MS,
            block_ms: None,
        }
    }
}

impl PollRequest {
    /// `reclaim_older_than_ms` when the request omits it.
    pub const DEFAULT_RECLAIM_OLDER_THAN_MS: u64 = 5000;

    /// Parses a poll's worker header and query values.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] naming `worker_id` (see [`parse_worker_id`]),
    /// `reclaim_older_than_ms` (not a non-negative integer; huge values saturate) or `block_ms`
    /// (not an integer in 1–999).
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::PollRequest;
    /// let poll = PollRequest::parse(Some("w1"), Some("0"), Some("500")).unwrap();
    /// assert_eq!((poll.reclaim_older_than_ms, poll.block_ms), (0, Some(500)));
    /// assert!(PollRequest::parse(None, Some("-1"), None).is_err());
    /// assert!(PollRequest::parse(None, None, Some("1000")).is_err());
    /// ```
    pub fn parse(
        worker: Option<&str>,
        reclaim_older_than_ms: Option<&str>,
        block_ms: Option<&str>,
    ) -> Result<Self, Error> {
        let reclaim_older_than_ms = match reclaim_older_than_ms {
            None => Self::DEFAULT_RECLAIM_OLDER_THAN_MS,
            Some(raw) => decimal(raw).ok_or_else(|| {
                Error::invalid(Param::ReclaimOlderThanMs, "a non-negative integer", raw)
            })?,
        };
        let block_ms = match block_ms {
            None => None,
            Some(raw) => match decimal(raw) {
                // In 1..=999, so it fits in u16.
                Some(ms @ 1..=999) => Some(ms as u16),
                _ => {
                    return Err(Error::invalid(
                        Param::BlockMs,
                        "an integer from 1 to 999",
                        raw,
                    ))
                }
            },
        };
        Ok(Self {
            worker: parse_worker_id(worker)?,
            reclaim_older_than_ms,
            block_ms,
        })
    }
}

/// Where a list page starts.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Cursor {
    /// From the oldest item.
    #[default]
    First,
    /// Items with ids greater than this one (`after_id`, or `page` = a previous `next_page`).
    After(WorkId),
    /// The items immediately before this id (`before_id`), still in ascending order.
    Before(WorkId),
}

/// A parsed list request (docs/contract.md §3.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRequest {
    /// Page size, 1–100.
    pub limit: usize,
    /// Where the page starts.
    pub cursor: Cursor,
}

impl Default for ListRequest {
    fn default() -> Self {
        Self {
            limit: Self::DEFAULT_LIMIT,
            cursor: Cursor::First,
        }
    }
}

impl ListRequest {
    /// Page size when `limit` is omitted.
    pub const DEFAULT_LIMIT: usize = 20;
    /// Largest page; larger limits are capped to it.
    pub const MAX_LIMIT: usize = 100;

    /// Parses a list's query values.
    ///
    /// `page` takes the `next_page` of the previous page (a work id) and means "after it".
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] naming `limit` (not an integer, or ≤ 0), or a cursor that is
    /// not a work id; [`Error::ConflictingParameters`] when more than one of `page`,
    /// `after_id`, `before_id` is given.
    ///
    /// # Examples
    ///
    /// ```
    /// use worklease::{Cursor, ListRequest};
    /// let list = ListRequest::parse(Some("500"), None, Some("work_01"), None).unwrap();
    /// assert_eq!(list.limit, 100);
    /// assert!(matches!(list.cursor, Cursor::After(_)));
    /// assert!(ListRequest::parse(Some("0"), None, None, None).is_err());
    /// assert!(ListRequest::parse(None, Some("work_01"), None, Some("work_02")).is_err());
    /// ```
    pub fn parse(
        limit: Option<&str>,
        page: Option<&str>,
        after_id: Option<&str>,
        before_id: Option<&str>,
    ) -> Result<Self, Error> {
        let limit = match limit {
            None => Self::DEFAULT_LIMIT,
            Some(raw) => match decimal(raw) {
                Some(0) | None => {
                    return Err(Error::invalid(Param::Limit, "a positive integer", raw))
                }
                Some(n) => usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(Self::MAX_LIMIT),
            },
        };
        let given = [
            (Param::Page, page),
            (Param::AfterId, after_id),
            (Param::BeforeId, before_id),
        ];
        let mut cursor = Cursor::First;
        let mut seen: Option<Param> = None;
        for (param, raw) in given {
            let Some(raw) = raw else { continue };
            if let Some(first) = seen {
                return Err(Error::ConflictingParameters {
                    first,
                    second: param,
                });
            }
            seen = Some(param);
            let id = WorkId::parse(raw).map_err(|_| Error::invalid(param, "a work id", raw))?;
            cursor = match param {
                Param::BeforeId => Cursor::Before(id),
                _ => Cursor::After(id),
            };
        }
        Ok(Self { limit, cursor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn desired_ttl_refusals_name_the_parameter() {
        for raw in [
            "", "0", "00", "-5", "1.5", "abc", " 60", "60 ", "+60", "６０",
        ] {
            let error = HeartbeatRequest::parse(None, Some(raw)).expect_err(raw);
            assert_eq!(error.param(), Some(Param::DesiredTtlSeconds), "{raw:?}");
            assert_eq!(error.status(), 400);
        }
    }

    #[test]
    fn desired_ttl_saturates_instead_of_overflowing() {
        let huge = "9".repeat(400);
        let request = HeartbeatRequest::parse(None, Some(&huge)).expect("huge is positive");
        assert_eq!(
            request.desired_ttl_seconds.map(NonZeroU64::get),
            Some(u64::MAX)
        );
        let leading_zero = HeartbeatRequest::parse(None, Some("060")).expect("decimal");
        assert_eq!(
            leading_zero.desired_ttl_seconds.map(NonZeroU64::get),
            Some(60)
        );
    }

    #[test]
    fn expected_last_heartbeat_refusals_name_the_parameter() {
        for raw in [
            "",
            "no_heartbeat",
            "NO_HEARTBEAT ",
            "2026-07-01",
            "1782893706",
        ] {
            let error = Precondition::parse(Some(raw)).expect_err(raw);
            assert_eq!(error.param(), Some(Param::ExpectedLastHeartbeat), "{raw:?}");
        }
        assert_eq!(
            Precondition::parse(Some("2026-07-01T08:15:06.1203941Z")),
            Ok(Precondition::Unmatchable)
        );
    }

    #[test]
    fn list_cursors_are_exclusive_and_validated() {
        let error =
            ListRequest::parse(None, Some("work_a"), Some("work_b"), None).expect_err("two");
        assert_eq!(
            error,
            Error::ConflictingParameters {
                first: Param::Page,
                second: Param::AfterId
            }
        );
        let error = ListRequest::parse(None, None, None, Some("nope")).expect_err("bad id");
        assert_eq!(error.param(), Some(Param::BeforeId));
        for raw in ["-1", "abc", "1.0", "", "-99999999999999999999999"] {
            assert_eq!(
                ListRequest::parse(Some(raw), None, None, None)
                    .expect_err(raw)
                    .param(),
                Some(Param::Limit)
            );
        }
        let huge =
            ListRequest::parse(Some("99999999999999999999999"), None, None, None).expect("capped");
        assert_eq!(huge.limit, 100);
        let page = ListRequest::parse(None, Some("work_b"), None, None).expect("page");
        assert_eq!(
            page.cursor,
            Cursor::After(WorkId::parse("work_b").expect("ok"))
        );
    }

    #[test]
    fn poll_parameters_follow_spec() {
        assert_eq!(
            PollRequest::parse(None, None, None),
            Ok(PollRequest::default())
        );
        for raw in ["0", "1000", "-1", "x", ""] {
            assert_eq!(
                PollRequest::parse(None, None, Some(raw))
                    .expect_err(raw)
                    .param(),
                Some(Param::BlockMs)
            );
        }
        for raw in ["-1", "1.5", "", "x"] {
            assert_eq!(
                PollRequest::parse(None, Some(raw), None)
                    .expect_err(raw)
                    .param(),
                Some(Param::ReclaimOlderThanMs)
            );
        }
        assert_eq!(
            PollRequest::parse(Some(""), None, None)
                .expect_err("empty")
                .param(),
            Some(Param::WorkerId)
        );
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_arbitrary_text(a in ".*", b in ".*", c in ".*", d in ".*") {
            let _ = HeartbeatRequest::parse(Some(&a), Some(&b));
            let _ = PollRequest::parse(Some(&a), Some(&b), Some(&c));
            let _ = ListRequest::parse(Some(&a), Some(&b), Some(&c), Some(&d));
        }

        #[test]
        fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = HeartbeatRequest::parse(Some(&text), Some(&text));
            let _ = PollRequest::parse(Some(&text), Some(&text), Some(&text));
            let _ = ListRequest::parse(Some(&text), Some(&text), None, None);
        }

        #[test]
        fn positive_decimals_are_accepted_and_clamp(n in 1u64..) {
            let request = HeartbeatRequest::parse(None, Some(&n.to_string())).unwrap();
            prop_assert_eq!(request.desired_ttl_seconds.map(NonZeroU64::get), Some(n));
            let (ttl, clamped) = request.ttl(crate::Ttl::DEFAULT);
            prop_assert_eq!(ttl.seconds(), n.clamp(10, 600));
            prop_assert_eq!(clamped, !(10..=600).contains(&n));
        }
    }
}
