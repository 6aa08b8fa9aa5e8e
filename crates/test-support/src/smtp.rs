//! A real SMTP server for the mail tests: aiosmtpd, run by `smtp_sink.py` with the conformance
//! tests' Python ([`conformance_python`]; `scripts/deps.sh --with-lints` installs both), which
//! prints every message it accepts.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::processes::{conformance_python, ChildGuard};
use crate::wait::eventually;

/// One accepted message.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent: headers, a blank line, the body.
    pub data: String,
}

impl ReceivedMail {
    /// The value of header `name` (the first), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    /// The body, with quoted-printable soft line breaks and escapes undone when the message
    /// says it is quoted-printable.
    pub fn body(&self) -> String {
        let body = self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let qp = self
            .header("content-transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("quoted-printable"));
        if !qp {
            return body.replace("\r\n", "\n");
        }
        let joined = body.replace("=\r\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() {
                if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).replace("\r\n", "\n")
    }
}

/// The running mail server; ended when dropped.
pub struct SmtpSink {
    _child: ChildGuard,
    pub port: u16,
    mails: Arc<Mutex<Vec<ReceivedMail>>>,
}

impl SmtpSink {
    /// Starts the server on `port`, or on a free one.
    pub fn start(port: Option<u16>) -> SmtpSink {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp_sink.py");
        let mut cmd = Command::new(conformance_python());
        cmd.arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(p) = port {
            cmd.arg(p.to_string());
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let port = u16::try_from(first["port"].as_u64().unwrap()).unwrap();
        let mails: Arc<Mutex<Vec<ReceivedMail>>> = Arc::default();
        let m = mails.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line).unwrap();
                m.lock().unwrap().push(ReceivedMail {
                    from: v["from"].as_str().unwrap_or("").to_owned(),
                    to: v["to"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect(),
                    data: v["data"].as_str().unwrap_or("").to_owned(),
                });
            }
        });
        SmtpSink {
            _child: ChildGuard(child),
            port,
            mails,
        }
    }

    /// Every message accepted so far.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits until `n` messages were accepted (up to 10 s), and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<ReceivedMail> {
        let what = format!("{n} mails arriving");
        eventually(&what, || Some(self.mails()).filter(|m| m.len() >= n)).await
    }
}

/// A loopback port nothing listens on (bound, then let go), for a server started later.
pub fn unused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
