//! The JSXC external API itself, without sockets: signature check, operations, reply bodies.
//!
//! Everything here mirrors what the Nextcloud JSXC app (`ojsxc`) does, down
//! to the spelling of its JSON: the body is what PHP's `json_encode` with
//! `JSON_HEX_TAG` writes (non-ASCII as `\uXXXX`, `/` as `\/`, an empty
//! array as `[]`), so clients are tested against the real bytes.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha384, Sha512};
use xcauth::secret::Secret;

use crate::users::{php_empty, UserTable};

/// The request header carrying `ALGO=HEX(HMAC(ALGO, raw body, secret))`.
pub const SIGNATURE_HEADER: &str = "x-jsxc-signature";

/// A JSON value as PHP builds it: strings, booleans, lists and ordered
/// associative arrays.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// A string.
    Str(String),
    /// `true` or `false`.
    Bool(bool),
    /// An ordered associative array; PHP writes an empty one as `[]`.
    Map(Vec<(String, Json)>),
}

impl Json {
    /// Shorthand for a string value.
    pub fn str(value: &str) -> Json {
        Json::Str(value.to_owned())
    }

    /// Shorthand for a map from `(key, value)` pairs.
    pub fn map<const N: usize>(pairs: [(&str, Json); N]) -> Json {
        Json::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// The text PHP's `json_encode($value, JSON_HEX_TAG)` produces.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Str(s) => write_php_string(s, out),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Map(pairs) if pairs.is_empty() => out.push_str("[]"),
            Json::Map(pairs) => {
                out.push('{');
                for (i, (key, value)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_php_string(key, out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// A list value (PHP's list array) from strings.
fn string_list(items: &[&str]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_php_string(item, &mut out);
    }
    out.push(']');
    out
}

/// Writes `s` as PHP's `json_encode(…, JSON_HEX_TAG)` spells a string.
pub fn write_php_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7f => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The form fields the API reads.
#[derive(Debug, Default, Clone)]
pub struct Fields {
    /// `auth`, `isuser` or `sharedroster` (anything else is unsupported).
    pub operation: String,
    /// The user name as the XMPP/mail server saw it.
    pub username: String,
    /// The auth domain.
    pub domain: String,
    /// The password (auth only).
    pub password: Secret,
}

impl Fields {
    /// Reads a form body (`a=b&c=d`, `+` for space, percent escapes; the last
    /// of repeated keys wins, as in PHP).
    pub fn parse_form(body: &[u8]) -> Fields {
        let mut fields = Fields::default();
        for (key, value) in form_urlencoded::parse(body) {
            match key.as_ref() {
                "operation" => fields.operation = value.into_owned(),
                "username" => fields.username = value.into_owned(),
                "domain" => fields.domain = value.into_owned(),
                "password" => fields.password = Secret::new(value.into_owned()),
                _ => {}
            }
        }
        fields
    }
}

/// What the API sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`, if there is a body.
    pub content_type: Option<&'static str>,
    /// `Location`, for redirects.
    pub location: Option<&'static str>,
    /// The body bytes (UTF-8 text).
    pub body: String,
}

/// Nextcloud's content type for JSON responses.
pub const JSON_TYPE: &str = "application/json; charset=utf-8";
const HTML_TYPE: &str = "text/html; charset=UTF-8";

impl Reply {
    /// A JSON reply.
    pub fn json(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: Some(JSON_TYPE),
            location: None,
            body,
        }
    }

    /// The app's error reply: HTTP 500, `{"result":"error","data":{"msg":...}}`.
    pub fn error(msg: &str) -> Reply {
        let body = Json::map([
            ("result", Json::str("error")),
            ("data", Json::map([("msg", Json::str(msg))])),
        ]);
        Reply::json(500, body.encode())
    }

    fn success(data: String) -> Reply {
        Reply::json(200, format!("{{\"result\":\"success\",\"data\":{data}}}"))
    }

    /// Nextcloud's "Page not found" page (HTTP 404).
    pub fn not_found() -> Reply {
        Reply {
            status: 404,
            content_type: Some(HTML_TYPE),
            location: None,
            body: NOT_FOUND_PAGE.to_owned(),
        }
    }

    /// An HTML page with status 200, where JSON was expected.
    pub fn html_page() -> Reply {
        Reply {
            status: 200,
            content_type: Some(HTML_TYPE),
            location: None,
            body: LOGIN_PAGE.to_owned(),
        }
    }

    /// A redirect to the login page, as Nextcloud sends for a request it
    /// wants a browser session for.
    pub fn login_redirect() -> Reply {
        Reply {
            status: 302,
            content_type: None,
            location: Some(LOGIN_PATH),
            body: String::new(),
        }
    }

    /// HTTP 200 with JSON of a shape the JSXC API never sends (an OCS
    /// envelope), which a client must not read as success or rejection.
    pub fn bad_shape() -> Reply {
        Reply::json(
            200,
            r#"{"ocs":{"meta":{"status":"ok","statuscode":200,"message":"OK"},"data":[]}}"#
                .to_owned(),
        )
    }

    /// An empty reply with this status (e.g. 405 for a GET on the API).
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            content_type: None,
            location: None,
            body: String::new(),
        }
    }
}

/// Where a redirect sends the client.
pub const LOGIN_PATH: &str =
    "/index.php/login?redirect_url=/index.php/apps/ojsxc/ajax/externalApi.php";

const NOT_FOUND_PAGE: &str = "<!DOCTYPE html>\n<html class=\"ng-csp\" data-placeholder-focus=\"false\" lang=\"en\">\n\
<head>\n<meta charset=\"utf-8\">\n<title>Nextcloud</title>\n</head>\n<body id=\"body-login\">\n\
<div class=\"wrapper\"><div class=\"v-align\">\n<main>\n<div class=\"body-login-container update\">\n\
<h2>Page not found</h2>\n<p class=\"infogroup\">The page could not be found on the server.</p>\n\
<p><a class=\"button primary\" href=\"/\">Back to Nextcloud</a></p>\n</div>\n</main>\n</div></div>\n</body>\n</html>\n";

const LOGIN_PAGE: &str = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<title>Login – Nextcloud</title>\n</head>\n<body id=\"body-login\">\n\
<form method=\"post\" name=\"login\"><input type=\"text\" name=\"user\"><input type=\"password\" name=\"password\">\
<input type=\"submit\" value=\"Log in\"></form>\n</body>\n</html>\n";

/// Why a request's signature was refused; the `Display` text is the app's
/// message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// No (or an empty) `X-JSXC-SIGNATURE` header.
    Missing,
    /// The part before `=` names an algorithm we do not compute.
    Unsupported(String),
    /// The HMAC does not match.
    Mismatch,
}

impl SignatureError {
    /// The message the JSXC app puts into its error reply.
    pub fn message(&self) -> String {
        match self {
            SignatureError::Missing => "HTTP header \"X-JSXC-Signature\" is missing.".to_owned(),
            SignatureError::Unsupported(algo) => {
                format!("Hash algorithm '{algo}' is not supported.")
            }
            SignatureError::Mismatch => "Signature does not match.".to_owned(),
        }
    }
}

fn mac_matches<M: Mac + KeyInit>(key: &[u8], body: &[u8], expected: &[u8]) -> bool {
    match <M as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(body);
            mac.verify_slice(expected).is_ok()
        }
        Err(_) => false,
    }
}

/// The JSXC app's signature check: split the header at the first `=`,
/// recompute `hash_hmac(ALGO, raw body, secret)` and compare it with the hex
/// text. PHP compares the lowercase hex strings, so uppercase hex is a
/// mismatch; the comparison of the MAC itself is constant-time.
pub fn check_signature(
    header: Option<&str>,
    body: &[u8],
    secret: &Secret,
) -> Result<(), SignatureError> {
    let header = match header {
        Some(h) if !h.is_empty() => h,
        _ => return Err(SignatureError::Missing),
    };
    let (algo, hex_mac) = header.split_once('=').unwrap_or((header, ""));
    let key = secret.expose().as_bytes();
    let check: fn(&[u8], &[u8], &[u8]) -> bool = match algo {
        "sha1" => mac_matches::<Hmac<Sha1>>,
        "sha256" => mac_matches::<Hmac<Sha256>>,
        "sha384" => mac_matches::<Hmac<Sha384>>,
        "sha512" => mac_matches::<Hmac<Sha512>>,
        other => return Err(SignatureError::Unsupported(other.to_owned())),
    };
    if hex_mac.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(SignatureError::Mismatch);
    }
    match hex::decode(hex_mac) {
        Ok(expected) if check(key, body, &expected) => Ok(()),
        _ => Err(SignatureError::Mismatch),
    }
}

/// Answers one signed, parsed request from the user table: the JSXC app's
/// `auth`, `isuser` and `sharedroster` operations.
pub fn answer(users: &UserTable, fields: &Fields) -> Reply {
    match fields.operation.as_str() {
        "auth" => match users.login(&fields.username, &fields.domain, fields.password.expose()) {
            Some(user) => Reply::success(Json::map([("uid", Json::str(&user.uid))]).encode()),
            None => Reply::json(200, Json::map([("result", Json::str("noauth"))]).encode()),
        },
        "isuser" => {
            let found = users.find(&fields.username, &fields.domain).is_some();
            Reply::success(Json::map([("isUser", Json::Bool(found))]).encode())
        }
        "sharedroster" => {
            if php_empty(&fields.username) {
                return Reply::error("No username provided");
            }
            let Some(user) = users.find(&fields.username, &fields.domain) else {
                return Reply::error("User does not exist.");
            };
            let roster = users.roster(user);
            let body = if roster.is_empty() {
                "[]".to_owned()
            } else {
                let members: Vec<String> = roster
                    .iter()
                    .map(|entry| {
                        let mut member = Json::str(entry.uid).encode();
                        member.push_str(":{\"name\":");
                        member.push_str(&Json::str(entry.name).encode());
                        member.push_str(",\"groups\":");
                        member.push_str(&string_list(&entry.groups));
                        member.push('}');
                        member
                    })
                    .collect();
                format!("{{{}}}", members.join(","))
            };
            Reply::success(format!("{{\"sharedRoster\":{body}}}"))
        }
        _ => Reply::error("Unsupported operation."),
    }
}

/// The whole API for one request without faults: signature first (the
/// app's middleware), then the operation.
pub fn respond(
    users: &UserTable,
    secret: &Secret,
    signature: Option<&str>,
    body: &[u8],
    fields: &Fields,
) -> Reply {
    match check_signature(signature, body, secret) {
        Ok(()) => answer(users, fields),
        Err(err) => Reply::error(&err.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> UserTable {
        UserTable::parse(
            "alice\tpw\tAlice </Ünïcödé> 🦊\tstaff,chess\nbob\tb:pw\tBob\tstaff\ndave\tdp\n",
        )
        .unwrap()
    }

    fn fields(op: &str, user: &str, password: &str) -> Fields {
        Fields {
            operation: op.to_owned(),
            username: user.to_owned(),
            domain: "example.org".to_owned(),
            password: Secret::new(password),
        }
    }

    fn hex_mac<M: Mac + KeyInit>(body: &[u8], secret: &str) -> String {
        let mut mac = <M as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn sign(algo: &str, body: &[u8], secret: &str) -> String {
        let hex = match algo {
            "sha1" => hex_mac::<Hmac<Sha1>>(body, secret),
            _ => hex_mac::<Hmac<Sha256>>(body, secret),
        };
        format!("{algo}={hex}")
    }

    #[test]
    fn php_json_escapes() {
        let v = Json::map([
            ("a/b", Json::str("x<y>\"\\\n\u{1}é🦊\u{7f}")),
            ("empty", Json::Map(vec![])),
            ("t", Json::Bool(true)),
        ]);
        assert_eq!(
            v.encode(),
            r#"{"a\/b":"x\u003Cy\u003E\"\\\n\u0001\u00e9\ud83e\udd8a"#.to_owned()
                + "\u{7f}"
                + r#"","empty":[],"t":true}"#
        );
    }

    #[test]
    fn auth_success_and_noauth() {
        let u = users();
        assert_eq!(
            answer(&u, &fields("auth", "bob", "b:pw")),
            Reply::json(200, r#"{"result":"success","data":{"uid":"bob"}}"#.into())
        );
        assert_eq!(
            answer(&u, &fields("auth", "bob", "wrong")),
            Reply::json(200, r#"{"result":"noauth"}"#.into())
        );
        assert_eq!(
            answer(&u, &fields("auth", "nobody", "pw")).body,
            r#"{"result":"noauth"}"#
        );
    }

    #[test]
    fn isuser_true_and_false() {
        let u = users();
        assert_eq!(
            answer(&u, &fields("isuser", "alice", "")).body,
            r#"{"result":"success","data":{"isUser":true}}"#
        );
        assert_eq!(
            answer(&u, &fields("isuser", "zed", "")).body,
            r#"{"result":"success","data":{"isUser":false}}"#
        );
    }

    #[test]
    fn sharedroster_bodies() {
        let u = users();
        let reply = answer(&u, &fields("sharedroster", "bob", ""));
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.body,
            r#"{"result":"success","data":{"sharedRoster":{"alice":{"name":"Alice \u003C\/\u00dcn\u00efc\u00f6d\u00e9\u003E \ud83e\udd8a","groups":["staff"]},"bob":{"name":"Bob","groups":["staff"]}}}}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(
            parsed["data"]["sharedRoster"]["alice"]["name"],
            "Alice </Ünïcödé> 🦊"
        );
        assert_eq!(
            answer(&u, &fields("sharedroster", "dave", "")).body,
            r#"{"result":"success","data":{"sharedRoster":[]}}"#
        );
        let unknown = answer(&u, &fields("sharedroster", "zed", ""));
        assert_eq!(unknown.status, 500);
        assert!(unknown
            .body
            .starts_with(r#"{"result":"error","data":{"msg":"#));
        assert_eq!(answer(&u, &fields("sharedroster", "", "")).status, 500);
    }

    #[test]
    fn unsupported_operation_is_an_error() {
        let reply = answer(&users(), &fields("delete", "alice", ""));
        assert_eq!(
            reply,
            Reply::json(
                500,
                r#"{"result":"error","data":{"msg":"Unsupported operation."}}"#.into()
            )
        );
    }

    #[test]
    fn signature_rules() {
        let secret = Secret::new("s3cret");
        let body = b"operation=isuser&username=alice&domain=example.org";
        assert_eq!(
            check_signature(Some(&sign("sha1", body, "s3cret")), body, &secret),
            Ok(())
        );
        assert_eq!(
            check_signature(Some(&sign("sha256", body, "s3cret")), body, &secret),
            Ok(())
        );
        assert_eq!(
            check_signature(Some(&sign("sha1", body, "other")), body, &secret),
            Err(SignatureError::Mismatch)
        );
        let upper = sign("sha1", body, "s3cret")
            .to_uppercase()
            .replacen("SHA1", "sha1", 1);
        assert_eq!(
            check_signature(Some(&upper), body, &secret),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check_signature(None, body, &secret),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check_signature(Some(""), body, &secret),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check_signature(Some("md5=00"), body, &secret),
            Err(SignatureError::Unsupported("md5".into()))
        );
        assert_eq!(
            check_signature(Some("sha1"), body, &secret),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check_signature(Some("sha1=zz"), body, &secret),
            Err(SignatureError::Mismatch)
        );
        // the signature covers the exact bytes: a re-encoded body fails
        let reordered = b"username=alice&operation=isuser&domain=example.org";
        assert_eq!(
            check_signature(Some(&sign("sha1", body, "s3cret")), reordered, &secret),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn respond_checks_the_signature_first() {
        let u = users();
        let secret = Secret::new("k");
        let body = b"operation=auth&username=bob&password=b%3Apw";
        let f = Fields::parse_form(body);
        assert_eq!(f.password.expose(), "b:pw");
        let good = respond(&u, &secret, Some(&sign("sha1", body, "k")), body, &f);
        assert_eq!(good.body, r#"{"result":"success","data":{"uid":"bob"}}"#);
        let bad = respond(&u, &secret, Some("sha1=00"), body, &f);
        assert_eq!(
            bad,
            Reply::json(
                500,
                r#"{"result":"error","data":{"msg":"Signature does not match."}}"#.into()
            )
        );
    }

    #[test]
    fn form_parsing_php_style() {
        let f = Fields::parse_form(b"operation=auth&username=a+b&username=c%40d&domain=x&extra=1");
        assert_eq!(f.operation, "auth");
        assert_eq!(f.username, "c@d", "the last repeated key wins");
        assert_eq!(f.domain, "x");
        assert!(f.password.is_empty());
        assert_eq!(Fields::parse_form(b"username=a+b").username, "a b");
    }
}
