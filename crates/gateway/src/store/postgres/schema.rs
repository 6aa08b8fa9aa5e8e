//! The PostgreSQL schema and its migrations. Version 1 is the SQLite schema at its version 17
//! in PostgreSQL's terms: 64-bit integers, `bytea` for bytes, a `rowid` column (insertion
//! order, which SQLite's implicit rowid gives) on the tables whose statements order ties by
//! it, the event counter as a row of
//! `counters` (SQLite keeps it in `sqlite_sequence`), the directory's version raised by a
//! trigger function, and the audit log's index on its entries' request id over `json`.
//!
//! The version is the one row of `schema_version`. Migrating takes the store's write lock (the
//! transaction-level advisory lock every write takes), so replicas that start at once migrate
//! once, and runs every missing version in one transaction with the new version number: a
//! failed migration leaves the old version intact. A database newer than this build is
//! refused.

/// The schema version this build writes.
pub(super) const SCHEMA_VERSION: i64 = 2;

/// Version 1: every table of the gateway.
const SCHEMA_V1: &str = r#"
CREATE TABLE tokens(
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    team TEXT,
    environments TEXT NOT NULL DEFAULT '[]',
    role TEXT NOT NULL DEFAULT 'requester'
);
CREATE TABLE approvers(
    name TEXT PRIMARY KEY,
    user_id TEXT NOT NULL
);
CREATE TABLE invites(
    code_hash TEXT PRIMARY KEY,
    approver TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE TABLE pairings(
    id TEXT PRIMARY KEY,
    approver TEXT NOT NULL,
    device_key TEXT NOT NULL,
    device_name TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE TABLE devices(
    id TEXT PRIMARY KEY,
    approver TEXT NOT NULL,
    public_key TEXT NOT NULL,
    name TEXT NOT NULL,
    paired_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE passkeys(
    cred_id TEXT PRIMARY KEY,
    approver TEXT NOT NULL,
    passkey TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    counter BIGINT NOT NULL DEFAULT 0,
    backup_eligible BIGINT NOT NULL DEFAULT 0,
    backup_state BIGINT NOT NULL DEFAULT 0,
    retired_at BIGINT,
    device_id TEXT,
    aaguid TEXT,
    registration TEXT,
    last_used_at BIGINT,
    attested BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX passkeys_approver ON passkeys(approver);
CREATE TABLE requests(
    id TEXT PRIMARY KEY,
    signed TEXT NOT NULL,
    digest TEXT NOT NULL,
    requester TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    min_approvals BIGINT NOT NULL,
    match_code TEXT,
    match_failures BIGINT NOT NULL DEFAULT 0,
    dup_key TEXT NOT NULL,
    closed_at BIGINT,
    status_seq BIGINT NOT NULL DEFAULT 1,
    status_at BIGINT NOT NULL DEFAULT 0,
    revoked_at BIGINT,
    revoked_by TEXT,
    acked_at BIGINT,
    acked_by TEXT,
    used_at BIGINT
);
CREATE INDEX requests_pending ON requests(state, expires_at);
CREATE INDEX requests_dup ON requests(dup_key, state);
CREATE INDEX requests_requester ON requests(requester, created_at);
CREATE TABLE challenges(
    request_id TEXT NOT NULL,
    approver TEXT NOT NULL,
    state TEXT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY(request_id, approver)
);
CREATE TABLE decisions(
    rowid BIGSERIAL NOT NULL,
    decision_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    approver TEXT NOT NULL,
    verdict TEXT NOT NULL,
    digest TEXT NOT NULL,
    signed TEXT NOT NULL,
    receipt TEXT NOT NULL,
    at BIGINT NOT NULL,
    person TEXT,
    eligible TEXT,
    UNIQUE(request_id, approver)
);
CREATE TABLE events(
    seq BIGINT PRIMARY KEY,
    approver TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX events_approver ON events(approver, seq);
CREATE TABLE audit(
    seq BIGINT PRIMARY KEY,
    entry TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE device_checkpoints(
    device TEXT PRIMARY KEY REFERENCES devices(id),
    seq BIGINT NOT NULL,
    head TEXT NOT NULL,
    signed TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE TABLE reports(
    report_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    approver TEXT NOT NULL,
    device_id TEXT NOT NULL,
    requester TEXT NOT NULL,
    signed TEXT NOT NULL,
    ack TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE TABLE blocks(
    requester TEXT NOT NULL,
    approver TEXT NOT NULL,
    report_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (requester, approver)
);
CREATE INDEX decisions_votes ON decisions(request_id, at, approver, verdict);
CREATE TABLE passkey_enrolments(
    id TEXT PRIMARY KEY,
    approver TEXT NOT NULL,
    device_id TEXT NOT NULL,
    proof_state TEXT NOT NULL,
    registration_state TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE TABLE people(
    id TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    removed_at BIGINT
);
CREATE TABLE person_identities(
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    person TEXT NOT NULL REFERENCES people(id),
    PRIMARY KEY (kind, name)
);
CREATE INDEX person_identities_person ON person_identities(person);
CREATE TABLE person_groups(
    person TEXT NOT NULL REFERENCES people(id),
    grp TEXT NOT NULL,
    PRIMARY KEY (person, grp)
);
CREATE INDEX person_groups_grp ON person_groups(grp);
CREATE TABLE directory_version(
    id BIGINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
CREATE TABLE acks(
    ack_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES requests(id),
    approver TEXT NOT NULL,
    device_id TEXT NOT NULL,
    signed TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX acks_request ON acks(request_id);
CREATE TABLE memberships(
    approver TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    person TEXT,
    groups TEXT NOT NULL,
    issued_at BIGINT NOT NULL
);
CREATE TABLE revocations(
    rowid BIGSERIAL NOT NULL,
    decision_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES requests(id),
    approver TEXT NOT NULL,
    digest TEXT NOT NULL,
    signed TEXT NOT NULL,
    receipt TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE TABLE log_hashes(
    idx BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL
);
CREATE TABLE log_checkpoints(
    size BIGINT PRIMARY KEY,
    root TEXT NOT NULL,
    note TEXT NOT NULL,
    signed_at BIGINT NOT NULL
);
CREATE TABLE issued_challenges(
    digest TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    approver TEXT NOT NULL,
    signed TEXT NOT NULL,
    issued_at BIGINT NOT NULL
);
CREATE TABLE log_cosignatures(
    size BIGINT NOT NULL,
    device TEXT NOT NULL,
    line TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY(size, device)
);
CREATE TABLE admission_holds(
    rowid BIGSERIAL NOT NULL,
    op_key TEXT NOT NULL,
    request_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY(op_key, request_id)
);
CREATE INDEX admission_holds_newest ON admission_holds(op_key, created_at);
CREATE TABLE notify_cursor(
    id BIGINT PRIMARY KEY CHECK (id = 1),
    next_seq BIGINT NOT NULL
);
CREATE TABLE deliveries(
    rowid BIGSERIAL NOT NULL,
    id TEXT PRIMARY KEY,
    destination TEXT NOT NULL,
    event TEXT NOT NULL,
    request_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    delivered_at BIGINT,
    failed_at BIGINT,
    last_error TEXT,
    skipped TEXT
);
CREATE INDEX deliveries_due ON deliveries(next_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE TABLE github_deployments(
    request_id TEXT PRIMARY KEY,
    delivery TEXT NOT NULL UNIQUE,
    callback_url TEXT NOT NULL,
    installation_id BIGINT NOT NULL,
    environment TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE email_digest(
    id BIGINT PRIMARY KEY CHECK (id = 1),
    last_at BIGINT NOT NULL
);
-- Device authorizations used, each once on every replica (see `Store::claim_once`).
CREATE TABLE used_once(
    key TEXT PRIMARY KEY,
    at BIGINT NOT NULL
);
CREATE INDEX used_once_at ON used_once(at);
-- The highest event id ever used (ids are never reused, even after events are deleted).
CREATE TABLE counters(
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters(name, value) VALUES ('events', 0);
CREATE INDEX audit_request ON audit((entry::json ->> 'request_id'));
INSERT INTO directory_version(id, version) VALUES (1, 0);
-- Every change to the directory's tables raises its version, one per row as in SQLite.
CREATE FUNCTION directory_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE directory_version SET version = version + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER people_version AFTER INSERT OR UPDATE OR DELETE ON people
    FOR EACH ROW EXECUTE FUNCTION directory_changed();
CREATE TRIGGER person_identities_version AFTER INSERT OR UPDATE OR DELETE ON person_identities
    FOR EACH ROW EXECUTE FUNCTION directory_changed();
CREATE TRIGGER person_groups_version AFTER INSERT OR UPDATE OR DELETE ON person_groups
    FOR EACH ROW EXECUTE FUNCTION directory_changed();
"#;

/// Version 2: an event sent once to a wide audience (a request's groups, docs/protocol.md
/// 3.12) is one row whose `approver` is `+`, with its audience here.
const SCHEMA_V2: &str = "ALTER TABLE events ADD COLUMN audience TEXT;";

/// Each schema version's statements, in order.
pub(super) const MIGRATIONS: [&str; 2] = [SCHEMA_V1, SCHEMA_V2];
