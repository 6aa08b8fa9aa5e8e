//! The Kubernetes admission webhook, through AdmissionReview v1 payloads
//! (`tests/fixtures/kubernetes`, see its README) POSTed over mutual TLS on loopback to the
//! running gateway: `kubectl exec` held as pending, approved with a passkey and its retry
//! admitted once; the same retry again, another command and an expired grant denied; two
//! retries at once admitting one; a deployment CREATE whose retry matches through the
//! normalised object digest, and its `dryRun`; malformed and oversized reviews; and a client
//! without the API server's certificate refused at the handshake.

use std::path::PathBuf;

use countersign_gateway::config::kubernetes::{KubernetesConfig, ResourceRule};
use countersign_gateway::directory_admin as admin;
use countersign_protocol::{RequestState, StreamEvent};
use countersign_test_support::{Device, TestGateway};
use serde_json::Value;

use crate::stages::approve;

const SAM: &str = "sam@example.com";

const POLICY: &str = r#"package countersign

import rego.v1

held if startswith(input.request.action, "kubectl.")

held if startswith(input.request.action, "k8s.")

result := {"allow": true, "rule": "kubernetes", "mode": "ask", "stages": [{"name": "sre", "group": "sre", "min": 1}]} if {
	held
	"dev" in input.requester.groups
} else := {"allow": false, "rule": "kubernetes.not_dev", "message": "only developers may ask"}
"#;

pub(crate) fn fixture(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kubernetes")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

struct Cluster {
    h: TestGateway,
    sam: Device,
    client: reqwest::Client,
    url: String,
    dir: tempfile::TempDir,
    server_cert: PathBuf,
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("kubernetes.rego");
    std::fs::write(&policy, POLICY).unwrap();
    let (cert, key, _) = countersign_test_support::tls::self_signed(dir.path(), "webhook");
    // The CA issues the API server's certificate, and another's.
    let (ca, mut identities) = countersign_test_support::tls::ca_and_clients(
        dir.path(),
        "apiserver",
        &["kube-apiserver", "intruder"],
    );
    let identity = identities.remove(0);
    std::fs::write(dir.path().join("intruder.pem"), &identities[0]).unwrap();
    let k = KubernetesConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: cert.clone(),
        tls_key: key,
        client_ca: ca,
        client_names: vec!["kube-apiserver".into()],
        hold_ms: 200,
        grant_seconds: 300,
        ttl_seconds: 0,
        hold_pod_connect: true,
        connect_namespaces: vec!["prod-*".into()],
        resources: vec![ResourceRule {
            group: "apps".into(),
            resource: "deployments".into(),
            namespaces: vec!["prod-*".into()],
            operations: Vec::new(),
        }],
        max_review_bytes: 256 * 1024,
    };
    let h = TestGateway::start_with(move |c| {
        c.policy_file = Some(policy);
        c.kubernetes = Some(k);
    })
    .await;
    let sam = h.pair(SAM).await;
    admin::set_groups(h.gw(), SAM, &["sre".to_string()]).unwrap();
    let client = client_with(&cert, Some(&identity));
    let port = h.running.kubernetes.as_ref().unwrap().addr.port();
    Cluster {
        h,
        sam,
        client,
        url: format!("https://127.0.0.1:{port}/admit"),
        dir,
        server_cert: cert,
    }
}

fn client_with(server_cert: &std::path::Path, identity: Option<&[u8]>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(server_cert).unwrap()).unwrap();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca);
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(id).unwrap());
    }
    b.build().unwrap()
}

impl Cluster {
    /// POSTs `review` and answers the AdmissionReview's response.
    async fn send(&self, review: &Value) -> Value {
        let r = self
            .client
            .post(&self.url)
            .json(review)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(answer["response"]["uid"], review["request"]["uid"]);
        answer["response"].clone()
    }

    async fn review(&self, name: &str) -> Value {
        self.send(&fixture(name)).await
    }

    /// The id of the pending request a denial names.
    fn pending_id(response: &Value) -> String {
        assert_eq!(response["allowed"], false, "{response}");
        assert_eq!(response["status"]["code"], 403);
        let m = response["status"]["message"].as_str().unwrap();
        let id = m
            .strip_prefix("approval pending: ")
            .and_then(|r| r.split(' ').next())
            .unwrap_or_else(|| panic!("not a pending denial: {m}"));
        assert!(m.ends_with("approve in Countersign, then retry"), "{m}");
        id.to_owned()
    }

    fn audited(&self, kind: &str) -> usize {
        self.h.audited(kind)
    }
}

#[tokio::test]
async fn kubectl_exec_is_held_approved_with_a_passkey_and_its_retry_admitted_exactly_once() {
    let mut c = cluster().await;
    let first = c.review("exec-connect.json").await;
    let id = Cluster::pending_id(&first);

    // The request reaches the approver with exactly what will run.
    let (req, _) = c.sam.request_event(&c.h, &id).await;
    let body = &req.body;
    assert_eq!(body.action, "kubectl.exec");
    assert_eq!(body.requester, "k8s:alice@example.com");
    assert_eq!(body.resource, "prod-eu/web-7d4b9c-x2x9q/app");
    assert!(
        body.detail
            .contains(r#"argv: ["sh","-c","psql -c \"select 1\""]"#),
        "{}",
        body.detail
    );
    assert_eq!(body.grant_seconds, Some(300));
    // Asked again while pending: the same request, not a new one.
    assert_eq!(
        Cluster::pending_id(&c.review("exec-connect-retry.json").await),
        id
    );

    approve(&mut c.sam, &c.h, &id).await;
    let admitted = c.review("exec-connect-retry.json").await;
    assert_eq!(admitted["allowed"], true, "{admitted}");
    let status = c.sam.status_event(&c.h, &id).await.body;
    assert_eq!(status.state, RequestState::Approved);
    assert!(status.grant.unwrap().used_at.is_some(), "the grant is used");

    // The grant is spent: the same retry again makes a new request and is denied.
    let again = Cluster::pending_id(&c.review("exec-connect-retry.json").await);
    assert_ne!(again, id);
    // Another command by the same user in the same container is another operation.
    let other = Cluster::pending_id(&c.review("exec-connect-other-command.json").await);
    assert!(other != id && other != again);
    let (req, _) = c.sam.request_event(&c.h, &other).await;
    assert!(
        req.body.detail.contains("rm -rf /data"),
        "{}",
        req.body.detail
    );
    assert_eq!(c.audited("kubernetes.admitted"), 1);
    assert_eq!(c.audited("kubernetes.held"), 3);
    assert_eq!(c.audited("kubernetes.pending"), 1);
}

#[tokio::test]
async fn an_expired_grant_admits_nothing_and_two_retries_at_once_admit_one() {
    let mut c = cluster().await;
    let id = Cluster::pending_id(&c.review("exec-connect.json").await);
    approve(&mut c.sam, &c.h, &id).await;
    c.h.running.gateway.clock.shift(301);
    let late = Cluster::pending_id(&c.review("exec-connect-retry.json").await);
    assert_ne!(late, id, "past its window the grant admits nothing");

    approve(&mut c.sam, &c.h, &late).await;
    let retry = fixture("exec-connect-retry.json");
    let (a, b) = tokio::join!(c.send(&retry), c.send(&retry));
    let allowed = [&a, &b].iter().filter(|r| r["allowed"] == true).count();
    assert_eq!(allowed, 1, "{a}\n{b}");
    assert_eq!(c.audited("kubernetes.admitted"), 1);
}

#[tokio::test]
async fn a_deployment_retry_matches_its_first_attempt_and_a_changed_image_does_not() {
    let mut c = cluster().await;
    // A server-side dry run creates nothing and is admitted with a warning.
    let dry = c.review("deployment-create-dryrun.json").await;
    assert_eq!(dry["allowed"], true);
    assert!(dry["warnings"][0].as_str().unwrap().starts_with("dry run"));
    assert_eq!(c.audited("kubernetes.held"), 0);
    assert!(c.sam.drain(&c.h).await.is_empty(), "nothing was pushed");

    let id = Cluster::pending_id(&c.review("deployment-create.json").await);
    let (req, _) = c.sam.request_event(&c.h, &id).await;
    assert_eq!(req.body.action, "k8s.create.deployment");
    assert_eq!(req.body.resource, "prod-eu/deployment/web");
    assert!(
        req.body
            .detail
            .contains("image app: registry.example.com/web:1.4.2"),
        "{}",
        req.body.detail
    );
    assert!(req.body.detail.contains("object sha256: "));
    approve(&mut c.sam, &c.h, &id).await;
    // A changed image is another object: a new request, even with the approval live.
    let changed = Cluster::pending_id(&c.review("deployment-create-changed-image.json").await);
    assert_ne!(changed, id);
    // The retry has a new uid, creation time and managed fields, and the same object.
    let retry = c.review("deployment-create-retry.json").await;
    assert_eq!(retry["allowed"], true, "{retry}");
}

#[tokio::test]
async fn an_update_is_shown_as_its_changes() {
    let mut c = cluster().await;
    let id = Cluster::pending_id(&c.review("deployment-update.json").await);
    let (req, _) = c.sam.request_event(&c.h, &id).await;
    assert!(
        req.body
            .detail
            .contains("spec.template.spec.containers[0].image: registry.example.com/web:1.4.2 → registry.example.com/web:1.4.3"),
        "{}",
        req.body.detail
    );
    assert!(!req.body.detail.contains("status."), "{}", req.body.detail);
    approve(&mut c.sam, &c.h, &id).await;
    assert_eq!(
        c.review("deployment-update-retry.json").await["allowed"],
        true
    );
}

#[tokio::test]
async fn what_is_not_held_passes_and_what_the_policy_refuses_is_denied_with_its_sentence() {
    let c = cluster().await;
    let mut dev = fixture("exec-connect.json");
    dev["request"]["namespace"] = "dev".into();
    assert_eq!(c.send(&dev).await["allowed"], true);
    let mut staging = fixture("deployment-create.json");
    staging["request"]["namespace"] = "staging".into();
    assert_eq!(c.send(&staging).await["allowed"], true);

    let mut outsider = fixture("exec-connect.json");
    outsider["request"]["userInfo"]["groups"] = serde_json::json!(["system:authenticated"]);
    let r = c.send(&outsider).await;
    assert_eq!(r["allowed"], false);
    let m = r["status"]["message"].as_str().unwrap();
    assert!(m.contains("only developers may ask"), "{m}");
    assert_eq!(c.audited("kubernetes.refused"), 1);
}

#[tokio::test]
async fn malformed_and_oversized_reviews_get_typed_errors() {
    let c = cluster().await;
    let post = |body: Vec<u8>| {
        c.client
            .post(&c.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let code = |v: Value| v["error"]["code"].as_str().unwrap().to_owned();
    let r = post(b"{not json".to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(code(r.json().await.unwrap()), "invalid_admission_review");
    let mut wrong = fixture("exec-connect.json");
    wrong["apiVersion"] = "admission.k8s.io/v1beta1".into();
    let r = post(serde_json::to_vec(&wrong).unwrap()).await.unwrap();
    assert_eq!(r.status(), 400);
    let mut empty = fixture("exec-connect.json");
    empty.as_object_mut().unwrap().remove("request");
    let r = post(serde_json::to_vec(&empty).unwrap()).await.unwrap();
    assert_eq!(code(r.json().await.unwrap()), "invalid_admission_review");
    let mut no_command = fixture("exec-connect.json");
    no_command["request"]["object"]["command"] = serde_json::json!(null);
    let r = c.send(&no_command).await;
    assert_eq!(r["allowed"], false);

    let mut big = fixture("deployment-create.json");
    big["request"]["object"]["metadata"]["annotations"]["padding"] = "x".repeat(300 * 1024).into();
    let r = post(serde_json::to_vec(&big).unwrap()).await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(code(r.json().await.unwrap()), "admission_review_too_large");
}

#[tokio::test]
async fn only_the_api_servers_certificate_is_served() {
    let c = cluster().await;
    let review = fixture("exec-connect.json");
    // No client certificate: the handshake fails, and no request is created.
    let anonymous = client_with(&c.server_cert, None);
    assert!(anonymous.post(&c.url).json(&review).send().await.is_err());
    // A certificate from another CA: refused too.
    let (_, stranger) = countersign_test_support::tls::ca_and_client(c.dir.path(), "stranger");
    let forged = client_with(&c.server_cert, Some(&stranger));
    assert!(forged.post(&c.url).json(&review).send().await.is_err());
    // A certificate from the right CA for another name: refused too.
    let other = std::fs::read(c.dir.path().join("intruder.pem")).unwrap();
    let intruder = client_with(&c.server_cert, Some(&other));
    assert!(intruder.post(&c.url).json(&review).send().await.is_err());
    assert_eq!(c.audited("kubernetes.held"), 0);
    let mut sam = c.sam;
    assert!(
        !sam.drain(&c.h)
            .await
            .iter()
            .any(|(_, e)| matches!(e, StreamEvent::Request { .. })),
        "no approver was pushed anything"
    );
}

#[test]
fn two_retries_of_one_apply_hash_equal_and_a_changed_image_does_not() {
    use countersign_gateway::kubernetes::operation::object_digest;
    let digest = |name: &str| object_digest(&fixture(name)["request"]["object"]).unwrap();
    assert_eq!(
        digest("deployment-create.json"),
        digest("deployment-create-retry.json")
    );
    assert_ne!(
        digest("deployment-create.json"),
        digest("deployment-create-changed-image.json")
    );
    assert_eq!(
        digest("deployment-update.json"),
        digest("deployment-update-retry.json")
    );
    // The retries do differ in what the API server sets.
    let meta = |name: &str| fixture(name)["request"]["object"]["metadata"].clone();
    assert_ne!(
        meta("deployment-create.json")["uid"],
        meta("deployment-create-retry.json")["uid"]
    );
}

#[tokio::test]
async fn attach_and_port_forward_are_held_too() {
    let mut c = cluster().await;
    let attach = Cluster::pending_id(&c.review("attach-connect.json").await);
    let forward = Cluster::pending_id(&c.review("portforward-connect.json").await);
    let (a, _) = c.sam.request_event(&c.h, &attach).await;
    let (f, _) = c.sam.request_event(&c.h, &forward).await;
    assert_eq!(a.body.action, "kubectl.attach");
    assert_eq!(f.body.action, "kubectl.portforward");
    assert!(f.body.detail.contains("ports: 5432"), "{}", f.body.detail);
}

#[tokio::test]
async fn nobody_approves_their_own_kubectl_exec() {
    let c = cluster().await;
    // Sam is alice@example.com in the cluster: the directory says so.
    countersign_gateway::directory_admin::link(
        c.h.gw(),
        SAM,
        &countersign_gateway::directory::Entry {
            kubernetes: vec!["alice@example.com".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let r = c.review("exec-connect.json").await;
    assert_eq!(r["allowed"], false);
    let m = r["status"]["message"].as_str().unwrap();
    assert!(!m.starts_with("approval pending"), "{m}");
    assert_eq!(c.audited("kubernetes.held"), 0);
    assert_eq!(c.audited("kubernetes.refused"), 1);
    // And a requester token cannot pose as a Kubernetes user.
    let e = countersign_gateway::tokens::create(c.h.gw(), "k8s:alice@example.com").unwrap_err();
    assert_eq!(e.code.as_str(), "invalid_name");
}
