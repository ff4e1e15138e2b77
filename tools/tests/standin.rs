//! End-to-end tests of the xcauth-standin binary over raw HTTP/1.1 on a real socket.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::Sha256;

const SECRET: &str = "standin-test-secret";
const API: &str = "/index.php/apps/ojsxc/ajax/externalApi.php";

/// A running stand-in; killed when dropped, also when a test panics.
struct Standin {
    child: Child,
    addr: SocketAddr,
}

impl Standin {
    fn start(extra: &[&str]) -> Standin {
        let (child, addr, path) = common::spawn_standin(SECRET, extra);
        let guard = Standin { child, addr };
        assert_eq!(path, API);
        guard
    }

    fn connect(&self) -> Conn {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone stream"));
        Conn { stream, reader }
    }

    /// One signed API request on a fresh connection.
    fn api(&self, body: &str) -> Response {
        let signature = sign_sha1(body);
        self.connect()
            .request("POST", API, &[("X-JSXC-SIGNATURE", &signature)], body)
    }

    fn control(&self, method: &str, path: &str, body: &str) -> Response {
        let response = self.connect().request(method, path, &[], body);
        assert_eq!(response.status, 200, "{path}: {}", response.body);
        response
    }

    fn set_fault(&self, mode: &str) {
        let response = self.control("POST", "/_standin/fault", mode);
        assert_eq!(response.body.trim(), mode);
    }

    fn stats(&self) -> Value {
        let response = self.control("GET", "/_standin/stats", "");
        serde_json::from_str(&response.body).expect("stats JSON")
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

impl Conn {
    /// One request that must get an answer.
    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        self.send(method, path, headers, body)
            .unwrap_or_else(|err| panic!("{method} {path}: {err}"))
            .unwrap_or_else(|| panic!("{method} {path}: connection closed without an answer"))
    }

    /// Writes one request; `None` when the server closed the connection
    /// without answering.
    fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<Option<Response>> {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n",
            body.len()
        );
        let has_type = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if method == "POST" && path.ends_with("externalApi.php") && !has_type {
            request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.stream.write_all(request.as_bytes())?;
        self.read_response()
    }

    fn read_response(&mut self) -> std::io::Result<Option<Response>> {
        let mut status_line = String::new();
        if self.reader.read_line(&mut status_line)? == 0 {
            return Ok(None);
        }
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("a header line");
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.parse().expect("a length"))
            .expect("the stand-in always sends Content-Length");
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(Some(Response {
            status,
            headers,
            body: String::from_utf8(body).expect("UTF-8 body"),
        }))
    }
}

fn sign_sha1(body: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(SECRET.as_bytes()).expect("any key");
    mac.update(body.as_bytes());
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

fn sign_sha256(body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).expect("any key");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn auth(user: &str, domain: &str, password: &str) -> String {
    form(&[
        ("operation", "auth"),
        ("username", user),
        ("domain", domain),
        ("password", password),
    ])
}

fn op(operation: &str, user: &str, domain: &str) -> String {
    form(&[
        ("operation", operation),
        ("username", user),
        ("domain", domain),
    ])
}

const SIGNATURE_ERROR: &str = r#"{"result":"error","data":{"msg":"Signature does not match."}}"#;

#[test]
fn auth_success_and_noauth() {
    let s = Standin::start(&[]);
    let ok = s.api(&auth("alice", "example.org", "alice-pw"));
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, r#"{"result":"success","data":{"uid":"alice"}}"#);
    assert_eq!(
        ok.header("content-type"),
        Some("application/json; charset=utf-8")
    );

    let wrong = s.api(&auth("alice", "example.org", "bob-pw"));
    assert_eq!(
        (wrong.status, wrong.body.as_str()),
        (200, r#"{"result":"noauth"}"#)
    );
    let unknown = s.api(&auth("mallory", "example.org", "x"));
    assert_eq!(unknown.body, r#"{"result":"noauth"}"#);

    // a password with ':' (the reason the users file is TAB-separated)
    let colon = s.api(&auth("colette", "example.org", "pa:ss:w0rd"));
    assert_eq!(
        colon.body,
        r#"{"result":"success","data":{"uid":"colette"}}"#
    );

    // a domain-qualified account answers only for its domain
    let carol = s.api(&auth("carol", "example.org", "carol-pw"));
    assert_eq!(
        carol.body,
        r#"{"result":"success","data":{"uid":"carol@example.org"}}"#
    );
    let elsewhere = s.api(&auth("carol", "example.net", "carol-pw"));
    assert_eq!(elsewhere.body, r#"{"result":"noauth"}"#);
}

#[test]
fn bad_or_missing_signature_is_a_500_error() {
    let s = Standin::start(&[]);
    let body = auth("alice", "example.org", "alice-pw");

    let mut conn = s.connect();
    let other_key = {
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(b"not-the-secret").expect("any key");
        mac.update(body.as_bytes());
        format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
    };
    let wrong = conn.request("POST", API, &[("X-JSXC-SIGNATURE", &other_key)], &body);
    assert_eq!(wrong.status, 500);
    assert_eq!(wrong.body, SIGNATURE_ERROR);
    assert_eq!(
        wrong.header("content-type"),
        Some("application/json; charset=utf-8")
    );

    // PHP compares lowercase hex strings: uppercase is a mismatch
    let upper = format!("sha1={}", sign_sha1(&body)[5..].to_uppercase());
    let shouting = conn.request("POST", API, &[("X-JSXC-SIGNATURE", &upper)], &body);
    assert_eq!(
        (shouting.status, shouting.body.as_str()),
        (500, SIGNATURE_ERROR)
    );

    // the signature covers these exact bytes, not the decoded fields
    let signed_other_body = sign_sha1(&auth("alice", "example.org", "other"));
    let swapped = conn.request(
        "POST",
        API,
        &[("X-JSXC-SIGNATURE", &signed_other_body)],
        &body,
    );
    assert_eq!(swapped.body, SIGNATURE_ERROR);

    let missing = conn.request("POST", API, &[], &body);
    assert_eq!(missing.status, 500);
    assert_eq!(
        missing.json(),
        json!({"result": "error", "data": {"msg": "HTTP header \"X-JSXC-Signature\" is missing."}})
    );

    let md5 = conn.request("POST", API, &[("X-JSXC-SIGNATURE", "md5=0123")], &body);
    assert_eq!(md5.status, 500);
    assert_eq!(md5.json()["result"], "error");
}

#[test]
fn sha256_signatures_are_accepted() {
    let s = Standin::start(&[]);
    let body = auth("bob", "example.org", "bob-pw");
    let response = s.connect().request(
        "POST",
        API,
        &[("X-JSXC-SIGNATURE", &sign_sha256(&body))],
        &body,
    );
    assert_eq!(response.status, 200);
    assert_eq!(
        response.body,
        r#"{"result":"success","data":{"uid":"bob"}}"#
    );
}

#[test]
fn isuser_true_and_false() {
    let s = Standin::start(&[]);
    assert_eq!(
        s.api(&op("isuser", "bob", "example.org")).body,
        r#"{"result":"success","data":{"isUser":true}}"#
    );
    assert_eq!(
        s.api(&op("isuser", "nobody", "example.org")).body,
        r#"{"result":"success","data":{"isUser":false}}"#
    );
    assert_eq!(
        s.api(&op("isuser", "carol", "example.net")).body,
        r#"{"result":"success","data":{"isUser":false}}"#
    );
}

#[test]
fn sharedroster_shape_and_empty_roster() {
    let s = Standin::start(&[]);
    let response = s.api(&op("sharedroster", "zoe", "example.org"));
    assert_eq!(response.status, 200);
    // PHP's json_encode escapes non-ASCII; the decoded value is the name
    assert!(response
        .body
        .contains(r#""Zo\u00eb \u00c5ngstr\u00f6m-\u0141ukasiewicz""#));
    assert_eq!(
        response.json(),
        json!({"result": "success", "data": {"sharedRoster": {
            "alice": {"name": "Alice Liddell", "groups": ["chess"]},
            "colette": {"name": "Colette Dubois", "groups": ["chess"]},
            "zoe": {"name": "Zoë Ångström-Łukasiewicz", "groups": ["chess", "Ops & Co."]},
            "zoë": {"name": "Zoë Umlaut", "groups": ["chess"]},
        }}})
    );

    let alice = s.api(&op("sharedroster", "alice", "example.org")).json();
    let roster = alice["data"]["sharedRoster"]
        .as_object()
        .expect("an object");
    assert_eq!(roster.len(), 6);
    assert_eq!(roster["alice"]["groups"], json!(["staff", "chess"]));
    assert_eq!(roster["carol@example.org"]["groups"], json!(["staff"]));

    let lonely = s.api(&op("sharedroster", "dave", "example.org"));
    assert_eq!(
        lonely.body,
        r#"{"result":"success","data":{"sharedRoster":[]}}"#
    );

    let unknown = s.api(&op("sharedroster", "nobody", "example.org"));
    assert_eq!(unknown.status, 500);
    assert_eq!(unknown.json()["result"], "error");
    assert!(unknown.json()["data"]["msg"].is_string());

    let unsupported = s.api(&op("delete", "alice", "example.org"));
    assert_eq!(
        (unsupported.status, unsupported.body.as_str()),
        (
            500,
            r#"{"result":"error","data":{"msg":"Unsupported operation."}}"#
        )
    );
}

#[test]
fn without_a_form_content_type_the_operation_is_unset() {
    let s = Standin::start(&[]);
    let body = op("isuser", "bob", "example.org");
    let response = s.connect().request(
        "POST",
        API,
        &[
            ("X-JSXC-SIGNATURE", &sign_sha1(&body)),
            ("Content-Type", "text/plain"),
        ],
        &body,
    );
    assert_eq!(response.status, 500);
    assert_eq!(response.json()["data"]["msg"], "Unsupported operation.");
}

#[test]
fn other_paths_are_not_found() {
    let s = Standin::start(&[]);
    let body = op("isuser", "bob", "example.org");
    let mut conn = s.connect();
    for path in [
        "/",
        "/index.php/apps/ojsxc/ajax/other.php",
        "/externalApi.php.bak",
    ] {
        let response = conn.request(
            "POST",
            path,
            &[("X-JSXC-SIGNATURE", &sign_sha1(&body))],
            &body,
        );
        assert_eq!(response.status, 404, "{path}");
        assert!(response.body.contains("Page not found"), "{path}");
        assert!(response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")));
    }
    // any path ending in externalApi.php is the API
    let short = conn.request(
        "POST",
        "/externalApi.php",
        &[("X-JSXC-SIGNATURE", &sign_sha1(&body))],
        &body,
    );
    assert_eq!(short.status, 200);
    assert_eq!(short.json()["data"]["isUser"], true);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let s = Standin::start(&[]);
    let mut conn = s.connect();
    for (user, expected) in [("alice", true), ("nobody", false), ("bob", true)] {
        let body = op("isuser", user, "example.org");
        let response = conn
            .send(
                "POST",
                API,
                &[("X-JSXC-SIGNATURE", &sign_sha1(&body))],
                &body,
            )
            .unwrap()
            .expect("the connection stays open");
        assert_eq!(response.json()["data"]["isUser"], expected, "{user}");
    }
    assert_eq!(s.stats()["requests"], 3);
}

#[test]
fn faults_switch_at_run_time() {
    let s = Standin::start(&[]);
    let body = auth("alice", "example.org", "alice-pw");
    let success = r#"{"result":"success","data":{"uid":"alice"}}"#;
    assert_eq!(s.api(&body).body, success);

    s.set_fault("http500");
    let failed = s.api(&body);
    assert_eq!(failed.status, 500);
    assert_eq!(failed.json()["result"], "error");

    s.set_fault("wrongsig");
    assert_eq!(s.api(&body).body, SIGNATURE_ERROR);

    s.set_fault("badshape");
    let odd = s.api(&body);
    assert_eq!(odd.status, 200);
    assert!(odd.json().get("result").is_none());

    s.set_fault("close");
    let mut conn = s.connect();
    let closed = conn
        .send(
            "POST",
            API,
            &[("X-JSXC-SIGNATURE", &sign_sha1(&body))],
            &body,
        )
        .expect("an orderly close, not a reset");
    assert!(closed.is_none(), "expected no answer, got {closed:?}");

    s.set_fault("hang");
    let mut conn = s.connect();
    conn.stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let err = conn
        .send(
            "POST",
            API,
            &[("X-JSXC-SIGNATURE", &sign_sha1(&body))],
            &body,
        )
        .expect_err("no answer while hanging");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err:?}"
    );

    // leaving the mode closes the connections it held, without an answer
    s.set_fault("none");
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(conn.read_response().unwrap().is_none());
    assert_eq!(s.api(&body).body, success);

    let bad = s
        .connect()
        .request("POST", "/_standin/fault", &[], "explode");
    assert_eq!(bad.status, 400);
}

#[test]
fn fault_and_latency_from_the_command_line() {
    let s = Standin::start(&["--fault", "redirect", "--latency-ms", "150"]);
    let started = Instant::now();
    let moved = s.api(&auth("alice", "example.org", "alice-pw"));
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(moved.status, 302);
    assert!(moved
        .header("location")
        .is_some_and(|l| l.contains("/login")));

    s.control("POST", "/_standin/latency", "0");
    s.set_fault("nonjson");
    let html = s.api(&auth("alice", "example.org", "alice-pw"));
    assert_eq!(html.status, 200);
    assert!(html
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    assert!(serde_json::from_str::<Value>(&html.body).is_err());

    s.set_fault("http404");
    let gone = s.api(&auth("alice", "example.org", "alice-pw"));
    assert_eq!(gone.status, 404);
    assert!(gone.body.contains("Page not found"));
}

#[test]
fn stats_count_every_api_request_and_reset() {
    let s = Standin::start(&[]);
    assert_eq!(s.stats()["requests"], 0);
    s.api(&auth("alice", "example.org", "alice-pw"));
    s.api(&op("isuser", "bob", "example.net"));
    // failed requests count too
    let unsigned = s
        .connect()
        .request("POST", API, &[], &auth("alice", "example.org", "x"));
    assert_eq!(unsigned.status, 500);
    s.set_fault("http500");
    s.api(&op("sharedroster", "alice", "example.com"));
    // control endpoints and other paths are not API requests
    assert_eq!(s.connect().request("GET", "/", &[], "").status, 404);

    let stats = s.stats();
    assert_eq!(stats["requests"], 4);
    assert_eq!(
        stats["by_operation"],
        json!({"auth": 2, "isuser": 1, "sharedroster": 1})
    );
    assert_eq!(
        stats["last"],
        json!({"operation": "sharedroster", "username": "alice", "domain": "example.com"})
    );
    assert!(!stats.to_string().contains("alice-pw"));

    s.control("POST", "/_standin/reset", "");
    let stats = s.stats();
    assert_eq!(stats["requests"], 0);
    assert_eq!(stats["by_operation"], json!({}));
}

#[test]
fn refuses_to_listen_beyond_loopback() {
    let output = Command::new(env!("CARGO_BIN_EXE_xcauth-standin"))
        .args(["--secret", SECRET, "--listen", "0.0.0.0:0"])
        .stdin(Stdio::null())
        .output()
        .expect("run xcauth-standin");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("loopback"));
}
