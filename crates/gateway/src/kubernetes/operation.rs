//! What an AdmissionReview asks for, as the webhook holds it: not held at all, or one exact
//! operation ([`Held`]) with the request it becomes (action, resource, summary, detail) and the
//! key of the operation that its grant matches: the user, the namespace, the pod and container
//! and the command, or the object and the digest of its normalised form.
//!
//! An object is normalised before it is hashed, so that a retried `kubectl apply` matches its
//! first attempt: `metadata.uid`, `resourceVersion`, `generation`, `creationTimestamp`,
//! `managedFields`, `selfLink` and `deletionTimestamp` are dropped, and so is `status`; all of
//! them are set by the API server, never by the one who asks. The digest is SHA-256 of the RFC
//! 8785 form of what is left.

use kube_core::admission::{AdmissionRequest, Operation};
use kube_core::DynamicObject;
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::config::kubernetes::{matches_any, KubernetesConfig};

/// A review the webhook cannot read: its sentence.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

/// An operation the webhook holds until it is approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The request's requester, `k8s:<username>`.
    pub requester: String,
    /// The user's groups, for the policy.
    pub groups: Vec<String>,
    pub action: String,
    pub resource: String,
    pub summary: String,
    pub detail: String,
    /// Lowercase hex SHA-256 of the operation's canonical form: what a grant matches.
    pub key: String,
}

/// What the webhook does with a review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// Nothing the configuration holds: admitted at once.
    NotHeld,
    Held(Box<Held>),
}

/// The verb of an operation, lowercase.
fn verb(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "create",
        Operation::Update => "update",
        Operation::Delete => "delete",
        Operation::Connect => "connect",
    }
}

/// Classifies `req` under `cfg`.
pub fn classify(
    cfg: &KubernetesConfig,
    req: &AdmissionRequest<DynamicObject>,
) -> Result<Classified, Malformed> {
    let namespace = req.namespace.clone().unwrap_or_default();
    let user = req.user_info.username.clone().unwrap_or_default();
    if user.is_empty() {
        return Err(Malformed(
            "The review names no user (userInfo.username).".into(),
        ));
    }
    let requester = format!("k8s:{user}");
    if !requester.bytes().all(|b| b.is_ascii_graphic()) || requester.len() > 128 {
        return Err(Malformed(format!(
            "The Kubernetes user name {user:?} cannot be a Countersign requester: it must be at most 124 printable ASCII characters without spaces."
        )));
    }
    let groups = req.user_info.groups.clone().unwrap_or_default();
    let sub = req.sub_resource.clone().unwrap_or_default();
    let held = match req.operation {
        Operation::Connect => {
            let pod_connect = req.resource.group.is_empty()
                && req.resource.resource == "pods"
                && matches!(sub.as_str(), "exec" | "attach" | "portforward");
            if !pod_connect
                || !cfg.hold_pod_connect
                || !matches_any(&cfg.connect_namespaces, &namespace)
            {
                return Ok(Classified::NotHeld);
            }
            connect(req, &sub, &namespace, &user)?
        }
        _ => {
            let op = verb(&req.operation).to_ascii_uppercase();
            let holds = cfg
                .resources
                .iter()
                .any(|r| r.holds(&req.resource.group, &req.resource.resource, &namespace, &op));
            if !holds || !sub.is_empty() {
                return Ok(Classified::NotHeld);
            }
            object_change(req, &namespace, &user)?
        }
    };
    Ok(Classified::Held(Box::new(Held {
        requester,
        groups,
        ..held
    })))
}

fn text(v: &Value, field: &str) -> Option<String> {
    v.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn key_of(v: &Value) -> Result<String, Malformed> {
    let bytes = countersign_protocol::canonical::to_canonical_bytes(v)
        .map_err(|e| Malformed(format!("The operation has no canonical form: {e}")))?;
    Ok(hex::encode(sha2::Sha256::digest(&bytes)))
}

/// `kubectl exec`, `attach` or `port-forward` into a pod.
fn connect(
    req: &AdmissionRequest<DynamicObject>,
    sub: &str,
    namespace: &str,
    user: &str,
) -> Result<Held, Malformed> {
    let pod = &req.name;
    if pod.is_empty() || namespace.is_empty() {
        return Err(Malformed(
            "A CONNECT review must name the pod and its namespace.".into(),
        ));
    }
    let options = req
        .object
        .as_ref()
        .map(|o| o.data.clone())
        .unwrap_or(Value::Null);
    let container = text(&options, "container").unwrap_or_default();
    let shown_container = if container.is_empty() {
        "(default)"
    } else {
        &container
    };
    let (action, summary, detail, what) = match sub {
        "exec" => {
            let command = match options.get("command") {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|c| c.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| Malformed("PodExecOptions.command must be strings.".into()))?,
                None | Some(Value::Null) => Vec::new(),
                Some(_) => return Err(Malformed("PodExecOptions.command must be a list.".into())),
            };
            if command.is_empty() {
                return Err(Malformed("An exec review must carry the command (PodExecOptions.command).".into()));
            }
            let argv = serde_json::to_string(&command)
                .map_err(|e| Malformed(format!("The command cannot be written: {e}")))?;
            (
                "kubectl.exec",
                format!("kubectl exec into {namespace}/{pod} ({shown_container})"),
                format!(
                    "user: {user}\npod: {namespace}/{pod}\ncontainer: {shown_container}\nargv: {argv}\nstdin: {}, tty: {}",
                    flag(&options, "stdin"),
                    flag(&options, "tty")
                ),
                json!({"command": command}),
            )
        }
        "attach" => (
            "kubectl.attach",
            format!("kubectl attach to {namespace}/{pod} ({shown_container})"),
            format!(
                "user: {user}\npod: {namespace}/{pod}\ncontainer: {shown_container}\nstdin: {}, tty: {}",
                flag(&options, "stdin"),
                flag(&options, "tty")
            ),
            json!({"stdin": flag(&options, "stdin")}),
        ),
        _ => {
            let ports: Vec<i64> = options
                .get("ports")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            let shown = if ports.is_empty() {
                "(as the client asks)".to_owned()
            } else {
                ports.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            };
            (
                "kubectl.portforward",
                format!("kubectl port-forward to {namespace}/{pod}"),
                format!("user: {user}\npod: {namespace}/{pod}\nports: {shown}"),
                json!({"ports": ports}),
            )
        }
    };
    let key = key_of(&json!({
        "op": "CONNECT", "sub": sub, "user": user, "namespace": namespace,
        "pod": pod, "container": container, "what": what,
    }))?;
    Ok(Held {
        requester: String::new(),
        groups: Vec::new(),
        action: action.into(),
        resource: format!("{namespace}/{pod}/{container}"),
        summary,
        detail,
        key,
    })
}

fn flag(v: &Value, field: &str) -> bool {
    v.get(field).and_then(Value::as_bool).unwrap_or(false)
}

/// The object without what the API server sets: see the module documentation.
pub fn normalised(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(map) = o.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "managedFields",
                "selfLink",
                "deletionTimestamp",
            ] {
                meta.remove(field);
            }
        }
    }
    o
}

/// SHA-256 (hex) of the normalised object's RFC 8785 form.
pub fn object_digest(object: &Value) -> Result<String, Malformed> {
    key_of(&normalised(object))
}

fn object_json(o: Option<&DynamicObject>) -> Result<Option<Value>, Malformed> {
    o.map(|o| {
        serde_json::to_value(o).map_err(|e| Malformed(format!("The object cannot be read: {e}")))
    })
    .transpose()
}

/// A CREATE, UPDATE or DELETE of an object.
fn object_change(
    req: &AdmissionRequest<DynamicObject>,
    namespace: &str,
    user: &str,
) -> Result<Held, Malformed> {
    let object = object_json(req.object.as_ref())?;
    let old = object_json(req.old_object.as_ref())?;
    let subject = match req.operation {
        Operation::Delete => old.as_ref().or(object.as_ref()),
        _ => object.as_ref(),
    };
    let Some(subject) = subject else {
        return Err(Malformed(format!(
            "A {} review must carry the object.",
            verb(&req.operation).to_ascii_uppercase()
        )));
    };
    let name = if req.name.is_empty() {
        subject
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                subject
                    .pointer("/metadata/generateName")
                    .and_then(Value::as_str)
                    .map(|g| format!("{g}*"))
            })
            .unwrap_or_default()
    } else {
        req.name.clone()
    };
    let kind = req.kind.kind.to_ascii_lowercase();
    let digest = object_digest(subject)?;
    let v = verb(&req.operation);
    let gv = if req.kind.group.is_empty() {
        req.kind.version.clone()
    } else {
        format!("{}/{}", req.kind.group, req.kind.version)
    };
    let place = if namespace.is_empty() {
        name.clone()
    } else {
        format!("{namespace}/{name}")
    };
    let mut detail = format!(
        "user: {user}\n{} {} {place} ({gv})\n",
        capitalised(v),
        req.kind.kind
    );
    match (&req.operation, old.as_ref(), object.as_ref()) {
        (Operation::Update, Some(old), Some(new)) => {
            let changes = super::diff::changes(&normalised(old), &normalised(new));
            detail.push_str(&super::diff::render(&changes));
        }
        (Operation::Delete, _, _) => {}
        _ => detail.push_str(&super::diff::facts(subject)),
    }
    detail.push_str(&format!("object sha256: {digest}\n"));
    let key = key_of(&json!({
        "op": v.to_ascii_uppercase(), "user": user, "group": req.kind.group,
        "kind": req.kind.kind, "namespace": namespace, "name": name, "object": digest,
    }))?;
    Ok(Held {
        requester: String::new(),
        groups: Vec::new(),
        action: format!("k8s.{v}.{kind}"),
        resource: format!("{namespace}/{kind}/{name}"),
        summary: format!("{} {} {place}", capitalised(v), req.kind.kind),
        detail,
        key,
    })
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}
