//! The stream's messages: the gateway-signed [`Event`] envelope (its id, time and
//! [`Audience`]) around each [`StreamEvent`] payload, and the [`StreamHello`] that opens every
//! stream (`docs/protocol.md`, section 7).

use serde::{Deserialize, Serialize};

use crate::canonical::domain;
use crate::error::ProtocolError;
use crate::request::ApprovalRequest;
use crate::types::{
    check_ident, check_u53, check_version, limits, Decode, Signed, SignedBody, StatusUpdate,
};

/// What arrives on a device's event stream (the `data:` of one SSE event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum StreamEvent {
    /// A new request for this approver, with the WebAuthn challenge bound to it.
    Request {
        /// Boxed, as the status is: both are large beside the tag.
        request: Box<Signed<ApprovalRequest>>,
        /// WebAuthn `RequestChallengeResponse` JSON for this request and approver; `null` for
        /// a request that takes no decision (break-glass, told after the fact).
        challenge: serde_json::Value,
        /// The gateway-signed Challenge whose digest is `challenge`'s WebAuthn challenge;
        /// absent exactly when `challenge` is `null`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signed_challenge: Option<Box<Signed<crate::challenge::Challenge>>>,
    },
    /// A change of state of a request this approver was asked about.
    Status { status: Box<Signed<StatusUpdate>> },
    /// The gateway's statement of the approver's person and groups, when it changes.
    Membership {
        membership: Box<Signed<crate::membership::Membership>>,
    },
    /// A new checkpoint of the gateway's log (a C2SP signed note, docs/protocol.md 9.6), sent
    /// to every device (audience `all`), which witnesses it (9.8).
    Checkpoint { checkpoint: String },
}

/// The longest checkpoint note an event carries: the three body lines and a handful of
/// signature lines.
pub const MAX_CHECKPOINT_NOTE: usize = 4096;

impl StreamEvent {
    /// The SSE `event:` name used for this event.
    pub fn kind(&self) -> &'static str {
        match self {
            StreamEvent::Request { .. } => "request",
            StreamEvent::Status { .. } => "status",
            StreamEvent::Membership { .. } => "membership",
            StreamEvent::Checkpoint { .. } => "checkpoint",
        }
    }
}

impl Decode for StreamEvent {
    fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            StreamEvent::Request {
                request,
                signed_challenge,
                ..
            } => {
                if let Some(c) = signed_challenge {
                    c.body.validate()?;
                }
                request.validate()
            }
            StreamEvent::Status { status } => status.validate(),
            StreamEvent::Membership { membership } => membership.validate(),
            StreamEvent::Checkpoint { checkpoint } => {
                if checkpoint.is_empty() || checkpoint.len() > MAX_CHECKPOINT_NOTE {
                    return Err(ProtocolError::InvalidField {
                        field: "checkpoint",
                        reason: format!("must be 1 to {MAX_CHECKPOINT_NOTE} bytes"),
                    });
                }
                Ok(())
            }
        }
    }
}

/// Whom a stream event is addressed to: approvers by name, the members of directory groups,
/// or every device (`all`). A device acts on an event only if it is addressed to its approver,
/// by name or through a group of its current membership statement (docs/protocol.md 3.12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audience {
    pub approvers: Vec<String>,
    pub groups: Vec<String>,
    pub all: bool,
}

/// Groups named in one event's audience: the group stages of one request, at most.
pub const AUDIENCE_GROUPS: usize = crate::stages::MAX_STAGES;

impl Audience {
    /// The audience of one approver.
    pub fn approver(name: &str) -> Audience {
        Audience {
            approvers: vec![name.to_string()],
            groups: Vec::new(),
            all: false,
        }
    }

    /// The audience of every device (gateway-wide events: log checkpoints).
    pub fn everyone() -> Audience {
        Audience {
            approvers: Vec::new(),
            groups: Vec::new(),
            all: true,
        }
    }

    /// The audience of named approvers and the members of groups (a request's list and group
    /// stages), each list sorted by byte value and without duplicates.
    pub fn wide(approvers: &[String], groups: &[String]) -> Audience {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        };
        Audience {
            approvers: sorted(approvers),
            groups: sorted(groups),
            all: false,
        }
    }

    /// Whether an event with this audience is addressed to `approver`, whose current
    /// membership statement lists `groups`.
    pub fn includes(&self, approver: &str, groups: &[String]) -> bool {
        self.all
            || self.approvers.iter().any(|a| a == approver)
            || self.groups.iter().any(|g| groups.contains(g))
    }

    fn validate(&self) -> Result<(), ProtocolError> {
        let bad = |reason: String| {
            Err(ProtocolError::InvalidField {
                field: "audience",
                reason,
            })
        };
        if self.approvers.len() > limits::AUDIENCE {
            return bad(format!("names more than {} approvers", limits::AUDIENCE));
        }
        if self.groups.len() > AUDIENCE_GROUPS {
            return bad(format!("names more than {AUDIENCE_GROUPS} groups"));
        }
        for a in self.approvers.iter().chain(&self.groups) {
            check_ident("audience", a, limits::NAME)?;
        }
        if self.approvers.windows(2).any(|w| w[0] >= w[1])
            || self.groups.windows(2).any(|w| w[0] >= w[1])
        {
            return bad("approvers and groups must be sorted by byte value, each once".into());
        }
        let named = !self.approvers.is_empty() || !self.groups.is_empty();
        if self.all == named {
            return bad("must name approvers or groups, or be `all` with neither".into());
        }
        Ok(())
    }
}

/// The gateway-signed envelope of every stream event. The event id a device resumes from is
/// `id` in here, never the SSE `id:` line, so a forged frame cannot move a resume point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub v: u32,
    /// Fingerprint of the gateway key that signs the envelope.
    pub gateway: String,
    /// The event id: at least 1, increasing in commit order, never reused.
    pub id: u64,
    /// When the event was committed (gateway clock).
    pub at: i64,
    pub audience: Audience,
    pub payload: StreamEvent,
}

impl SignedBody for Event {
    const DOMAIN: &'static str = domain::EVENT;
}

impl Decode for Event {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("gateway", &self.gateway, limits::ID)?;
        check_u53("id", self.id, 1)?;
        self.audience.validate()?;
        self.payload.validate()
    }
}

/// How a stream's backlog was chosen (see [`StreamHello`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamMode {
    /// The backlog is every event for this approver after `resumed_from`, up to `head`.
    Resume,
    /// The backlog is every stored event for this approver, up to `head`.
    Resync,
}

/// Why a gateway answered a stream with a full resync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResyncReason {
    /// The device sent no `Last-Event-ID`.
    Requested,
    /// The `Last-Event-ID` is above every event id the gateway has committed.
    Ahead,
}

impl ResyncReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResyncReason::Requested => "requested",
            ResyncReason::Ahead => "ahead",
        }
    }
}

/// The gateway-signed first event of every stream: who the stream is for, bound to this
/// connection by the nonce of its Authorization header, and how far the gateway's events go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamHello {
    pub v: u32,
    pub gateway: String,
    pub device_id: String,
    pub approver: String,
    /// The nonce of the Authorization header this stream was opened with.
    pub nonce: String,
    /// The highest event id committed when the backlog was read; every backlog event has an id
    /// at most this.
    pub head: u64,
    /// The `Last-Event-ID` the gateway read, if any.
    pub resumed_from: Option<u64>,
    pub mode: StreamMode,
    /// Null exactly when `mode` is `resume`.
    pub resync_reason: Option<ResyncReason>,
    pub keepalive_seconds: u64,
    pub at: i64,
}

impl SignedBody for StreamHello {
    const DOMAIN: &'static str = domain::STREAM_HELLO;
}

impl Decode for StreamHello {
    fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.v)?;
        check_ident("gateway", &self.gateway, limits::ID)?;
        check_ident("device_id", &self.device_id, limits::ID)?;
        check_ident("approver", &self.approver, limits::NAME)?;
        check_ident("nonce", &self.nonce, limits::ID)?;
        check_u53("head", self.head, 0)?;
        if let Some(r) = self.resumed_from {
            check_u53("resumed_from", r, 0)?;
        }
        if (self.mode == StreamMode::Resync) != self.resync_reason.is_some() {
            return Err(ProtocolError::InvalidField {
                field: "resync_reason",
                reason: "must be given exactly when mode is resync".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_audience_names_approvers_or_groups_or_is_all() {
        let ok = [
            Audience::approver("alice"),
            Audience::everyone(),
            Audience::wide(&[], &names(&["managers", "dba"])),
            Audience::wide(&names(&["bob", "alice", "bob"]), &names(&["dba"])),
        ];
        for a in ok {
            a.validate().unwrap();
        }
        let wide = Audience::wide(&names(&["bob", "alice", "bob"]), &names(&["ops", "dba"]));
        assert_eq!(wide.approvers, names(&["alice", "bob"]));
        assert_eq!(wide.groups, names(&["dba", "ops"]));

        let bad = |approvers: &[&str], groups: &[&str], all: bool| Audience {
            approvers: names(approvers),
            groups: names(groups),
            all,
        };
        let nine: Vec<String> = (0..9).map(|i| format!("g{i}")).collect();
        let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
        for (a, why) in [
            (bad(&[], &[], false), "nobody"),
            (bad(&[], &["dba"], true), "all with a group"),
            (bad(&["alice"], &[], true), "all with an approver"),
            (bad(&[], &["ops", "dba"], false), "groups unsorted"),
            (bad(&[], &["dba", "dba"], false), "a group twice"),
            (bad(&["bob", "alice"], &[], false), "approvers unsorted"),
            (bad(&[], &nine, false), "more groups than stages"),
            (bad(&[], &["not an ident"], false), "a bad group name"),
        ] {
            assert!(a.validate().is_err(), "{why}: {a:?}");
        }
    }

    #[test]
    fn a_group_audience_includes_the_members_of_its_groups() {
        let a = Audience::wide(&names(&["carl"]), &names(&["dba"]));
        assert!(a.includes("carl", &[]));
        assert!(a.includes("ann", &names(&["dba", "ops"])));
        assert!(!a.includes("ann", &names(&["ops"])));
        assert!(Audience::everyone().includes("anyone", &[]));
    }
}
