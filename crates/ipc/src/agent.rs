//! The local socket between the background agent (`countersign-agent`: the engine, the stream,
//! notifications and the tray, no WebKit) and the window process (`countersign-desktop`).
//!
//! The socket is `<data dir>/agent.sock`, owner-only, and the agent serves only its own user.
//! Each message is one line of JSON. The window sends [`Call`]s; the agent answers each with a
//! [`AgentMessage::Reply`] carrying the same `id`, and pushes the page's events, window requests
//! and quit in between:
//!
//! ```text
//! → {"id":1,"call":{"cmd":"approve","args":{"id":"r-1","match_code":"42"}}}
//! ← {"event":{"type":"status_changed", …}}
//! ← {"reply":{"id":1,"err":{"code":"wrong_match_code","message":"…"}}}
//! ← {"show":{"request_id":"r-1"}}
//! ```
//!
//! The commands are the page's Tauri commands ([`crate::COMMANDS`]) that need the engine, with
//! the same arguments, plus [`Command::Hello`]. A reply's `ok` is the command's result exactly
//! as the page receives it, so the window passes it on without decoding it.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{IpcError, KeyAnswer, ListKind, Secret, Settings, UiEvent};

/// The socket's file name in the data directory.
pub const SOCKET_FILE: &str = "agent.sock";

/// The version of this socket protocol; `hello` answers it, and a window that finds another
/// version does not talk to that agent (its commands fail with `agent_unavailable`, saying
/// why), so a window and an agent of different releases never misread each other.
pub const AGENT_PROTOCOL: u32 = 1;

/// The longest line either side accepts (an inbox of 10,000 rows is about 6.5 MB).
pub const MAX_LINE: usize = 64 * 1024 * 1024;

/// One call from the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub id: u64,
    pub call: Command,
}

/// What the window asks of the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", content = "args", rename_all = "snake_case")]
pub enum Command {
    /// Answered with [`Hello`].
    Hello,
    ListRequests {
        kind: ListKind,
    },
    GetRequest {
        id: String,
    },
    Approve {
        id: String,
        match_code: Option<String>,
    },
    Deny {
        id: String,
        reason: String,
    },
    ReportUnexpected {
        id: String,
    },
    Acknowledge {
        id: String,
    },
    Revoke {
        id: String,
        reason: String,
    },
    Pair {
        link: String,
    },
    ListGateways,
    AuthenticatorInfo,
    AuditList {
        query: Option<String>,
        limit: Option<u32>,
    },
    AuditVerify,
    AuditExport,
    GetSettings,
    SetSettings {
        settings: Settings,
    },
    /// Quit Countersign: the agent tells every window to close, then exits.
    Quit,
    /// The person's answer to what the security key asked (`UiEvent::SecurityKey`).
    KeyAnswer {
        answer: KeyAnswer,
    },
    /// Sets a first PIN on a security key that has none (a ceremony: the new PIN is asked).
    KeySetPin,
    /// The approver's passkeys at `gateway` (its fingerprint).
    PasskeyList {
        gateway: String,
    },
    /// Registers a backup key at `gateway`: a ceremony with a registered key, then the new one.
    PasskeyAdd {
        gateway: String,
    },
    /// Removes a passkey at `gateway` (never the last one).
    PasskeyRemove {
        gateway: String,
        cred_id: String,
    },
    /// The connected hoop gateways, with their health.
    HoopList,
    /// Connects a hoop gateway with an API key or access token: checked against hoop, then a
    /// passkey registered for the connection (a ceremony). The token is a `Secret`.
    HoopConnect {
        url: String,
        token: Secret,
    },
    /// Forgets a hoop connection (its token and its reviews stay out of every list).
    HoopDisconnect {
        id: String,
    },
}

/// The agent's answer to [`Command::Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    /// The agent's process id (for the window's log, and for measurements).
    pub pid: u32,
    /// The last connection event of each gateway, for a page that loads after them.
    pub connections: Vec<UiEvent>,
}

/// Everything the agent sends.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentMessage {
    /// The answer to the call with this `id`: `ok` (the result as JSON) or `err`.
    Reply {
        id: u64,
        /// Present (even as `null`, a command's "nothing") exactly when the call succeeded.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )]
        ok: Option<Box<RawValue>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        err: Option<IpcError>,
    },
    /// An event for the page.
    Event(UiEvent),
    /// Show the window, on this request if one is named (a notification click, the tray).
    Show { request_id: Option<String> },
    /// Countersign is quitting: close the window.
    Quit {},
}

/// A field that is there, whatever its value: `null` is kept as the JSON `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

impl AgentMessage {
    /// A reply with `result` encoded; a result that cannot be encoded is an `internal` error.
    pub fn reply<T: Serialize>(id: u64, result: Result<T, IpcError>) -> AgentMessage {
        let result = result.and_then(|v| {
            serde_json::value::to_raw_value(&v).map_err(|e| {
                IpcError::new(
                    crate::ErrorCode::Internal,
                    format!("The answer could not be encoded: {e}."),
                )
            })
        });
        match result {
            Ok(raw) => AgentMessage::Reply {
                id,
                ok: Some(raw),
                err: None,
            },
            Err(e) => AgentMessage::Reply {
                id,
                ok: None,
                err: Some(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_messages_have_the_documented_shape() {
        let call = Call {
            id: 1,
            call: Command::Approve {
                id: "r-1".into(),
                match_code: Some("42".into()),
            },
        };
        let line = serde_json::to_string(&call).unwrap();
        assert_eq!(
            line,
            r#"{"id":1,"call":{"cmd":"approve","args":{"id":"r-1","match_code":"42"}}}"#
        );
        assert_eq!(serde_json::from_str::<Call>(&line).unwrap(), call);
        let hello: Call = serde_json::from_str(r#"{"id":2,"call":{"cmd":"hello"}}"#).unwrap();
        assert_eq!(hello.call, Command::Hello);

        let ok = AgentMessage::reply(3, Ok(vec!["a"]));
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"reply":{"id":3,"ok":["a"]}}"#
        );
        let err = AgentMessage::reply::<()>(
            4,
            Err(IpcError::new(
                crate::ErrorCode::UnknownRequest,
                "No such request.",
            )),
        );
        let text = serde_json::to_string(&err).unwrap();
        assert_eq!(
            text,
            r#"{"reply":{"id":4,"err":{"code":"unknown_request","message":"No such request."}}}"#
        );
        let unit = serde_json::to_string(&AgentMessage::reply(5, Ok(()))).unwrap();
        assert_eq!(unit, r#"{"reply":{"id":5,"ok":null}}"#);
        match serde_json::from_str::<AgentMessage>(&unit).unwrap() {
            AgentMessage::Reply {
                ok: Some(v),
                err: None,
                ..
            } => assert_eq!(v.get(), "null"),
            other => panic!("a null result is a result: {other:?}"),
        }
        let show: AgentMessage = serde_json::from_str(r#"{"show":{"request_id":null}}"#).unwrap();
        assert!(matches!(show, AgentMessage::Show { request_id: None }));
        let quit: AgentMessage = serde_json::from_str(r#"{"quit":{}}"#).unwrap();
        assert!(matches!(quit, AgentMessage::Quit {}));
    }

    #[test]
    fn an_unknown_command_is_a_decode_error_not_a_panic() {
        assert!(serde_json::from_str::<Call>(r#"{"id":1,"call":{"cmd":"format_disk"}}"#).is_err());
        assert!(serde_json::from_str::<Call>("not json").is_err());
    }
}
