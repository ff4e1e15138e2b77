//! The HTTP back end over real loopback sockets against a canned server:
//! what is sent (signature, headers, body) and how transport failures and
//! odd replies are classified.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha1::Sha1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use xcauth::backend::jsxc::{Answer, JsxcBackend, Operation as Query};
use xcauth::backend::{
    BackendBuildError, BackendError, BackendOptions, Cause, HttpClient, Verdict,
};
use xcauth::secret::Secret;

const PASSWORD: &str = "pa ss:w&rd=é";
const SECRET: &str = "api-secret-0123";

/// What the canned server does with one request.
enum Reply {
    /// Write these bytes and keep the connection.
    Raw(Vec<u8>),
    /// Close the connection without answering.
    Close,
    /// Never answer, keep the connection open.
    Hang,
}

fn http(status_line: &str, extra_headers: &str, body: &str) -> Reply {
    Reply::Raw(
        format!(
            "HTTP/1.1 {status_line}\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

fn json_ok(body: &str) -> Reply {
    http("200 OK", "Content-Type: application/json\r\n", body)
}

/// One request as the server saw it.
struct Seen {
    connection: usize,
    head: String,
    body: Vec<u8>,
}

struct Server {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Server {
    fn url(&self) -> String {
        format!(
            "http://{}/index.php/apps/ojsxc/ajax/externalApi.php",
            self.addr
        )
    }
}

/// Serves `replies` in order, one per request, across all connections.
async fn canned(replies: Vec<Reply>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
    let (tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut connection = 0;
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(connection_loop(
                stream,
                connection,
                Arc::clone(&replies),
                tx.clone(),
            ));
            connection += 1;
        }
    });
    Server { addr, seen }
}

async fn connection_loop(
    mut stream: TcpStream,
    connection: usize,
    replies: Arc<Mutex<VecDeque<Reply>>>,
    tx: mpsc::UnboundedSender<Seen>,
) {
    let mut buf = Vec::new();
    loop {
        let Some((head, body)) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let _ = tx.send(Seen {
            connection,
            head,
            body,
        });
        let reply = replies.lock().unwrap().pop_front();
        match reply {
            Some(Reply::Raw(bytes)) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Some(Reply::Close) | None => return,
            Some(Reply::Hang) => std::future::pending::<()>().await,
        }
    }
}

/// Reads one request (head up to the blank line, then Content-Length
/// bytes); `None` at end of input.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = header(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let start = end + 4;
            while buf.len() < start + length {
                read_more(stream, buf).await?;
            }
            let body = buf[start..start + length].to_vec();
            buf.drain(..start + length);
            return Some((head, body));
        }
        read_more(stream, buf).await?;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The shared client with a request timeout, asking JSXC APIs.
struct Backend(Arc<HttpClient>);

impl Backend {
    async fn query(&self, url: &str, user: &str, query: &Query) -> Result<Answer, BackendError> {
        let secret = Secret::new(SECRET);
        JsxcBackend::new(
            Arc::clone(&self.0),
            url.to_owned(),
            secret,
            "auth.example.org".into(),
        )
        .ask(user, query)
        .await
    }
}

fn backend(request_timeout: Duration) -> Backend {
    Backend(
        HttpClient::new(&BackendOptions {
            connect_timeout: Duration::from_secs(2),
            request_timeout,
            ca_file: None,
        })
        .unwrap(),
    )
}

fn auth() -> Query {
    Query::Auth(Secret::new(PASSWORD))
}

/// The error must not carry the password or the secret.
fn assert_clean(err: &BackendError) {
    let text = format!("{err} {err:?}");
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!text.contains("pa+ss"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

#[tokio::test]
async fn sends_a_signed_form_and_reads_success() {
    let mut server = canned(vec![json_ok(
        r#"{"result":"success","data":{"uid":"alice"}}"#,
    )])
    .await;
    let answer = backend(Duration::from_secs(5))
        .query(&server.url(), "alice", &auth())
        .await;
    assert_eq!(answer, Ok(Answer::Auth(Verdict::Accepted)));

    let seen = server.seen.recv().await.unwrap();
    assert!(
        seen.head
            .starts_with("POST /index.php/apps/ojsxc/ajax/externalApi.php HTTP/1.1\r\n"),
        "{}",
        seen.head
    );
    assert_eq!(
        header(&seen.head, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        header(&seen.head, "user-agent"),
        Some(concat!("xcauth/", env!("CARGO_PKG_VERSION")))
    );
    let fields: Vec<(String, String)> = form_urlencoded::parse(&seen.body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["operation", "username", "domain", "password"]);
    assert_eq!(fields[0].1, "auth");
    assert_eq!(fields[1].1, "alice");
    assert_eq!(fields[2].1, "auth.example.org");
    assert_eq!(fields[3].1, PASSWORD);

    // The signature covers exactly the bytes that arrived.
    let mut mac = Hmac::<Sha1>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&seen.body);
    let expected = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        header(&seen.head, "x-jsxc-signature"),
        Some(expected.as_str())
    );
}

#[tokio::test]
async fn isuser_and_roster_over_http() {
    let roster_body =
        r#"{"result":"success","data":{"sharedRoster":{"bob":{"name":"Bob","groups":["G"]}}}}"#;
    let mut server = canned(vec![
        json_ok(r#"{"result":"success","data":{"isUser":"0"}}"#),
        json_ok(roster_body),
    ])
    .await;
    let b = backend(Duration::from_secs(5));
    let ep = server.url();
    assert_eq!(
        b.query(&ep, "x", &Query::IsUser).await,
        Ok(Answer::IsUser(false))
    );
    let Ok(Answer::Roster(got)) = b.query(&ep, "x", &Query::SharedRoster).await else {
        panic!("no roster");
    };
    assert_eq!(got.to_json(), r#"{"bob":{"groups":["G"],"name":"Bob"}}"#);

    // Kept alive: both requests travelled on the first connection, and
    // neither carried a password field.
    for _ in 0..2 {
        let seen = server.seen.recv().await.unwrap();
        assert_eq!(seen.connection, 0);
        assert!(!String::from_utf8_lossy(&seen.body).contains("password"));
    }
}

#[tokio::test]
async fn noauth_is_rejected() {
    let server = canned(vec![json_ok(r#"{"result":"noauth"}"#)]).await;
    let answer = backend(Duration::from_secs(5))
        .query(&server.url(), "alice", &auth())
        .await;
    assert_eq!(answer, Ok(Answer::Auth(Verdict::Rejected)));
}

#[tokio::test]
async fn refused_connection() {
    // Bind to learn a free port, then free it again.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = backend(Duration::from_secs(5))
        .query(&format!("http://{addr}/api"), "alice", &auth())
        .await
        .unwrap_err();
    assert_eq!(err, BackendError::Unavailable(Cause::ConnectionRefused));
}

#[tokio::test]
async fn silent_server_times_out() {
    let server = canned(vec![Reply::Hang]).await;
    let started = Instant::now();
    let err = backend(Duration::from_millis(300))
        .query(&server.url(), "alice", &auth())
        .await
        .unwrap_err();
    assert_eq!(err, BackendError::Unavailable(Cause::Timeout));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn reply_cut_short_times_out_too() {
    // Headers arrive, the promised body never does.
    let server = canned(vec![Reply::Raw(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"result\"".to_vec(),
    )])
    .await;
    let err = backend(Duration::from_millis(300))
        .query(&server.url(), "alice", &auth())
        .await
        .unwrap_err();
    assert_eq!(err, BackendError::Unavailable(Cause::Timeout));
}

#[tokio::test]
async fn closed_without_answer() {
    let server = canned(vec![Reply::Close]).await;
    let err = backend(Duration::from_secs(5))
        .query(&server.url(), "alice", &auth())
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::Unavailable(Cause::Connect(_))),
        "{err:?}"
    );
    assert_clean(&err);
}

#[tokio::test]
async fn garbage_instead_of_http() {
    let server = canned(vec![Reply::Raw(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec())]).await;
    let err = backend(Duration::from_secs(5))
        .query(&server.url(), "alice", &auth())
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::Unavailable(Cause::Connect(_))),
        "{err:?}"
    );
    assert_clean(&err);
}

#[tokio::test]
async fn not_found_and_redirect_are_not_followed() {
    let mut server = canned(vec![
        http("404 Not Found", "", "<html>no</html>"),
        http(
            "302 Found",
            "Location: https://cloud.example.org/login\r\n",
            "",
        ),
    ])
    .await;
    let b = backend(Duration::from_secs(5));
    let ep = server.url();
    assert!(matches!(
        b.query(&ep, "alice", &auth()).await,
        Err(BackendError::Misconfigured(Cause::NotFound(_)))
    ));
    assert_eq!(
        b.query(&ep, "alice", &auth()).await,
        Err(BackendError::Misconfigured(Cause::Redirect {
            status: 302,
            location: "https://cloud.example.org/login".to_owned()
        }))
    );
    // Exactly two requests: the redirect was not followed.
    assert!(server.seen.recv().await.is_some());
    assert!(server.seen.recv().await.is_some());
    assert!(server.seen.try_recv().is_err());
}

#[tokio::test]
async fn signature_mismatch_and_echoing_server() {
    let echo =
        format!(r#"{{"result":"error","data":{{"msg":"you sent {PASSWORD} with key {SECRET}"}}}}"#);
    let server = canned(vec![
        http(
            "500 Internal Server Error",
            "",
            r#"{"result":"error","data":{"msg":"Signature not valid."}}"#,
        ),
        http("500 Internal Server Error", "", &echo),
    ])
    .await;
    let b = backend(Duration::from_secs(5));
    let ep = server.url();
    assert_eq!(
        b.query(&ep, "alice", &auth()).await,
        Err(BackendError::Misconfigured(Cause::SignatureMismatch))
    );
    let err = b.query(&ep, "alice", &auth()).await.unwrap_err();
    assert!(
        matches!(
            err,
            BackendError::Unavailable(Cause::Failed { status: 500, .. })
        ),
        "{err:?}"
    );
    assert_clean(&err);
}

#[tokio::test]
async fn oversized_reply_is_refused() {
    let size = xcauth::backend::MAX_REPLY_BYTES + 1;
    let mut raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n").into_bytes();
    raw.resize(raw.len() + size, b' ');
    let server = canned(vec![Reply::Raw(raw)]).await;
    let err = backend(Duration::from_secs(20))
        .query(&server.url(), "alice", &Query::IsUser)
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::Misconfigured(Cause::Malformed(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
    });
    let err = backend(Duration::from_secs(5))
        .query(&format!("https://{addr}/api"), "alice", &auth())
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::Misconfigured(Cause::Tls(_))),
        "{err:?}"
    );
    assert!(err.to_string().contains("--ca-file"));
}

#[test]
fn ca_file_problems_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let build = |path: &std::path::Path| {
        HttpClient::new(&BackendOptions {
            ca_file: Some(path.to_owned()),
            ..BackendOptions::default()
        })
    };

    let missing = dir.path().join("missing.pem");
    assert!(matches!(
        build(&missing),
        Err(BackendBuildError::CaFileRead { .. })
    ));

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificates here\n").unwrap();
    let err = build(&empty).unwrap_err();
    assert!(
        matches!(err, BackendBuildError::CaFileEmpty { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("empty.pem"));

    let good = dir.path().join("ca.pem");
    std::fs::write(&good, TEST_CA).unwrap();
    assert!(build(&good).is_ok());
}

/// A self-signed P-256 CA made with openssl for this test only.
const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBiTCCAS+gAwIBAgIUOTPiaXLhsRLv75MHab1himzYKCIwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOeGNhdXRoIHRlc3QgQ0EwIBcNMjYxMTI4MTU1MDI0WhgPMjEy
NjExMDQxNTUwMjRaMBkxFzAVBgNVBAMMDnhjYXV0aCB0ZXN0IENBMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEBydNiHJYeTPn/RLSUxjw0yy1+3GJoubBZoeWoXYe
OGdRq3jt/GzouoA8UMbCie8H9T52p2WYxRV/Nnhs3PK0baNTMFEwHQYDVR0OBBYE
FC2gWPkgltYyAex/+Ehy5UdNxcmDMB8GA1UdIwQYMBaAFC2gWPkgltYyAex/+Ehy
5UdNxcmDMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhANDJRc6i
Pz6z56ZzlpmN+nLKcd1jqV9Bm/sBe/5E1OdhAiAOv2Xf78eU0KgWJf1OkMe1XEew
IwOTF3ekROTURhq9cw==
-----END CERTIFICATE-----
";
