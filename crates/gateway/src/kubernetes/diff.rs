//! The readable part of an object change's detail: for an UPDATE the leaves that changed
//! (path, old value, new value), for a CREATE the facts an approver looks for first (the
//! replicas and every container's image). What is shown is a summary; the object digest in
//! the detail is what the grant matches.

use serde_json::Value;

/// The most changed leaves listed; the rest are counted.
const MAX_SHOWN: usize = 40;
/// The longest value shown in full, in characters.
const MAX_VALUE: usize = 160;

/// One changed leaf: its path, and its value before and after (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

fn leaf(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > MAX_VALUE {
        let cut: String = s.chars().take(MAX_VALUE).collect();
        format!("{cut}… ({} characters)", s.chars().count())
    } else {
        s
    }
}

/// The leaves that differ between `old` and `new`, in path order.
pub fn changes(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk("", Some(old), Some(new), &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Change>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                walk(&join(path, k), a.get(k), b.get(k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                walk(&format!("{path}[{i}]"), a.get(i), b.get(i), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(Change {
            path: path.to_owned(),
            old: a.map(leaf),
            new: b.map(leaf),
        }),
    }
}

/// The changes as lines, `path: old → new`, at most [`MAX_SHOWN`] of them.
pub fn render(changes: &[Change]) -> String {
    let mut s = String::new();
    if changes.is_empty() {
        s.push_str("no change to the object's specification\n");
    }
    for c in changes.iter().take(MAX_SHOWN) {
        let old = c.old.as_deref().unwrap_or("(absent)");
        let new = c.new.as_deref().unwrap_or("(absent)");
        s.push_str(&format!("{}: {old} → {new}\n", c.path));
    }
    if changes.len() > MAX_SHOWN {
        s.push_str(&format!(
            "… and {} more changes\n",
            changes.len() - MAX_SHOWN
        ));
    }
    s
}

/// The replicas and the containers' images of a new object, where it has them.
pub fn facts(object: &Value) -> String {
    let mut s = String::new();
    if let Some(r) = object.pointer("/spec/replicas") {
        s.push_str(&format!("replicas: {}\n", leaf(r)));
    }
    let pod_spec = object
        .pointer("/spec/template/spec")
        .or_else(|| object.pointer("/spec/jobTemplate/spec/template/spec"))
        .or_else(|| object.get("spec"));
    for list in ["initContainers", "containers"] {
        let containers = pod_spec
            .and_then(|p| p.get(list))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in containers {
            let name = c.get("name").map(leaf).unwrap_or_default();
            let image = c.get("image").map(leaf).unwrap_or_default();
            s.push_str(&format!("image {name}: {image}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_image_change_is_one_line_and_an_unchanged_object_says_so() {
        let old = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "app", "image": "web:1"}]}}}});
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("web:2");
        let c = changes(&old, &new);
        assert_eq!(
            render(&c),
            "spec.template.spec.containers[0].image: web:1 → web:2\n"
        );
        assert_eq!(
            render(&changes(&old, &old)),
            "no change to the object's specification\n"
        );
        new["spec"]["paused"] = json!(true);
        assert_eq!(changes(&old, &new)[0].old, None);
    }

    #[test]
    fn facts_name_replicas_and_images() {
        let o = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "web:1"}]}}}});
        assert_eq!(facts(&o), "replicas: 2\nimage app: web:1\n");
    }
}
