//! The Nextcloud JSXC app's external API (SPEC §4): signed form POSTs and
//! the classification of what comes back.

use std::sync::Arc;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use sha1::Sha1;

use super::http::{clip, looks_like_html, reason, scrub, HttpClient};
use super::{Backend, BackendError, BackendKind, Cause, Member, Roster, Verdict};
use crate::secret::Secret;

/// The header that carries the body signature.
pub const SIGNATURE_HEADER: &str = "X-JSXC-SIGNATURE";

/// The path of the API below Nextcloud's root; a URL ending so is a JSXC
/// URL.
pub const API_PATH: &str = "/apps/ojsxc/ajax/externalApi.php";

/// The hint for a 404 from the API URL.
const NOT_FOUND_HINT: &str =
    "wrong API URL? Nextcloud needs index.php/ in it: .../index.php/apps/ojsxc/ajax/externalApi.php; \
     or the JSXC app is not loaded (Nextcloud 31 and newer cannot load it): \
     use backend=nextcloud with the Nextcloud base URL";

/// The hint for a server error that is not the app's own error reply.
const APP_GONE_HINT: &str =
    "if the JSXC app no longer loads on this Nextcloud, use backend=nextcloud";

/// The hint for a reply that is not the API's JSON.
const NOT_THE_API: &str = "is the URL the JSXC external API?";

/// One operation of the external API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `operation=auth` with the password.
    Auth(Secret),
    /// `operation=isuser`.
    IsUser,
    /// `operation=sharedroster`.
    SharedRoster,
}

impl Operation {
    /// The `operation` field.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Auth(_) => "auth",
            Operation::IsUser => "isuser",
            Operation::SharedRoster => "sharedroster",
        }
    }
}

/// A classified reply that is an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `auth`: right or wrong password.
    Auth(Verdict),
    /// `isuser`.
    IsUser(bool),
    /// `sharedroster`, normalised.
    Roster(Roster),
}

/// One XMPP domain's JSXC external API.
#[derive(Debug)]
pub struct JsxcBackend {
    client: Arc<HttpClient>,
    url: String,
    secret: Secret,
    auth_domain: String,
}

impl JsxcBackend {
    /// The API at `url`, signed with `secret`, told `auth_domain`.
    pub fn new(client: Arc<HttpClient>, url: String, secret: Secret, auth_domain: String) -> Self {
        JsxcBackend {
            client,
            url,
            secret,
            auth_domain,
        }
    }

    /// Sends one signed operation and classifies the reply.
    pub async fn ask(&self, user: &str, operation: &Operation) -> Result<Answer, BackendError> {
        // The bytes signed are the bytes sent: encode once, sign, send.
        let body = encode_body(operation, user, &self.auth_domain);
        let signature = sign(body.as_bytes(), self.secret.expose().as_bytes());
        let hidden: Vec<&str> = match operation {
            Operation::Auth(password) => vec![password.expose(), self.secret.expose()],
            _ => vec![self.secret.expose()],
        };
        let reply = self
            .client
            .send(|c| {
                c.post(self.url.as_str())
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(SIGNATURE_HEADER, signature)
                    .body(body)
            })
            .await
            .map_err(|cause| BackendError::Unavailable(scrub(cause, &hidden)))
            .map_err(transport)?;
        classify(
            operation,
            reply.status,
            reply.location.as_deref(),
            &reply.body,
        )
        .map_err(|e| scrub_error(e, &hidden))
    }
}

#[async_trait]
impl Backend for JsxcBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Jsxc
    }

    async fn auth(&self, user: &str, password: &Secret) -> Result<Verdict, BackendError> {
        match self.ask(user, &Operation::Auth(password.clone())).await? {
            Answer::Auth(verdict) => Ok(verdict),
            _ => Err(unexpected("auth")),
        }
    }

    async fn is_user(&self, user: &str) -> Result<bool, BackendError> {
        match self.ask(user, &Operation::IsUser).await? {
            Answer::IsUser(known) => Ok(known),
            _ => Err(unexpected("isuser")),
        }
    }

    async fn roster(&self, user: &str) -> Result<Roster, BackendError> {
        match self.ask(user, &Operation::SharedRoster).await? {
            Answer::Roster(roster) => Ok(roster),
            _ => Err(unexpected("sharedroster")),
        }
    }
}

fn unexpected(operation: &str) -> BackendError {
    BackendError::Misconfigured(Cause::Malformed(format!(
        "unexpected answer to {operation}"
    )))
}

/// Transport trouble: TLS and an oversized reply point at the set-up, the
/// rest is an outage.
fn transport(err: BackendError) -> BackendError {
    match err {
        BackendError::Unavailable(cause @ (Cause::Tls(_) | Cause::Malformed(_))) => {
            BackendError::Misconfigured(cause)
        }
        other => other,
    }
}

fn scrub_error(err: BackendError, hidden: &[&str]) -> BackendError {
    match err {
        BackendError::Rejected(c) => BackendError::Rejected(scrub(c, hidden)),
        BackendError::Unavailable(c) => BackendError::Unavailable(scrub(c, hidden)),
        BackendError::Throttled(c) => BackendError::Throttled(scrub(c, hidden)),
        BackendError::Misconfigured(c) => BackendError::Misconfigured(scrub(c, hidden)),
    }
}

/// The form body: `operation`, `username`, `domain` and, for `auth`,
/// `password`, in this order, `application/x-www-form-urlencoded`.
pub fn encode_body(operation: &Operation, user: &str, auth_domain: &str) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("operation", operation.name());
    form.append_pair("username", user);
    form.append_pair("domain", auth_domain);
    if let Operation::Auth(password) = operation {
        form.append_pair("password", password.expose());
    }
    form.finish()
}

/// The `X-JSXC-SIGNATURE` value for `body`: `sha1=` and the lowercase hex
/// HMAC-SHA1 keyed with the API secret.
pub fn sign(body: &[u8], secret: &[u8]) -> String {
    // HMAC accepts keys of every length, so this cannot fail.
    let mut mac =
        <Hmac<Sha1> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Classifies a reply (SPEC §4): HTTP 200 with JSON `result` `success` is
/// an answer, `noauth` for `auth` is [`Verdict::Rejected`], everything else
/// is a [`BackendError`] (a redirect, 404, bad signature or reply of the
/// wrong shape points at the set-up; other statuses and error replies are
/// an outage; 429 is throttling). `location` is the `Location` header.
///
/// Error texts never quote the reply body except the server's own `msg`,
/// and never the request.
pub fn classify(
    operation: &Operation,
    status: u16,
    location: Option<&str>,
    body: &[u8],
) -> Result<Answer, BackendError> {
    match status {
        200 => classify_ok(operation, body),
        300..=399 => Err(BackendError::Misconfigured(Cause::Redirect {
            status,
            location: clip(location.unwrap_or_default()),
        })),
        404 => Err(BackendError::Misconfigured(Cause::NotFound(NOT_FOUND_HINT))),
        429 => Err(BackendError::Throttled(Cause::TooManyRequests)),
        _ => Err(classify_failure(status, body)),
    }
}

fn malformed(what: impl Into<String>) -> BackendError {
    BackendError::Misconfigured(Cause::Malformed(format!("{} ({NOT_THE_API})", what.into())))
}

fn classify_ok(operation: &Operation, body: &[u8]) -> Result<Answer, BackendError> {
    let text = std::str::from_utf8(body).map_err(|_| malformed("reply is not UTF-8 text"))?;
    let json: Value = serde_json::from_str(text).map_err(|_| malformed(not_json(text)))?;
    let result = json
        .get("result")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("JSON without a \"result\" text"))?;
    match (result, operation) {
        ("success", Operation::Auth(_)) => Ok(Answer::Auth(Verdict::Accepted)),
        ("success", Operation::IsUser) => json
            .pointer("/data/isUser")
            .and_then(is_user_flag)
            .map(Answer::IsUser)
            .ok_or_else(|| malformed("\"data.isUser\" missing or not a yes/no value")),
        ("success", Operation::SharedRoster) => json
            .pointer("/data/sharedRoster")
            .ok_or_else(|| malformed("\"data.sharedRoster\" missing"))
            .and_then(|r| parse_roster(r).map_err(malformed))
            .map(Answer::Roster),
        ("noauth", Operation::Auth(_)) => Ok(Answer::Auth(Verdict::Rejected)),
        ("error", _) => Err(error_reply(200, &json)),
        (other, _) => Err(malformed(format!(
            "result {:?} for operation {}",
            clip(other),
            operation.name()
        ))),
    }
}

/// `data.sharedRoster`: an object of members (`{"name":…,"groups":[…]}`),
/// or `[]` (PHP's empty array).
pub fn parse_roster(value: &Value) -> Result<Roster, String> {
    let entries = match value {
        Value::Object(map) => map,
        Value::Array(list) if list.is_empty() => return Ok(Roster::default()),
        Value::Array(_) => return Err("\"data.sharedRoster\" is a non-empty array".into()),
        _ => return Err("\"data.sharedRoster\" is not an object".into()),
    };
    let mut roster = Roster::default();
    for (uid, entry) in entries {
        let name = entry.get("name").and_then(Value::as_str).map(str::to_owned);
        let groups = group_names(entry.get("groups"));
        roster.members.insert(uid.clone(), Member { name, groups });
    }
    Ok(roster)
}

/// The group names of a member entry: a JSON array of strings, or an object
/// with string values (what PHP makes of an array with gaps in its keys).
fn group_names(groups: Option<&Value>) -> Vec<String> {
    let names: Vec<&str> = match groups {
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        Some(Value::Object(map)) => map.values().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    names.into_iter().map(str::to_owned).collect()
}

/// `isUser` as Nextcloud versions have sent it: `true`/`false`, `"1"`/`"0"`,
/// `1`/`0`.
fn is_user_flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.as_str() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        },
        Value::Number(n) => match n.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A non-200, non-3xx, non-404, non-429 reply.
fn classify_failure(status: u16, body: &[u8]) -> BackendError {
    let json = serde_json::from_slice::<Value>(body).ok();
    match json {
        Some(json) if json.get("result").and_then(Value::as_str) == Some("error") => {
            error_reply(status, &json)
        }
        _ => {
            let kind = if body.is_empty() {
                "no body"
            } else if looks_like_html(body) {
                "an HTML page, not the JSON API"
            } else {
                "not a JSON error reply"
            };
            let hint = if status == 500 {
                format!("; {APP_GONE_HINT}")
            } else {
                String::new()
            };
            BackendError::Unavailable(Cause::Failed {
                status,
                message: format!("{}; {kind}{hint}", reason(status)),
            })
        }
    }
}

/// `{"result":"error","data":{"msg":...}}`; Nextcloud answers a bad
/// signature this way.
fn error_reply(status: u16, json: &Value) -> BackendError {
    let msg = json
        .pointer("/data/msg")
        .or_else(|| json.get("msg"))
        .and_then(Value::as_str);
    match msg {
        Some(m) if m.to_ascii_lowercase().contains("signature") => {
            BackendError::Misconfigured(Cause::SignatureMismatch)
        }
        Some(m) => BackendError::Unavailable(Cause::Failed {
            status,
            message: clip(m),
        }),
        None => BackendError::Unavailable(Cause::Failed {
            status,
            message: "result \"error\" without a message".to_owned(),
        }),
    }
}

/// Describes a 200 reply that is not JSON without quoting it.
fn not_json(text: &str) -> String {
    if looks_like_html(text.as_bytes()) {
        format!(
            "an HTML page ({} bytes), not JSON: the URL may point at a login or error page",
            text.len()
        )
    } else if text.trim().is_empty() {
        "empty reply, not JSON".to_owned()
    } else {
        format!("{} bytes that are not JSON", text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::http::MAX_MESSAGE_CHARS;

    fn auth(password: &str) -> Operation {
        Operation::Auth(Secret::new(password))
    }

    fn ok(operation: &Operation, body: &str) -> Result<Answer, BackendError> {
        classify(operation, 200, None, body.as_bytes())
    }

    fn is_malformed(got: &Result<Answer, BackendError>) -> bool {
        matches!(got, Err(BackendError::Misconfigured(Cause::Malformed(_))))
    }

    fn member(name: &str, groups: &[&str]) -> Member {
        Member {
            name: Some(name.to_owned()),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    #[test]
    fn body_fields_in_order_without_password_unless_auth() {
        assert_eq!(
            encode_body(&auth("pw"), "alice", "example.org"),
            "operation=auth&username=alice&domain=example.org&password=pw"
        );
        assert_eq!(
            encode_body(&Operation::IsUser, "alice", "example.org"),
            "operation=isuser&username=alice&domain=example.org"
        );
        assert_eq!(
            encode_body(&Operation::SharedRoster, "alice", "example.org"),
            "operation=sharedroster&username=alice&domain=example.org"
        );
    }

    #[test]
    fn body_encodes_special_characters_and_round_trips() {
        let (user, domain, password) = ("al ice:&=", "exämple.org", "p+w&=: é€%");
        let body = encode_body(&auth(password), user, domain);
        // Checked against Python's urllib.parse.urlencode.
        assert_eq!(
            body,
            "operation=auth&username=al+ice%3A%26%3D&domain=ex%C3%A4mple.org\
             &password=p%2Bw%26%3D%3A+%C3%A9%E2%82%AC%25"
        );
        let fields: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let expected = [
            ("operation", "auth"),
            ("username", user),
            ("domain", domain),
            ("password", password),
        ];
        assert_eq!(fields.len(), expected.len());
        for ((k, v), (ek, ev)) in fields.iter().zip(expected) {
            assert_eq!((k.as_str(), v.as_str()), (ek, ev));
        }
    }

    #[test]
    fn signature_matches_independent_hmac_sha1() {
        // Values computed with Python's hmac module.
        let body = encode_body(&auth("p+w&=: é€"), "al ice:&=", "exämple.org");
        assert_eq!(
            sign(body.as_bytes(), b"01234"),
            "sha1=97a554f447b287e27419b4f6f7ad9d8f9fdfb6f6"
        );
        let body = encode_body(&Operation::IsUser, "alice", "example.org");
        assert_eq!(
            sign(body.as_bytes(), b"geheim"),
            "sha1=cfb58304271ad9c73b49a99c3b4d70597e495c06"
        );
    }

    #[test]
    fn auth_success_and_noauth() {
        let q = auth("pw");
        let yes = Ok(Answer::Auth(Verdict::Accepted));
        assert_eq!(
            ok(&q, r#"{"result":"success","data":{"uid":"alice"}}"#),
            yes
        );
        assert_eq!(ok(&q, r#"{"result":"success"}"#), yes);
        assert_eq!(
            ok(&q, r#"{"result":"noauth"}"#),
            Ok(Answer::Auth(Verdict::Rejected))
        );
    }

    #[test]
    fn noauth_is_only_an_answer_for_auth() {
        assert!(is_malformed(&ok(
            &Operation::IsUser,
            r#"{"result":"noauth"}"#
        )));
        assert!(is_malformed(&ok(
            &Operation::SharedRoster,
            r#"{"result":"noauth"}"#
        )));
    }

    #[test]
    fn noauth_with_another_status_is_an_outage() {
        let got = classify(&auth("pw"), 500, None, br#"{"result":"noauth"}"#);
        assert!(matches!(
            got,
            Err(BackendError::Unavailable(Cause::Failed { status: 500, .. }))
        ));
    }

    #[test]
    fn isuser_in_all_its_spellings() {
        for (value, expected) in [
            ("true", true),
            ("false", false),
            ("\"1\"", true),
            ("\"0\"", false),
            ("1", true),
            ("0", false),
        ] {
            let body = format!(r#"{{"result":"success","data":{{"isUser":{value}}}}}"#);
            assert_eq!(
                ok(&Operation::IsUser, &body),
                Ok(Answer::IsUser(expected)),
                "{value}"
            );
        }
        for value in ["\"yes\"", "2", "null", "[]"] {
            let body = format!(r#"{{"result":"success","data":{{"isUser":{value}}}}}"#);
            assert!(is_malformed(&ok(&Operation::IsUser, &body)), "{value}");
        }
        assert!(is_malformed(&ok(
            &Operation::IsUser,
            r#"{"result":"success","data":{}}"#
        )));
    }

    #[test]
    fn roster_is_normalised() {
        let body = "{\"result\": \"success\",\n \"data\": {\"sharedRoster\": \
                    {\"bob\": {\"name\": \"Bob B\", \"groups\": [\"G1\", \"G2\"]}, \
                     \"carol\": {\"groups\": {\"0\": \"G1\", \"2\": \"G3\"}}}}}";
        let Ok(Answer::Roster(roster)) = ok(&Operation::SharedRoster, body) else {
            panic!("not a roster");
        };
        assert_eq!(roster.members["bob"], member("Bob B", &["G1", "G2"]));
        assert_eq!(roster.members["carol"].name, None);
        assert_eq!(roster.members["carol"].groups, ["G1", "G3"]);
        assert_eq!(
            roster.to_json(),
            r#"{"bob":{"groups":["G1","G2"],"name":"Bob B"},"carol":{"groups":["G1","G3"]}}"#
        );
    }

    #[test]
    fn same_roster_in_other_spelling_has_the_same_fingerprint() {
        let a = r#"{"result":"success","data":{"sharedRoster":{"a":{"name":"A","groups":["g"]},"b":{"name":"B","groups":["g"]}}}}"#;
        let b = "{\"data\": {\"sharedRoster\": {\"b\": {\"groups\": [\"g\"], \"name\": \"B\"},\n\
                 \"a\": {\"groups\": [\"g\"], \"name\": \"A\"}}}, \"result\": \"success\"}";
        let (Ok(Answer::Roster(a)), Ok(Answer::Roster(b))) = (
            ok(&Operation::SharedRoster, a),
            ok(&Operation::SharedRoster, b),
        ) else {
            panic!("not rosters");
        };
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn empty_roster_arrives_as_empty_array() {
        let body = r#"{"result":"success","data":{"sharedRoster":[]}}"#;
        assert_eq!(
            ok(&Operation::SharedRoster, body),
            Ok(Answer::Roster(Roster::default()))
        );
    }

    #[test]
    fn roster_of_wrong_shape_is_malformed() {
        for roster in ["null", "[1]", "\"x\"", "3"] {
            let body = format!(r#"{{"result":"success","data":{{"sharedRoster":{roster}}}}}"#);
            assert!(
                is_malformed(&ok(&Operation::SharedRoster, &body)),
                "{roster}"
            );
        }
        assert!(is_malformed(&ok(
            &Operation::SharedRoster,
            r#"{"result":"success"}"#
        )));
    }

    #[test]
    fn ok_status_with_wrong_shape_is_malformed() {
        let q = auth("pw");
        for body in [
            "",
            "<!DOCTYPE html><html>Login</html>",
            "1",
            "\"success\"",
            "{}",
            r#"{"result":true}"#,
            r#"{"result":"maybe"}"#,
            "{\"result\":",
        ] {
            assert!(is_malformed(&ok(&q, body)), "{body:?}");
        }
        assert!(is_malformed(&classify(&q, 200, None, b"\xff\xfe{}")));
    }

    #[test]
    fn html_is_named_but_not_quoted_and_the_hint_given() {
        let got = ok(&Operation::IsUser, "<html>secret-ish</html>");
        let Err(BackendError::Misconfigured(Cause::Malformed(m))) = got else {
            panic!("not malformed");
        };
        assert!(m.contains("HTML"));
        assert!(m.contains(NOT_THE_API));
        assert!(!m.contains("secret-ish"));
    }

    #[test]
    fn error_result_on_ok_status_is_an_outage() {
        assert_eq!(
            ok(
                &Operation::SharedRoster,
                r#"{"result":"error","data":{"msg":"User not found"}}"#
            ),
            Err(BackendError::Unavailable(Cause::Failed {
                status: 200,
                message: "User not found".to_owned()
            }))
        );
    }

    #[test]
    fn nextcloud_signature_complaint() {
        for msg in [
            "Signature not valid.",
            "Signature does not match",
            "bad signature",
        ] {
            let body = format!(r#"{{"result":"error","data":{{"msg":"{msg}"}}}}"#);
            assert_eq!(
                classify(&auth("pw"), 500, None, body.as_bytes()),
                Err(BackendError::Misconfigured(Cause::SignatureMismatch)),
                "{msg}"
            );
        }
    }

    #[test]
    fn other_server_errors_keep_a_short_message() {
        assert_eq!(
            classify(
                &Operation::IsUser,
                500,
                None,
                br#"{"result":"error","data":{"msg":"Unsupported operation."}}"#
            ),
            Err(BackendError::Unavailable(Cause::Failed {
                status: 500,
                message: "Unsupported operation.".to_owned()
            }))
        );
        let long = format!(
            r#"{{"result":"error","data":{{"msg":"line1\nline2 {}"}}}}"#,
            "x".repeat(1000)
        );
        let Err(BackendError::Unavailable(Cause::Failed { message, .. })) =
            classify(&Operation::IsUser, 500, None, long.as_bytes())
        else {
            panic!("not failed");
        };
        assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert!(message.starts_with("line1 line2 x"));
        assert!(message.ends_with('…'));
    }

    #[test]
    fn non_json_error_pages_are_described() {
        let Err(BackendError::Unavailable(Cause::Failed { status, message })) =
            classify(&Operation::IsUser, 503, None, b"<html>Maintenance</html>")
        else {
            panic!("not failed");
        };
        assert_eq!(status, 503);
        assert!(message.contains("Service Unavailable"), "{message}");
        assert!(message.contains("HTML"), "{message}");
        assert!(!message.contains("Maintenance"));
        for status in [401, 204] {
            // Another 2xx is not the 200 the API sends.
            assert!(
                matches!(
                    classify(&Operation::IsUser, status, None, b""),
                    Err(BackendError::Unavailable(Cause::Failed { status: s, .. })) if s == status
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn a_nextcloud_without_the_app_gets_the_hint_to_switch() {
        let not_found = classify(&auth("pw"), 404, None, b"<html>").unwrap_err();
        assert!(
            not_found.to_string().contains("backend=nextcloud"),
            "{not_found}"
        );
        let crashed = classify(&auth("pw"), 500, None, b"<html>Internal</html>").unwrap_err();
        assert!(
            crashed.to_string().contains("backend=nextcloud"),
            "{crashed}"
        );
        // The app's own error replies keep their message only.
        let own = classify(
            &auth("pw"),
            500,
            None,
            br#"{"result":"error","data":{"msg":"x"}}"#,
        );
        assert!(!own.unwrap_err().to_string().contains("backend=nextcloud"));
    }

    #[test]
    fn throttling_is_its_own_error() {
        assert_eq!(
            classify(&auth("pw"), 429, None, b""),
            Err(BackendError::Throttled(Cause::TooManyRequests))
        );
    }

    #[test]
    fn not_found_and_redirects_point_at_the_set_up() {
        assert_eq!(
            classify(&Operation::IsUser, 404, None, b"<html>nope</html>"),
            Err(BackendError::Misconfigured(Cause::NotFound(NOT_FOUND_HINT)))
        );
        assert_eq!(
            classify(
                &Operation::IsUser,
                302,
                Some("https://cloud.example.org/login"),
                b""
            ),
            Err(BackendError::Misconfigured(Cause::Redirect {
                status: 302,
                location: "https://cloud.example.org/login".to_owned()
            }))
        );
        assert_eq!(
            classify(&Operation::IsUser, 301, None, b""),
            Err(BackendError::Misconfigured(Cause::Redirect {
                status: 301,
                location: String::new()
            }))
        );
        // A redirect is an error even when its body looks like success.
        assert!(matches!(
            classify(&auth("pw"), 307, Some("/x"), br#"{"result":"success"}"#),
            Err(BackendError::Misconfigured(Cause::Redirect {
                status: 307,
                ..
            }))
        ));
    }

    #[test]
    fn scrub_hides_echoed_password_and_secret() {
        let password = "p@ss w0rd&";
        let secret = "the-api-secret";
        let echoed = format!(
            r#"{{"result":"error","data":{{"msg":"got password={} raw {} key {}"}}}}"#,
            form_urlencoded::byte_serialize(password.as_bytes()).collect::<String>(),
            password,
            secret
        );
        let err = classify(&auth(password), 500, None, echoed.as_bytes())
            .map_err(|e| scrub_error(e, &[password, secret]))
            .unwrap_err();
        let shown = err.to_string();
        assert!(!shown.contains(password), "{shown}");
        assert!(!shown.contains("p%40ss"), "{shown}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }
}
