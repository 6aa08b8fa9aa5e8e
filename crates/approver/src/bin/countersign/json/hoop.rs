//! The `--json` lines of hoop.dev gateways and reviews (their [`super::Line`] impls are in the
//! parent module).

use countersign_approver as engine;
use serde::Serialize;

/// `gateways` and `connect hoop`: one connected hoop gateway (`kind` `hoop`). hoop signs
/// nothing, so there is no key: only who the token is, as hoop said.
#[derive(Debug, Serialize)]
pub struct HoopGateway<'a> {
    kind: &'static str,
    id: &'a str,
    url: &'a str,
    name: String,
    user: HoopUser<'a>,
    token_kept_in: String,
    connected_at: i64,
    /// `gateways` only: whether its polls reach hoop.
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<Health<'a>>,
}

#[derive(Debug, Serialize)]
struct Health<'a> {
    ok: bool,
    unreachable_since: Option<i64>,
    error: Option<&'a str>,
}

impl<'a> HoopGateway<'a> {
    /// With the connection's health.
    pub fn with_health(mut self, h: &'a engine::hoop::HoopHealth) -> Self {
        self.health = Some(Health {
            ok: h.unreachable.is_none(),
            unreachable_since: h.unreachable.as_ref().map(|(since, _)| *since),
            error: h.unreachable.as_ref().map(|(_, e)| e.as_str()),
        });
        self
    }
}

#[derive(Debug, Serialize)]
struct HoopUser<'a> {
    id: &'a str,
    email: &'a str,
    name: &'a str,
    groups: &'a [String],
    role: &'a str,
}

impl<'a> From<&'a engine::hoop::HoopConnection> for HoopGateway<'a> {
    fn from(c: &'a engine::hoop::HoopConnection) -> Self {
        HoopGateway {
            kind: "hoop",
            id: &c.id,
            url: c.url.as_str(),
            name: c.name(),
            user: HoopUser {
                id: &c.user.id,
                email: &c.user.email,
                name: &c.user.name,
                groups: &c.user.groups,
                role: &c.user.role,
            },
            token_kept_in: c.token.describe(),
            connected_at: c.connected_at,
            health: None,
        }
    }
}

/// `list` and `show`: one hoop review (`kind` `hoop`), unsigned, as hoop last reported it.
#[derive(Debug, Serialize)]
pub struct HoopRequest<'a> {
    kind: &'static str,
    id: &'a str,
    connection: &'a str,
    url: &'a str,
    /// What vouches for it: `unsigned: fetched over TLS from <url>` (plain HTTP only to this
    /// machine).
    provenance: String,
    status: &'a str,
    action: &'static str,
    resource: String,
    requester: &'a str,
    detail: &'a str,
    reason: String,
    approved_groups: usize,
    needed: usize,
    groups: Vec<HoopGroup<'a>>,
    access_seconds: u64,
    received_at: i64,
}

#[derive(Debug, Serialize)]
struct HoopGroup<'a> {
    group: &'a str,
    status: &'a str,
    reviewed_by: Option<&'a str>,
}

impl<'a> From<&'a engine::hoop::inbox::HoopItem> for HoopRequest<'a> {
    fn from(i: &'a engine::hoop::inbox::HoopItem) -> Self {
        HoopRequest {
            kind: "hoop",
            id: i.id(),
            connection: &i.connection,
            url: i.url.as_str(),
            provenance: i.provenance(),
            status: &i.review.status,
            action: i.action(),
            resource: i.resource(),
            requester: i.requester(),
            detail: i.detail(),
            reason: i.reason(),
            approved_groups: i.review.approved_groups(),
            needed: i.review.needed(),
            groups: i
                .review
                .review_groups_data
                .iter()
                .map(|g| HoopGroup {
                    group: &g.group,
                    status: &g.status,
                    reviewed_by: g.reviewed_by.as_ref().map(|b| b.email.as_str()),
                })
                .collect(),
            access_seconds: i.review.access_seconds(),
            received_at: i.received_at,
        }
    }
}
