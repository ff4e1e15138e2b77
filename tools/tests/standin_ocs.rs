//! End-to-end tests of the stand-in's Nextcloud stock APIs (OCS), over real
//! loopback HTTP with reqwest against the xcauth-standin binary.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::process::Child;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use sha1::Sha1;

const SECRET: &str = "standin-ocs-test-secret";
const JSXC_API: &str = "/index.php/apps/ojsxc/ajax/externalApi.php";
const UNAUTHORISED: &str = "<ocs><meta><status>failure</status><statuscode>997</statuscode><message>Unauthorised</message></meta><data/></ocs>";
const COOKIES: [&str; 5] = [
    "oc_sessionPassphrase",
    "nc_sameSiteCookielax",
    "nc_sameSiteCookiestrict",
    "ocstandin001",
    "cookie_test",
];
const ADMIN: (&str, &str) = ("xcauth-api", "xcauth-api-app");
const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A running stand-in; killed when dropped, also when a test panics.
struct Standin {
    child: Child,
    addr: SocketAddr,
    /// One client (connection pool) per local address; none keeps cookies.
    clients: std::sync::Mutex<Vec<(IpAddr, reqwest::Client)>>,
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    cookies: Vec<String>,
    content_type: String,
    body: String,
    took: Duration,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }

    fn cookie_names(&self) -> Vec<String> {
        self.cookies
            .iter()
            .map(|c| c.split('=').next().unwrap_or("").to_owned())
            .collect()
    }
}

/// One request's options.
#[derive(Clone, Copy)]
struct Req<'a> {
    auth: Option<(&'a str, &'a str)>,
    ocs_header: bool,
    cookie: Option<&'a str>,
    from: IpAddr,
}

const OCS: Req<'static> = Req {
    auth: None,
    ocs_header: true,
    cookie: None,
    from: LOCAL,
};

impl<'a> Req<'a> {
    fn auth(login: &'a str, password: &'a str) -> Req<'a> {
        Req {
            auth: Some((login, password)),
            ..OCS
        }
    }
}

impl Standin {
    /// A stand-in whose throttle runs 1000 times faster than Nextcloud's,
    /// unless `extra` sets the scale.
    fn start(extra: &[&str]) -> Standin {
        let mut args = extra.to_vec();
        if !args.contains(&"--throttle-scale") {
            args.extend(["--throttle-scale", "0.001"]);
        }
        Self::start_exactly(&args)
    }

    fn start_exactly(extra: &[&str]) -> Standin {
        let (child, addr, _) = common::spawn_standin(SECRET, extra);
        Standin {
            child,
            addr,
            clients: std::sync::Mutex::new(Vec::new()),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, req: Req<'_>, body: &str) -> Answer {
        let client = self.client(req.from);
        let mut builder = client
            .request(method, format!("http://{}{path}", self.addr))
            .timeout(Duration::from_secs(60));
        if let Some((login, password)) = req.auth {
            builder = builder.basic_auth(login, Some(password));
        }
        if req.ocs_header {
            builder = builder.header("OCS-APIRequest", "true");
        }
        if let Some(cookie) = req.cookie {
            builder = builder.header("Cookie", cookie);
        }
        if !body.is_empty() {
            builder = builder.body(body.to_owned());
        }
        let started = Instant::now();
        let response = builder
            .send()
            .await
            .unwrap_or_else(|err| panic!("{path}: {err}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("body");
        Answer {
            status,
            cookies: headers
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect(),
            content_type: headers
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            body,
            took: started.elapsed(),
        }
    }

    fn client(&self, from: IpAddr) -> reqwest::Client {
        let mut clients = self.clients.lock().unwrap();
        if let Some((_, client)) = clients.iter().find(|(ip, _)| *ip == from) {
            return client.clone();
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .local_address(from)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        clients.push((from, client.clone()));
        client
    }

    /// `GET path` as the API account, with the path sent byte for byte as
    /// given (an HTTP library would drop `%2E` segments first): the status,
    /// the OCS status code and the message.
    async fn raw_admin(&self, path: &str) -> (u16, Value, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", ADMIN.0, ADMIN.1));
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {basic}\r\n\
             OCS-APIRequest: true\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
            .await
            .expect("an answer within a minute")
            .unwrap();
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{path}: no status line: {text}"));
        // Connection: close, so the body runs to the end (no chunks here).
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let json: Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        let meta = &json["ocs"]["meta"];
        (status, meta["statuscode"].clone(), meta["message"].clone())
    }

    async fn get(&self, path: &str, req: Req<'_>) -> Answer {
        self.send(reqwest::Method::GET, path, req, "").await
    }

    /// `GET /ocs/v2.php/{endpoint}?format=json` as the API account.
    async fn admin(&self, endpoint: &str) -> Answer {
        self.get(&v2(endpoint), Req::auth(ADMIN.0, ADMIN.1)).await
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: &str) -> Answer {
        let answer = self
            .send(
                method,
                path,
                Req {
                    ocs_header: false,
                    ..OCS
                },
                body,
            )
            .await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        answer
    }

    async fn post(&self, path: &str, body: &str) -> Answer {
        self.control(reqwest::Method::POST, path, body).await
    }

    async fn stats(&self) -> Value {
        self.control(reqwest::Method::GET, "/_standin/stats", "")
            .await
            .json()
    }

    /// A signed JSXC API call.
    async fn jsxc(&self, form: &str) -> Value {
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(form.as_bytes());
        let signature = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
        let response = self
            .client(LOCAL)
            .post(format!("http://{}{JSXC_API}", self.addr))
            .header("X-JSXC-SIGNATURE", signature)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await
            .expect("JSXC request");
        assert!(response.headers().get("set-cookie").is_none());
        serde_json::from_str(&response.text().await.unwrap()).expect("JSXC JSON")
    }
}

fn v2(endpoint: &str) -> String {
    let sep = if endpoint.contains('?') { '&' } else { '?' };
    format!("/ocs/v2.php/{endpoint}{sep}format=json")
}

fn enc(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn assert_unauthorised(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 401, "{what}: {}", answer.body);
    assert_eq!(answer.body, UNAUTHORISED, "{what}");
    assert!(answer.content_type.contains("xml"), "{what}");
}

#[tokio::test]
async fn the_password_check() {
    let s = Standin::start(&[]);
    let ok = s.get(&v2("cloud/user"), Req::auth("erin", "erin-pw")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.content_type, "application/json; charset=utf-8");
    let body = ok.json();
    assert_eq!(
        body["ocs"]["meta"],
        json!({"status": "ok", "statuscode": 200, "message": "OK"})
    );
    let data = &body["ocs"]["data"];
    assert_eq!(data["id"], "erin");
    assert_eq!(data["displayname"], "Erin Email");
    assert_eq!(data["email"], "erin@example.org");
    assert_eq!(data["groups"], json!(["ocs-team", "xA"]));
    assert_eq!(data["enabled"], true);
    assert!(data["quota"].is_object());
    // a user without an address reads null
    let bob = s
        .get(&v2("cloud/user"), Req::auth("bob", "bob-pw"))
        .await
        .json();
    assert_eq!(bob["ocs"]["data"]["email"], Value::Null);
    assert_eq!(bob["ocs"]["data"]["displayname"], "Bob Builder");

    // the login may be the address of exactly one account
    let by_mail = s
        .get(&v2("cloud/user"), Req::auth("erin@example.org", "erin-pw"))
        .await;
    assert_eq!(by_mail.status, 200);
    assert_eq!(by_mail.json()["ocs"]["data"]["id"], "erin");
    let shared = s
        .get(
            &v2("cloud/user"),
            Req::auth("twins@example.org", "twin1-pw"),
        )
        .await;
    assert_unauthorised(&shared, "an address two accounts have");

    // without the OCS header: 412, also for the right password
    let no_header = s
        .get(
            &v2("cloud/user"),
            Req {
                ocs_header: false,
                ..Req::auth("erin", "erin-pw")
            },
        )
        .await;
    assert_eq!(no_header.status, 412);

    // the same XML 401 for every refusal, although JSON was asked for
    for (login, password, what) in [
        ("erin", "wrong", "wrong password"),
        ("nobody", "erin-pw", "unknown user"),
        ("dora", "dora-pw", "disabled account, right password"),
        ("erin", "bob-pw", "another user's password"),
    ] {
        let answer = s.get(&v2("cloud/user"), Req::auth(login, password)).await;
        assert_unauthorised(&answer, what);
    }
    assert_unauthorised(&s.get(&v2("cloud/user"), OCS).await, "no credentials");
    // XML unless JSON is asked for
    let xml = s
        .get("/ocs/v2.php/cloud/user", Req::auth("erin", "erin-pw"))
        .await;
    assert_eq!(xml.status, 200);
    assert!(
        xml.body.starts_with("<?xml version=\"1.0\"?>\n<ocs>"),
        "{}",
        xml.body
    );
    assert!(xml.body.contains("<id>erin</id>"));
}

#[tokio::test]
async fn app_passwords_and_second_factor() {
    let s = Standin::start(&[]);
    let user = v2("cloud/user");
    // a 2FA user: the main password is refused, every app password works
    assert_unauthorised(
        &s.get(&user, Req::auth("tom", "tom-main-pw")).await,
        "2FA main",
    );
    for app in ["tom-phone-app", "tom-laptop-app"] {
        let answer = s.get(&user, Req::auth("tom", app)).await;
        assert_eq!(answer.status, 200, "{app}");
        assert_eq!(answer.json()["ocs"]["data"]["id"], "tom");
    }
    // an app password is only its owner's
    assert_unauthorised(
        &s.get(&user, Req::auth("erin", "tom-phone-app")).await,
        "foreign app password",
    );
    // the API account: main and app password both work without 2FA
    assert_eq!(
        s.get(&user, Req::auth("xcauth-api", "xcauth-api-main-pw"))
            .await
            .status,
        200
    );
    assert_eq!(s.get(&user, Req::auth(ADMIN.0, ADMIN.1)).await.status, 200);

    // token_auth_enforced: only app passwords
    s.post("/_standin/token-auth-enforced", "true").await;
    assert_unauthorised(
        &s.get(&user, Req::auth("erin", "erin-pw")).await,
        "enforced main",
    );
    assert_unauthorised(
        &s.get(&user, Req::auth("xcauth-api", "xcauth-api-main-pw"))
            .await,
        "enforced main of the API account",
    );
    assert_eq!(s.get(&user, Req::auth(ADMIN.0, ADMIN.1)).await.status, 200);
    s.post("/_standin/token-auth-enforced", "false").await;
    assert_eq!(s.get(&user, Req::auth("erin", "erin-pw")).await.status, 200);

    // a refused main password is no brute-force failure (Nextcloud refuses it
    // before checking it); the foreign app password is one
    let stats = s.stats().await;
    assert_eq!(stats["ocs"]["login_failures"], 1);
    assert_eq!(stats["ocs"]["unauthorized"], 4);

    // the same from the command line
    let enforced = Standin::start(&["--token-auth-enforced"]);
    assert_unauthorised(
        &enforced.get(&user, Req::auth("erin", "erin-pw")).await,
        "--token-auth-enforced",
    );
    assert_eq!(
        enforced
            .get(&user, Req::auth("tom", "tom-phone-app"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_jsxc_api_keeps_its_own_rules() {
    let s = Standin::start(&[]);
    // JSXC accepts the main password of a 2FA user, and app passwords
    let main = s
        .jsxc(&form(&[
            ("operation", "auth"),
            ("username", "tom"),
            ("password", "tom-main-pw"),
        ]))
        .await;
    assert_eq!(main, json!({"result": "success", "data": {"uid": "tom"}}));
    let app = s
        .jsxc(&form(&[
            ("operation", "auth"),
            ("username", "tom"),
            ("password", "tom-phone-app"),
        ]))
        .await;
    assert_eq!(app["result"], "success");
    // its roster names groups by display name
    let roster = s
        .jsxc(&form(&[("operation", "sharedroster"), ("username", "pia")]))
        .await;
    assert_eq!(
        roster["data"]["sharedRoster"]["pia"],
        json!({"name": "Pia Percent", "groups": ["Literal x%41", "Ünïcode \"Quoted\" Team"]})
    );
    assert_eq!(
        roster["data"]["sharedRoster"]["tom"]["groups"],
        json!(["Ünïcode \"Quoted\" Team"])
    );
    // and the existing users answer as before
    let alice = s
        .jsxc(&form(&[
            ("operation", "sharedroster"),
            ("username", "alice"),
        ]))
        .await;
    let members: Vec<&String> = alice["data"]["sharedRoster"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        members,
        ["alice", "bob", "carol@example.org", "colette", "zoe", "zoë"]
    );
    // JSXC requests are not OCS requests
    let stats = s.stats().await;
    assert_eq!(stats["requests"], 3 + 1);
    assert_eq!(stats["ocs"]["requests"], 0);
    assert_eq!(stats["nextcloud_requests"], 4);
}

#[tokio::test]
async fn the_v1_path() {
    let s = Standin::start(&[]);
    let ok = s
        .get(
            "/ocs/v1.php/cloud/user?format=json",
            Req::auth("erin", "erin-pw"),
        )
        .await;
    assert_eq!(ok.status, 200);
    let meta = &ok.json()["ocs"]["meta"];
    assert_eq!(meta["statuscode"], 100);
    assert_eq!(meta["status"], "ok");
    assert_eq!(meta["totalitems"], "");
    let missing = s
        .get(
            "/ocs/v1.php/cloud/users/nobody?format=json",
            Req::auth(ADMIN.0, ADMIN.1),
        )
        .await;
    assert_eq!(missing.status, 200, "v1 says not found in the body only");
    assert_eq!(missing.json()["ocs"]["meta"]["statuscode"], 404);
    assert_eq!(
        missing.json()["ocs"]["meta"]["message"],
        "User does not exist"
    );
    let denied = s
        .get(
            "/ocs/v1.php/cloud/users/bob/groups?format=json",
            Req::auth("erin", "erin-pw"),
        )
        .await;
    assert_eq!(
        (
            denied.status,
            denied.json()["ocs"]["meta"]["statuscode"].clone()
        ),
        (200, json!(998))
    );
    // but a refused login is a 401 on v1 too
    assert_unauthorised(
        &s.get("/ocs/v1.php/cloud/user?format=json", Req::auth("erin", "x"))
            .await,
        "v1 wrong password",
    );
}

#[tokio::test]
async fn cookies_are_set_and_never_taken_back() {
    let s = Standin::start(&[]);
    let user = v2("cloud/user");
    for answer in [
        s.get(&user, Req::auth("erin", "erin-pw")).await,
        s.get(&user, Req::auth("erin", "wrong")).await,
        s.get(
            &user,
            Req {
                ocs_header: false,
                ..Req::auth("erin", "erin-pw")
            },
        )
        .await,
        s.admin("cloud/users/nobody").await,
    ] {
        assert_eq!(answer.cookie_names(), COOKIES, "status {}", answer.status);
    }
    // a request sending any of them back is refused, even with the right
    // password, and a wrong password does not slip through
    let first = s.get(&user, Req::auth("erin", "erin-pw")).await;
    let session = first.cookies[3].split(';').next().unwrap().to_owned();
    for (cookie, password) in [
        (session.as_str(), "erin-pw"),
        (session.as_str(), "wrong"),
        (
            "nc_sameSiteCookielax=true; nc_sameSiteCookiestrict=true",
            "wrong",
        ),
        ("other=1; cookie_test=test", "erin-pw"),
    ] {
        let answer = s
            .get(
                &user,
                Req {
                    cookie: Some(cookie),
                    ..Req::auth("erin", password)
                },
            )
            .await;
        assert_eq!(answer.status, 400, "{cookie}: {}", answer.body);
        assert!(answer.body.contains("skip Basic auth"), "{}", answer.body);
    }
    // an unrelated cookie is harmless
    let other = s
        .get(
            &user,
            Req {
                cookie: Some("theme=dark"),
                ..Req::auth("erin", "erin-pw")
            },
        )
        .await;
    assert_eq!(other.status, 200);
    let stats = s.stats().await;
    assert_eq!(stats["ocs"]["cookies_returned"], 4);
    assert_eq!(stats["ocs"]["by_status"]["400"], 4);
    // a refused cookie request is no login attempt
    assert_eq!(stats["ocs"]["login_failures"], 1);
}

/// Eleven failures give 401 with growing delays, then everything gets 429.
#[tokio::test]
async fn throttling_grows_then_blocks() {
    let s = Standin::start(&["--throttle-scale", "0.01"]);
    let user = v2("cloud/user");
    let mut took = Vec::new();
    for n in 1..=12 {
        let login = format!("ghost{n}");
        let answer = s.get(&user, Req::auth(&login, "guess")).await;
        let expected = if n <= 11 { 401 } else { 429 };
        assert_eq!(answer.status, expected, "attempt {n}: {}", answer.body);
        took.push(answer.took.as_secs_f64());
    }
    // the table at 1/100: 2 2 4 8 16 32 64 128 250 250 250 ms, then at once
    assert!(took[7] > 3.0 * took[4], "delay grows: {took:?}");
    assert!(took[6] > 2.0 * took[4], "delay grows: {took:?}");
    assert!(took[8] > 1.5 * took[6], "delay grows: {took:?}");
    let capped = took[10] / took[9];
    assert!((0.5..2.0).contains(&capped), "delay capped: {took:?}");
    assert!(took[11] < took[10] / 4.0, "429 comes at once: {took:?}");
    // the sleeps are there at least (lower bounds are certain)
    assert!(took[8] >= 0.25 && took[7] >= 0.128, "{took:?}");

    // right passwords and app passwords are refused as well
    assert_eq!(s.get(&user, Req::auth("erin", "erin-pw")).await.status, 429);
    assert_eq!(
        s.get(&user, Req::auth("tom", "tom-phone-app")).await.status,
        429
    );
    assert_eq!(s.admin("cloud/users/erin").await.status, 429);
    let stats = s.stats().await;
    assert_eq!(stats["ocs"]["throttled"], 4);
    assert_eq!(stats["ocs"]["unauthorized"], 11);
    assert_eq!(stats["ocs"]["login_failures"], 11);
    assert_eq!(stats["ocs"]["bruteforce"]["127.0.0.1"], 11);

    // occ security:bruteforce:reset 127.0.0.1
    assert_eq!(
        s.post("/_standin/bruteforce/reset", "127.0.0.1")
            .await
            .body
            .trim(),
        "11"
    );
    let after = s.get(&user, Req::auth("erin", "erin-pw")).await;
    assert_eq!(after.status, 200);
    assert!(after.took < Duration::from_millis(100));
}

#[tokio::test]
async fn right_passwords_wait_and_success_clears_only_that_user() {
    let s = Standin::start(&["--throttle-scale", "0.25"]);
    let user = v2("cloud/user");
    for login in ["erin", "ghost", "erin"] {
        assert_eq!(s.get(&user, Req::auth(login, "wrong")).await.status, 401);
    }
    // three failures: 0.8 s × 0.25 before the check, right password or not
    let right = s.get(&user, Req::auth("erin", "erin-pw")).await;
    assert_eq!(right.status, 200);
    assert!(right.took >= Duration::from_millis(200), "{:?}", right.took);
    // erin's two failures are gone, ghost's stays
    let brute = s
        .control(reqwest::Method::GET, "/_standin/bruteforce", "")
        .await
        .json();
    assert_eq!(brute["buckets"], json!({"127.0.0.1": 1}));
    let next = s.get(&user, Req::auth("bob", "bob-pw")).await;
    assert_eq!(next.status, 200);
    // one failure left: 0.2 s × 0.25, a quarter of the wait before
    assert!(next.took >= Duration::from_millis(50));
    assert!(
        right.took.as_secs_f64() > 2.0 * next.took.as_secs_f64(),
        "{:?} {:?}",
        right.took,
        next.took
    );
}

#[tokio::test]
async fn the_allowlist_exempts_addresses() {
    let s = Standin::start(&[
        "--throttle-scale",
        "0.001",
        "--bruteforce-allowlist",
        "127.0.0.2/32,::1",
    ]);
    let user = v2("cloud/user");
    let exempt: IpAddr = "127.0.0.2".parse().unwrap();
    for n in 0..14 {
        let login = format!("ghost{n}");
        let answer = s
            .get(
                &user,
                Req {
                    from: exempt,
                    ..Req::auth(&login, "guess")
                },
            )
            .await;
        assert_eq!(answer.status, 401, "allowlisted attempt {n}");
    }
    let ok = s
        .get(
            &user,
            Req {
                from: exempt,
                ..Req::auth("erin", "erin-pw")
            },
        )
        .await;
    assert_eq!(ok.status, 200);
    // another address has its own bucket, which is not allowlisted
    for n in 0..11 {
        let login = format!("ghost{n}");
        assert_eq!(s.get(&user, Req::auth(&login, "guess")).await.status, 401);
    }
    assert_eq!(s.get(&user, Req::auth("erin", "erin-pw")).await.status, 429);
    // and the allowlist can change at run time
    s.post("/_standin/bruteforce/allowlist", "127.0.0.0/8")
        .await;
    assert_eq!(s.get(&user, Req::auth("erin", "erin-pw")).await.status, 200);
}

#[tokio::test]
async fn the_time_windows() {
    let s = Standin::start(&["--throttle-scale", "0.001"]);
    let user = v2("cloud/user");
    for n in 0..11 {
        let login = format!("ghost{n}");
        assert_eq!(s.get(&user, Req::auth(&login, "guess")).await.status, 401);
    }
    assert_eq!(s.get(&user, Req::auth("erin", "erin-pw")).await.status, 429);
    // 30 minutes later: no longer blocked, still delayed (25 s × scale)
    s.post("/_standin/clock", "1800").await;
    let later = s.get(&user, Req::auth("erin", "erin-pw")).await;
    assert_eq!(later.status, 200);
    assert!(later.took >= Duration::from_millis(25));
    // 12 hours later the failures are forgotten
    s.post("/_standin/clock", "43200").await;
    let brute = s
        .control(reqwest::Method::GET, "/_standin/bruteforce", "")
        .await
        .json();
    assert_eq!(brute["buckets"], json!({}));
    // the scale can change at run time
    s.post("/_standin/throttle-scale", "0.5").await;
    let brute = s
        .control(reqwest::Method::GET, "/_standin/bruteforce", "")
        .await
        .json();
    assert_eq!(brute["scale"], 0.5);
}

#[tokio::test]
async fn a_wrong_api_password_is_a_brute_force_failure() {
    let s = Standin::start(&["--throttle-scale", "0.001"]);
    let answer = s
        .get(
            &v2("cloud/users/erin"),
            Req::auth("xcauth-api", "stale-app-password"),
        )
        .await;
    assert_unauthorised(&answer, "wrong API password");
    let stats = s.stats().await;
    assert_eq!(stats["ocs"]["login_failures"], 1);
    assert_eq!(stats["ocs"]["bruteforce"]["127.0.0.1"], 1);
    assert_eq!(stats["ocs"]["by_endpoint"]["cloud/users/{uid}"], 1);
}

#[tokio::test]
async fn provisioning_as_admin() {
    let s = Standin::start(&[]);
    let erin = s.admin("cloud/users/erin").await;
    assert_eq!(erin.status, 200);
    let data = &erin.json()["ocs"]["data"];
    assert_eq!(data["id"], "erin");
    assert_eq!(data["enabled"], true);
    assert_eq!(data["displayname"], "Erin Email");
    assert_eq!(data["email"], "erin@example.org");
    assert_eq!(data["groups"], json!(["ocs-team", "xA"]));
    let dora = s.admin("cloud/users/dora").await.json();
    assert_eq!(dora["ocs"]["data"]["enabled"], false);

    let nobody = s.admin("cloud/users/nobody").await;
    assert_eq!(nobody.status, 404);
    assert_eq!(
        nobody.body,
        r#"{"ocs":{"meta":{"status":"failure","statuscode":404,"message":"User does not exist"},"data":[]}}"#
    );

    let groups = s.admin("cloud/users/tom/groups").await;
    assert_eq!(groups.status, 200);
    assert!(
        groups
            .body
            .contains(r#"{"groups":["ocs-team","\u00dcn\u00ef \"q\" it's a\/b c"]}"#),
        "{}",
        groups.body
    );

    let details = s.admin("cloud/groups/details?search=team").await.json();
    let list = details["ocs"]["data"]["groups"].as_array().unwrap().clone();
    let ids: Vec<&str> = list.iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ocs-team", "Ünï \"q\" it's a/b c"]);
    assert_eq!(list[0]["displayname"], "OCS Team ☕");
    assert_eq!(list[0]["usercount"], 5);
    assert_eq!(list[0]["disabled"], 1);
    assert_eq!(list[1]["displayname"], "Ünïcode \"Quoted\" Team");
    // searching display names, and every group without a search
    let by_name = s.admin("cloud/groups/details?search=literal").await.json();
    assert_eq!(by_name["ocs"]["data"]["groups"][0]["id"], "x%41");
    let all = s.admin("cloud/groups/details").await.json();
    let all_ids: Vec<&str> = all["ocs"]["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    for gid in ["admin", "staff", "chess", "Ops & Co.", "xA", "x%41"] {
        assert!(all_ids.contains(&gid), "{gid} in {all_ids:?}");
    }
}

#[tokio::test]
async fn provisioning_as_subadmin_and_as_plain_user() {
    let s = Standin::start(&[]);
    let sam = Req::auth("sam", "sam-pw");
    let get = |endpoint: &str, req: Req<'static>| {
        let path = v2(endpoint);
        let s = &s;
        async move { s.get(&path, req).await }
    };
    // a subadmin sees the members of its groups, not admins nor strangers
    assert_eq!(get("cloud/users/erin", sam).await.status, 200);
    assert_eq!(get("cloud/users/pia", sam).await.status, 200);
    let admin = get("cloud/users/xcauth-api", sam).await;
    assert_eq!(
        (
            admin.status,
            admin.json()["ocs"]["meta"]["statuscode"].clone()
        ),
        (404, json!(998))
    );
    let stranger = get("cloud/users/bob", sam).await;
    assert_eq!(stranger.json()["ocs"]["meta"]["statuscode"], 998);
    // only the groups it manages
    let groups = get("cloud/users/erin/groups", sam).await.json();
    assert_eq!(groups["ocs"]["data"]["groups"], json!(["ocs-team"]));
    assert_eq!(get("cloud/groups/ocs-team/users", sam).await.status, 200);
    assert_eq!(get("cloud/groups/xA/users", sam).await.status, 403);
    let details = get("cloud/groups/ocs-team/users/details", sam).await;
    assert_eq!(details.status, 200);
    let unmanaged = get("cloud/groups/xA/users/details", sam).await;
    assert_eq!(
        (
            unmanaged.status,
            unmanaged.json()["ocs"]["meta"]["statuscode"].clone()
        ),
        (404, json!(998))
    );

    // a plain user: itself only
    let erin = Req::auth("erin", "erin-pw");
    assert_eq!(get("cloud/users/erin", erin).await.status, 200);
    let other = get("cloud/users/bob", erin).await;
    assert_eq!(
        (
            other.status,
            other.json()["ocs"]["meta"]["statuscode"].clone()
        ),
        (404, json!(998))
    );
    let other_groups = get("cloud/users/bob/groups", erin).await;
    assert_eq!(
        (
            other_groups.status,
            other_groups.json()["ocs"]["meta"]["statuscode"].clone()
        ),
        (404, json!(998))
    );
    assert_eq!(
        get("cloud/users/erin/groups", erin).await.json()["ocs"]["data"]["groups"],
        json!(["ocs-team", "xA"])
    );
    assert_eq!(get("cloud/groups/ocs-team/users", erin).await.status, 403);
    assert_eq!(
        get("cloud/groups/ocs-team/users/details", erin)
            .await
            .status,
        404
    );
    // but unknown users are told apart from forbidden ones
    let unknown = get("cloud/users/nobody", erin).await;
    assert_eq!(unknown.json()["ocs"]["meta"]["statuscode"], 404);
    let unknown_group = s.admin("cloud/groups/no-such-group/users").await;
    assert_eq!(unknown_group.status, 404);
    assert_eq!(unknown_group.json()["ocs"]["meta"]["statuscode"], 404);
}

#[tokio::test]
async fn gids_in_the_path_are_decoded_twice() {
    let s = Standin::start(&[]);
    let members = |answer: Answer| -> Value {
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()["ocs"]["data"]["users"].clone()
    };
    // the group named "x%41", encoded once, is read as "xA"
    assert_eq!(
        members(s.admin("cloud/groups/x%2541/users").await),
        json!(["erin"])
    );
    // encoded twice it is the right group
    assert_eq!(
        members(s.admin("cloud/groups/x%252541/users").await),
        json!(["pia"])
    );
    let details = members(s.admin("cloud/groups/x%252541/users/details").await);
    assert_eq!(details["pia"]["displayname"], "Pia Percent");
    let wrong = members(s.admin("cloud/groups/x%2541/users/details").await);
    assert!(wrong.get("erin").is_some() && wrong.get("pia").is_none());
    // spaces, "/", quotes and non-ASCII survive one and two encodings
    let odd = "Ünï \"q\" it's a/b c";
    let once = members(s.admin(&format!("cloud/groups/{}/users", enc(odd))).await);
    let twice = members(
        s.admin(&format!("cloud/groups/{}/users", enc(&enc(odd))))
            .await,
    );
    assert_eq!(once, json!(["pia", "tom"]));
    assert_eq!(twice, once);
    // the deprecated form answers the same
    assert_eq!(
        members(s.admin(&format!("cloud/groups/{}", enc(odd))).await),
        once
    );
}

#[tokio::test]
async fn dot_segments_and_empty_ids_are_answered_as_nextcloud_does() {
    let s = Standin::start(&[]);
    let unknown_user = (404, json!(404), json!("User does not exist"));
    let invalid_query = |(status, code, message): (u16, Value, Value)| {
        assert_eq!((status, code), (404, json!(998)), "{message}");
        assert!(message.as_str().unwrap().starts_with("Invalid query"));
    };
    // Encoded, the dots reach Nextcloud as the literal uids: unknown users.
    for uid in ["%2E", "%2e", "%2E%2E", "%2e%2e"] {
        let path = format!("/ocs/v2.php/cloud/users/{uid}?format=json");
        assert_eq!(s.raw_admin(&path).await, unknown_user, "{path}");
    }
    // Unencoded, they are removed before routing; the empty uid and a uid
    // with a decoded "/" match no route: 998, as for an account without
    // rights. Never kinder than that.
    for path in [
        "/ocs/v2.php/cloud/users/.?format=json",
        "/ocs/v2.php/cloud/users/..?format=json",
        "/ocs/v2.php/cloud/users/?format=json",
        "/ocs/v2.php/cloud/users/a%2Fb?format=json",
        "/ocs/v2.php/cloud/users//groups?format=json",
    ] {
        invalid_query(s.raw_admin(path).await);
    }
    // A removed segment takes nothing of the uid that follows.
    let alice = s
        .raw_admin("/ocs/v2.php/cloud/users/./alice?format=json")
        .await;
    assert_eq!((alice.0, alice.1), (200, json!(200)));
    // Gids are decoded twice: "%252E" is the group ".", "%2E" too (its
    // second decoding changes nothing); neither exists.
    let no_group = (
        404,
        json!(998),
        json!("The requested group could not be found"),
    );
    for gid in ["%252E", "%2E", "%252E%252E", "%2e%2e"] {
        let path = format!("/ocs/v2.php/cloud/groups/{gid}/users/details?format=json");
        assert_eq!(s.raw_admin(&path).await, no_group, "{path}");
    }
    let stats = s.stats().await;
    assert_eq!(
        stats["ocs"]["last_path"], "/ocs/v2.php/cloud/groups/%2e%2e/users/details?format=json",
        "the path as it came on the wire"
    );
}

#[tokio::test]
async fn group_members_in_pages() {
    let s = Standin::start(&[]);
    let page = |offset: u32| format!("cloud/groups/ocs-team/users/details?limit=2&offset={offset}");
    let mut seen = Vec::new();
    for offset in [0, 2, 4] {
        let answer = s.admin(&page(offset)).await;
        assert_eq!(answer.status, 200);
        let users = answer.json()["ocs"]["data"]["users"].clone();
        let users = users.as_object().expect("keyed by uid").clone();
        assert!(users.len() <= 2);
        for (uid, user) in users {
            assert!(user["displayname"].is_string(), "{uid}");
            assert!(user["enabled"].is_boolean(), "{uid}");
            assert!(user["groups"]
                .as_array()
                .unwrap()
                .contains(&json!("ocs-team")));
            seen.push(uid);
        }
    }
    assert_eq!(seen, ["dora", "erin", "sam", "tom", "twin1"]);
    // past the end: PHP's empty array
    let empty = s.admin(&page(6)).await;
    assert!(
        empty.body.contains(r#""data":{"users":[]}"#),
        "{}",
        empty.body
    );
    let dora = s.admin(&page(0)).await.json();
    assert_eq!(dora["ocs"]["data"]["users"]["dora"]["enabled"], false);
    // the plain list has the uids only
    let uids = s.admin("cloud/groups/ocs-team/users").await.json();
    assert_eq!(
        uids["ocs"]["data"]["users"],
        json!(["dora", "erin", "sam", "tom", "twin1"])
    );
}

#[tokio::test]
async fn stats_count_every_ocs_request() {
    let s = Standin::start(&["--throttle-scale", "0.001"]);
    assert_eq!(s.stats().await["nextcloud_requests"], 0);
    s.get(&v2("cloud/user"), Req::auth("erin", "erin-pw")).await;
    s.get(&v2("cloud/user"), Req::auth("ghost", "secret-wrong-pw"))
        .await;
    s.admin("cloud/users/erin").await;
    s.admin("cloud/groups/ocs-team/users/details?limit=1").await;
    s.admin("cloud/groups/details").await;
    s.get(
        "/ocs/v1.php/cloud/user?format=json",
        Req::auth("erin", "erin-pw"),
    )
    .await;
    s.get(&v2("cloud/nothing"), Req::auth("erin", "erin-pw"))
        .await;
    let stats = s.stats().await;
    let ocs = &stats["ocs"];
    assert_eq!(ocs["requests"], 7);
    assert_eq!(
        ocs["by_endpoint"],
        json!({
            "cloud/user": 3,
            "cloud/users/{uid}": 1,
            "cloud/groups/{gid}/users/details": 1,
            "cloud/groups/details": 1,
            "(other)": 1,
        })
    );
    assert_eq!(ocs["by_version"], json!({"v1": 1, "v2": 6}));
    assert_eq!(ocs["by_status"], json!({"200": 5, "401": 1, "404": 1}));
    assert_eq!(ocs["unauthorized"], 1);
    assert_eq!(ocs["throttled"], 0);
    assert_eq!(ocs["cookies_returned"], 0);
    assert_eq!(ocs["logins"], 6);
    assert_eq!(
        ocs["last"],
        json!({"version": "v2", "endpoint": "(other)", "login": "erin", "status": 404})
    );
    assert_eq!(stats["requests"], 0);
    assert_eq!(stats["nextcloud_requests"], 7);
    let text = stats.to_string();
    assert!(
        !text.contains("secret-wrong-pw") && !text.contains("erin-pw") && !text.contains(ADMIN.1)
    );
    // reset zeroes the counters, not the throttle
    s.post("/_standin/reset", "").await;
    let stats = s.stats().await;
    assert_eq!(stats["ocs"]["requests"], 0);
    assert_eq!(stats["ocs"]["by_endpoint"], json!({}));
    assert_eq!(stats["ocs"]["bruteforce"]["127.0.0.1"], 1);
}

#[tokio::test]
async fn faults_and_latency_apply_to_ocs_too() {
    let s = Standin::start(&[]);
    let user = v2("cloud/user");
    s.post("/_standin/fault", "http500").await;
    assert_eq!(s.get(&user, Req::auth("erin", "erin-pw")).await.status, 500);
    s.post("/_standin/fault", "redirect").await;
    let redirect = s.get(&user, Req::auth("erin", "erin-pw")).await;
    assert_eq!(redirect.status, 302);
    s.post("/_standin/fault", "nonjson").await;
    let html = s.get(&user, Req::auth("erin", "erin-pw")).await;
    assert_eq!(html.status, 200);
    assert!(html.content_type.starts_with("text/html"));
    s.post("/_standin/fault", "none").await;
    s.post("/_standin/latency", "60").await;
    let slow = s.get(&user, Req::auth("erin", "erin-pw")).await;
    assert_eq!(slow.status, 200);
    assert!(slow.took >= Duration::from_millis(60));
    assert_eq!(s.stats().await["ocs"]["requests"], 4);
}

#[tokio::test]
async fn by_default_the_delays_are_nextclouds() {
    let s = Standin::start_exactly(&[]);
    let brute = s
        .control(reqwest::Method::GET, "/_standin/bruteforce", "")
        .await
        .json();
    assert_eq!(brute["scale"], 1.0);
    assert_eq!(brute["allowlist"], json!([]));
    // the first failure already takes 0.2 s, as measured
    let first = s.get(&v2("cloud/user"), Req::auth("ghost", "guess")).await;
    assert_eq!(first.status, 401);
    assert!(first.took >= Duration::from_millis(200), "{:?}", first.took);
}
