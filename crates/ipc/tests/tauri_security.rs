//! Tidy checks on the shell's security configuration: the CSP, the dangerous switches of
//! `tauri.conf.json`, and what the capabilities grant. Each fails if the configuration
//! loosens, so loosening it is a deliberate change to this file too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The desktop shell's directory. This test lives in the workspace (src-tauri builds on its
/// own, with the desktop toolchain) so that it runs in every CI run.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../src-tauri")
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn conf() -> Value {
    read_json(&root().join("tauri.conf.json"))
}

/// Permissions the UI may have: event listening and the app's own commands.
fn allowed_permissions() -> BTreeSet<String> {
    let mut allowed: BTreeSet<String> = ["core:event:allow-listen", "core:event:allow-unlisten"]
        .into_iter()
        .map(String::from)
        .collect();
    for c in countersign_ipc::COMMANDS {
        allowed.insert(format!("allow-{}", c.replace('_', "-")));
    }
    allowed
}

/// Checks one CSP string; returns the problems found.
fn csp_problems(csp: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for directive in csp.split(';').map(str::trim).filter(|d| !d.is_empty()) {
        let mut parts = directive.split_whitespace();
        let name = parts.next().unwrap_or_default().to_ascii_lowercase();
        seen.insert(name.clone());
        for source in parts {
            let s = source.to_ascii_lowercase();
            let ok = match s.as_str() {
                "'self'" | "'none'" => true,
                "data:" => name == "img-src",
                "ipc:" | "http://ipc.localhost" => name == "connect-src",
                _ => false,
            };
            if !ok {
                problems.push(format!("`{source}` is not allowed in {name}"));
            }
        }
    }
    for required in [
        "default-src",
        "script-src",
        "style-src",
        "connect-src",
        "object-src",
        "base-uri",
        "frame-ancestors",
        "form-action",
    ] {
        if !seen.contains(required) {
            problems.push(format!("{required} is missing"));
        }
    }
    for must_be_none in [
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        if !csp.contains(must_be_none) {
            problems.push(format!("`{must_be_none}` is missing"));
        }
    }
    problems
}

#[test]
fn csp_is_strict() {
    let conf = conf();
    let security = &conf["app"]["security"];
    let csp = security["csp"]
        .as_str()
        .expect("app.security.csp is a string");
    assert_eq!(csp_problems(csp), Vec::<String>::new());
    // A devCsp, if one is added, obeys the same rules.
    if let Some(dev) = security.get("devCsp").and_then(Value::as_str) {
        assert_eq!(csp_problems(dev), Vec::<String>::new(), "devCsp");
    }
}

#[test]
fn csp_checker_catches_loosening() {
    let good = conf()["app"]["security"]["csp"]
        .as_str()
        .unwrap()
        .to_owned();
    for bad in [
        good.replace("script-src 'self'", "script-src 'self' 'unsafe-eval'"),
        good.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'"),
        good.replace("script-src 'self'", "script-src 'self' https://cdn.example"),
        good.replace("connect-src ipc:", "connect-src ipc: wss://evil.example"),
        good.replace("default-src 'self'", "default-src *"),
        good.replace("script-src 'self'", "script-src 'self' data:"),
        good.replace("; object-src 'none'", ""),
    ] {
        assert!(!csp_problems(&bad).is_empty(), "not caught: {bad}");
    }
}

/// Walks every key and string value.
fn walk<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    out.push((path.clone(), v));
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                walk(child, format!("{path}.{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                walk(child, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn no_dangerous_settings_or_remote_content() {
    let conf = conf();
    let app = &conf["app"];
    assert_ne!(
        app.get("withGlobalTauri"),
        Some(&Value::Bool(true)),
        "withGlobalTauri"
    );
    // freezePrototype stays off: freezing Object.prototype makes every later
    // `Foo.prototype.toString = ...` throw in strict code (the "override mistake"), which
    // breaks @preact/signals and so the whole UI.
    assert_ne!(
        app["security"]["assetProtocol"]["enable"],
        Value::Bool(true),
        "the asset protocol stays off"
    );
    let mut all = Vec::new();
    walk(&conf, String::new(), &mut all);
    for (path, v) in &all {
        let key = path.rsplit('.').next().unwrap_or_default();
        assert!(
            !key.to_ascii_lowercase().starts_with("dangerous"),
            "{path}: dangerous settings are not allowed"
        );
        if let Value::String(s) = v {
            let lower = s.to_ascii_lowercase();
            let remote = lower.contains("http://")
                || lower.contains("https://")
                || lower.contains("ws://")
                || lower.contains("wss://");
            let allowed = path == ".$schema"
                || (path == ".build.devUrl" && lower.starts_with("http://localhost:"))
                || path == ".app.security.csp";
            assert!(!remote || allowed, "{path}: remote URL `{s}`");
        }
    }
    // The app loads only its bundled files.
    let dist = conf["build"]["frontendDist"].as_str().unwrap();
    assert!(
        !dist.contains("://"),
        "frontendDist must be a local directory"
    );
    for w in app["windows"].as_array().unwrap() {
        if let Some(url) = w.get("url").and_then(Value::as_str) {
            assert!(
                !url.contains(':'),
                "window url must be a bundled page, not {url}"
            );
        }
    }
    // Only the listed capability is active.
    assert_eq!(app["security"]["capabilities"], serde_json::json!(["main"]));
}

#[test]
fn capabilities_grant_only_the_allow_list() {
    let allowed = allowed_permissions();
    let dir = root().join("capabilities");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) != Some("json") {
            assert!(
                p.extension().and_then(|e| e.to_str()) != Some("toml"),
                "{}: capabilities are JSON here",
                p.display()
            );
            continue;
        }
        files += 1;
        let cap = read_json(&p);
        assert!(
            cap.get("remote").is_none(),
            "{}: no remote access",
            p.display()
        );
        assert_eq!(
            cap["windows"],
            serde_json::json!(["main"]),
            "{}",
            p.display()
        );
        assert!(cap.get("webviews").is_none(), "{}", p.display());
        let granted: BTreeSet<String> = cap["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                v.as_str()
                    .unwrap_or_else(|| panic!("{}: scoped permissions are not used", p.display()))
                    .to_owned()
            })
            .collect();
        let extra: Vec<_> = granted.difference(&allowed).collect();
        assert!(
            extra.is_empty(),
            "{}: grants more than allowed: {extra:?}",
            p.display()
        );
        // Every command the UI calls is granted (else the UI would fail at run time).
        let missing: Vec<_> = allowed.difference(&granted).collect();
        assert!(missing.is_empty(), "{}: missing {missing:?}", p.display());
    }
    assert_eq!(files, 1, "one capability file");
}

#[test]
fn build_script_declares_every_ipc_command() {
    let build = std::fs::read_to_string(root().join("build.rs")).unwrap();
    let start = build.find("const COMMANDS").unwrap();
    let end = start + build[start..].find("];").unwrap();
    let declared: Vec<&str> = build[start..end].split('"').skip(1).step_by(2).collect();
    assert_eq!(declared, countersign_ipc::COMMANDS);
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    for c in countersign_ipc::COMMANDS {
        assert!(
            lib.contains(&format!("commands::{c},")),
            "{c} is not in generate_handler!"
        );
    }
}

#[test]
fn deep_link_scheme_is_registered_for_the_deb() {
    let conf = conf();
    assert_eq!(
        conf["plugins"]["deep-link"]["desktop"]["schemes"],
        serde_json::json!(["countersign"])
    );
    assert_eq!(conf["bundle"]["targets"], serde_json::json!(["deb"]));
    let template = conf["bundle"]["linux"]["deb"]["desktopTemplate"]
        .as_str()
        .unwrap();
    let desktop = std::fs::read_to_string(root().join(template)).unwrap();
    assert!(desktop.contains("MimeType=x-scheme-handler/countersign;"));
    assert!(desktop.contains("Exec={{exec}} %u"));
}

#[test]
fn icons_are_rgba_pngs() {
    let conf = conf();
    for icon in conf["bundle"]["icon"].as_array().unwrap() {
        let icon = icon.as_str().unwrap();
        let bytes = std::fs::read(root().join(icon)).unwrap();
        if icon.ends_with(".png") {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{icon}");
            // IHDR: width(4) height(4) bit depth(1) colour type(1) at offsets 16..26.
            assert_eq!(bytes[24], 8, "{icon}: 8-bit");
            assert_eq!(bytes[25], 6, "{icon}: colour type 6 (RGBA)");
        }
    }
}
