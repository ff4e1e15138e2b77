//! `POST /_standin/users/reload`: the stand-in reads its users file again,
//! so a test can change Nextcloud's users, groups and names at run time.
//! Real HTTP over loopback against the xcauth-standin binary.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha1::Sha1;

const SECRET: &str = "standin-reload-test-secret";
const JSXC_API: &str = "/index.php/apps/ojsxc/ajax/externalApi.php";
const ADMIN: (&str, &str) = ("xcauth-api", "xcauth-api-app");

const BEFORE: &str = "group:\tcrew\tThe Crew\n\
    xcauth-api\tapi-main-pw\tAPI\t\tadmin\tapp-password=xcauth-api-app\n\
    alice\talice-pw\tAlice\tcrew\n\
    bob\tbob-pw\tBob\tcrew\n";

const AFTER: &str = "group:\tcrew\tCrew Renamed\n\
    xcauth-api\tapi-main-pw\tAPI\t\tadmin\tapp-password=xcauth-api-app\n\
    alice\talice-pw\tAlice Renamed\tcrew\n\
    bob\tbob-pw\tBob\n\
    carol\tcarol-pw\tCarol\tcrew\n";

/// A running stand-in serving a users file; killed when dropped.
struct Standin {
    child: Child,
    addr: SocketAddr,
    http: reqwest::Client,
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Standin {
    fn start(users: &Path) -> Standin {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xcauth-standin"))
            .arg("--users")
            .arg(users)
            .args(["--secret", SECRET])
            .env_remove("XCAUTH_STANDIN_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start xcauth-standin");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("start-up line");
        let addr = line
            .trim_end()
            .strip_prefix("listening on http://")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(addr, _)| addr.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("unexpected start-up line {line:?}");
        };
        Standin {
            child,
            addr,
            http: reqwest::Client::new(),
        }
    }

    async fn reload(&self) -> (u16, String) {
        let response = self
            .http
            .post(format!("http://{}/_standin/users/reload", self.addr))
            .send()
            .await
            .expect("reload request");
        (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        )
    }

    /// A signed JSXC API call's `data`.
    async fn jsxc(&self, operation: &str, username: &str) -> Value {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("operation", operation)
            .append_pair("username", username)
            .finish();
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(SECRET.as_bytes()).expect("key");
        mac.update(form.as_bytes());
        let signature = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
        let body = self
            .http
            .post(format!("http://{}{JSXC_API}", self.addr))
            .header("X-JSXC-SIGNATURE", signature)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .expect("JSXC request")
            .text()
            .await
            .expect("JSXC body");
        let value: Value = serde_json::from_str(&body).expect("JSXC JSON");
        value["data"].clone()
    }

    /// An OCS v2 call as the admin account: its `ocs.data`.
    async fn ocs(&self, endpoint: &str) -> Value {
        let body = self
            .http
            .get(format!(
                "http://{}/ocs/v2.php/{endpoint}?format=json",
                self.addr
            ))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .header("OCS-APIRequest", "true")
            .send()
            .await
            .expect("OCS request")
            .text()
            .await
            .expect("OCS body");
        let value: Value = serde_json::from_str(&body).expect("OCS JSON");
        value["ocs"]["data"].clone()
    }
}

#[tokio::test]
async fn a_reload_changes_members_names_and_labels_on_both_apis() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users.txt");
    std::fs::write(&users, BEFORE).expect("write users");
    let standin = Standin::start(&users);

    let roster = standin.jsxc("sharedroster", "alice").await;
    assert_eq!(roster["sharedRoster"]["bob"]["groups"][0], "The Crew");
    assert_eq!(
        standin.ocs("cloud/users/bob/groups").await["groups"][0],
        "crew"
    );
    assert_eq!(standin.jsxc("isuser", "carol").await["isUser"], false);

    std::fs::write(&users, AFTER).expect("rewrite users");
    assert_eq!(standin.reload().await, (200, "4 users\n".to_owned()));

    let roster = standin.jsxc("sharedroster", "alice").await;
    assert!(roster["sharedRoster"].get("bob").is_none(), "{roster}");
    assert_eq!(roster["sharedRoster"]["alice"]["name"], "Alice Renamed");
    assert_eq!(roster["sharedRoster"]["carol"]["groups"][0], "Crew Renamed");
    assert_eq!(standin.jsxc("isuser", "carol").await["isUser"], true);
    let groups = standin.ocs("cloud/users/bob/groups").await;
    assert_eq!(
        groups["groups"].as_array().map(Vec::len),
        Some(0),
        "{groups}"
    );
    let members = standin.ocs("cloud/groups/crew/users").await;
    assert_eq!(members["users"], serde_json::json!(["alice", "carol"]));
}

#[tokio::test]
async fn a_bad_users_file_keeps_the_old_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users.txt");
    std::fs::write(&users, BEFORE).expect("write users");
    let standin = Standin::start(&users);

    std::fs::write(&users, "alice\tpw\nalice\tpw\n").expect("rewrite users");
    let (status, text) = standin.reload().await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("more than once"), "{text}");
    std::fs::remove_file(&users).expect("remove users");
    assert_eq!(standin.reload().await.0, 400);

    let roster = standin.jsxc("sharedroster", "alice").await;
    assert_eq!(roster["sharedRoster"]["bob"]["name"], "Bob");
    assert_eq!(
        standin.ocs("cloud/users/bob/groups").await["groups"][0],
        "crew"
    );
}
