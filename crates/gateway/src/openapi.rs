//! The OpenAPI 3.1 document served at `/v2/openapi.json`. Message schemas are described in
//! prose in docs/protocol.md; this document names every endpoint, its authentication and its
//! answers so that generic tools can drive the API.

use countersign_protocol::api::ErrorCode;
use serde_json::{json, Value};

fn error_responses(codes: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for c in codes {
        m.insert(
            (*c).to_string(),
            json!({"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    Value::Object(m)
}

fn with_errors(ok: Value, codes: &[&str]) -> Value {
    let mut r = error_responses(codes);
    if let (Some(map), Value::Object(okm)) = (r.as_object_mut(), ok) {
        map.extend(okm);
    }
    r
}

fn json_body(desc: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {"type": "object", "description": desc}}}})
}

fn ok(desc: &str) -> Value {
    json!({"200": {"description": desc, "content": {"application/json": {"schema": {"type": "object"}}}}})
}

/// The error body's `code`: a string, with every code this gateway knows as an example. Not an
/// `enum`: a client must accept codes added later (docs/protocol.md 3.18).
fn error_code_schema() -> Value {
    let known: Vec<&str> = ErrorCode::KNOWN.iter().map(ErrorCode::as_str).collect();
    json!({
        "type": "string",
        "description": "A stable code of docs/protocol.md 6.2. A client treats a code it does not know as a refusal with the given message, not as a malformed answer.",
        "examples": known
    })
}

pub fn document() -> Value {
    // Built in parts: one `json!` of every path passes serde_json's macro recursion limit.
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Countersign gateway API",
            "version": "1",
            "description": "Messages, canonical form and signatures are specified in docs/protocol.md."
        },
        "components": {
            "securitySchemes": {
                "requesterToken": {"type": "http", "scheme": "bearer", "description": "A token from `countersign-gateway token create`."},
                "device": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "Countersign-Device device=<id>, ts=<unix>, nonce=<hex>, sig=<base64url>"}
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": error_code_schema(), "message": {"type": "string"}}}}
                }
            }
        },
        "paths": {
            "/v2/info": {"get": {"summary": "Gateway name, signing key and WebAuthn origin", "responses": ok("GatewayInfo")}},
            "/v2/pair/start": {"post": {"summary": "Redeem a one-time pairing code", "requestBody": json_body("PairStart"), "responses": with_errors(ok("PairChallenge"), &["400", "404", "409", "410"])}},
            "/v2/pair/finish": {"post": {"summary": "Register the device key and passkey", "requestBody": json_body("Signed<PairFinish>"), "responses": with_errors(ok("Signed<Paired>"), &["400", "401", "403", "404", "409", "410"])}},
            "/v2/stream": {"get": {
                "summary": "Server-Sent Events stream for this device's approver: a signed hello bound to this request's Authorization nonce, then gateway-signed event envelopes (requests and status changes)",
                "security": [{"device": []}],
                "parameters": [{"name": "Last-Event-ID", "in": "header", "required": false, "schema": {"type": "integer"}}],
                "responses": with_errors(json!({"200": {"description": "text/event-stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}}), &["400", "401"])
            }},
            "/v2/requests": {"post": {"summary": "Create an approval request", "security": [{"requesterToken": []}], "requestBody": json_body("NewRequest"), "responses": with_errors(json!({"201": {"description": "CreatedRequest", "content": {"application/json": {"schema": {"type": "object"}}}}, "200": {"description": "CreatedRequest (an identical pending request already existed)", "content": {"application/json": {"schema": {"type": "object"}}}}}), &["400", "401", "403", "429"])}},
            "/v2/requests/{id}": {"get": {
                "summary": "A request and its signed status; `wait` holds the answer until the state is final",
                "security": [{"requesterToken": []}],
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "wait", "in": "query", "required": false, "schema": {"type": "integer", "maximum": 60}}
                ],
                "responses": with_errors(ok("RequestView"), &["401", "404"])
            }},
            "/v2/requests/{id}/withdraw": {"post": {
                "summary": "Withdraw a pending request",
                "security": [{"requesterToken": []}],
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": with_errors(ok("RequestView"), &["401", "409"])
            }},
            "/v2/decisions": {"post": {"summary": "Deliver a device-signed decision", "requestBody": json_body("Signed<Decision>"), "responses": with_errors(ok("Signed<Receipt>"), &["400", "401", "403", "404", "409", "410"]), "description": "A final refusal's error answer also carries `refusal` (Signed<Refusal>) and `status` (Signed<StatusUpdate>); any other error answer is unsigned and is never final."}},
            "/v2/checkpoints": {"post": {"summary": "Upload this device's latest signed audit checkpoint; one that goes backwards or forks is refused", "security": [{"device": []}], "requestBody": json_body("Signed<Checkpoint>"), "responses": with_errors(ok("CheckpointState"), &["400", "401", "409"])}},
            "/v2/checkpoints/latest": {"get": {"summary": "The latest audit checkpoint this gateway holds for this device", "security": [{"device": []}], "responses": with_errors(ok("CheckpointState"), &["401"])}},
            "/v2/passkeys/enrol": {"post": {"summary": "Start adding a passkey to this device's approver: a proof challenge for a registered passkey and a registration challenge for the new one", "security": [{"device": []}], "responses": with_errors(ok("PasskeyEnrolment"), &["401", "403"])}},
            "/v2/passkeys": {
                "get": {"summary": "The approver's active passkeys, signed by the gateway", "security": [{"device": []}], "responses": with_errors(ok("Signed<PasskeyList>"), &["401"])},
                "post": {"summary": "Add a passkey: the proof by a registered passkey and the new registration, device-signed", "security": [{"device": []}], "requestBody": json_body("Signed<PasskeyAdd>"), "responses": with_errors(ok("Signed<PasskeyList>"), &["400", "401", "403", "404", "409", "410"])}
            },
            "/v2/requests/{id}/evidence": {"get": {"summary": "The request's evidence bundle (protocol.md 9.7), for its requester or an auditor", "security": [{"requesterToken": []}], "responses": with_errors(ok("Evidence"), &["401", "403", "404"])}},
            "/v2/log/checkpoint": {"get": {"summary": "The newest log checkpoint, a C2SP signed note (protocol.md 9.6)", "responses": {"200": {"description": "The checkpoint note", "content": {"text/plain": {}}}}}},
            "/v2/log/entries": {"get": {"summary": "The log's entries start <= index < end (at most 1000), as JSON Lines", "security": [{"requesterToken": []}], "responses": with_errors(json!({"200": {"description": "One LogEntry per line", "content": {"application/jsonl": {}}}}), &["400", "401", "403"])}},
            "/v2/log/proof/inclusion": {"get": {"summary": "An inclusion proof of leaf index in the tree of size leaves", "security": [{"requesterToken": []}, {"device": []}], "responses": with_errors(ok("Proof"), &["400", "401", "403"])}},
            "/v2/log/proof/consistency": {"get": {"summary": "A consistency proof from old to size leaves", "security": [{"requesterToken": []}, {"device": []}], "responses": with_errors(ok("Proof"), &["400", "401", "403"])}},
            "/v2/passkeys/remove": {"post": {"summary": "Remove one of the approver's passkeys (never the last)", "security": [{"device": []}], "requestBody": json_body("Signed<PasskeyRemove>"), "responses": with_errors(ok("Signed<PasskeyList>"), &["400", "401", "403", "404", "409"])}},
            "/v2/challenges": {"post": {"summary": "A WebAuthn challenge issued now for this device's approver: to decide a pending request, or to revoke the approver's live approval; it replaces the approver's unused one", "requestBody": json_body("ChallengeRequest"), "responses": with_errors(ok("IssuedChallenge"), &["400", "401", "403", "404", "409", "410"])}},
            "/v2/acks": {"post": {"summary": "Acknowledge a break-glass or auto-approved request addressed to this approver: the first acknowledgement sets the grant's acknowledged_at and acknowledged_by", "requestBody": json_body("Signed<Acknowledgement>"), "responses": with_errors(ok("Signed<StatusUpdate>"), &["400", "401", "403", "404", "409"])}},
            "/v2/reports": {"post": {"summary": "Report an unexpected request: blocks its requester from this approver and denies their pending requests to them", "requestBody": json_body("Signed<Report>"), "responses": with_errors(ok("ReportAck"), &["400", "401", "403", "404", "409"])}},
            "/v2/openapi.json": {"get": {"summary": "This document", "responses": ok("OpenAPI document")}},
            "/v1": {"description": "Protocol version 1: every method is answered 410 protocol_upgraded (pair the device again)", "get": {"deprecated": true, "responses": with_errors(json!({}), &["410"])}},
            "/v1/{*rest}": {"description": "Every path of protocol version 1: every method is answered 410 protocol_upgraded (pair the device again)", "get": {"deprecated": true, "parameters": [{"name": "rest", "in": "path", "required": true, "schema": {"type": "string"}}], "responses": with_errors(json!({}), &["410"])}}
        }
    });
    doc["paths"]["/v2/devices/{id}/checkpoint"] = json!({"get": {"summary": "The audit checkpoint the gateway holds for a device, with its signed CheckpointAck (protocol.md 9.4), for an auditor", "security": [{"requesterToken": []}], "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}], "responses": with_errors(ok("CheckpointState"), &["401", "403", "404"])}});
    doc["paths"]["/github/webhook"] = json!({"post": {"summary": "A GitHub App's webhook (docs/github.md): a deployment_protection_rule event, authenticated by X-Hub-Signature-256, becomes a request; its decision is called back to GitHub", "parameters": [{"name": "X-Hub-Signature-256", "in": "header", "required": true, "schema": {"type": "string"}}, {"name": "X-GitHub-Event", "in": "header", "required": true, "schema": {"type": "string"}}, {"name": "X-GitHub-Delivery", "in": "header", "required": true, "schema": {"type": "string"}}], "requestBody": json_body("deployment_protection_rule event"), "responses": with_errors(json!({"200": {"description": "A ping, or a redelivered event: its request_id"}, "202": {"description": "The event's request_id, or an event that is ignored"}}), &["400", "401", "404"])}});
    doc["paths"]["/v2/log/cosignatures"] = json!({"post": {"summary": "A witness's tlog-cosignature/v1 of a log checkpoint (protocol.md 9.8), kept and carried in evidence bundles", "security": [{"device": []}], "requestBody": json_body("Cosignature"), "responses": with_errors(ok("CosignatureAck"), &["400", "401", "404"])}});
    doc["paths"]["/healthz"] = json!({"get": {"summary": "Liveness: the process answers (docs/operations.md)", "responses": {"200": {"description": "{\"alive\": true}"}}}});
    doc["paths"]["/readyz"] = json!({"get": {"summary": "Readiness: the database answers, its schema is this build's, and the gateway is not shutting down (docs/operations.md)", "responses": {"200": {"description": "Ready: {ready, database, schema, schema_wanted, draining, problems}"}, "503": {"description": "Not ready, with the same fields and the problems in words"}}}});
    doc
}
