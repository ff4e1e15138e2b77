//! The Dovecot protocol (`--type dovecot`): what xcauth's Lua passdb and userdb for Dovecot send; TAB-separated lines in, `OK`/`NO`/`TEMPFAIL` out.
//!
//! One request per `\n`-terminated line, its fields separated by TAB:
//!
//! | line                                              | request             |
//! |---------------------------------------------------|---------------------|
//! | `auth` USER DOMAIN PASSWORD SERVICE CLIENT        | [`Request::Auth`]   |
//! | `isuser` USER DOMAIN                              | [`Request::IsUser`] |
//! | `quit`                                            | [`Request::Quit`]   |
//!
//! Inside a field, `\` starts an escape: `\\` is `\`, `\t` TAB, `\n` line
//! feed, `\r` carriage return; any other byte after `\` (or a `\` at the
//! end) makes the request invalid. So a password may hold any byte, and a
//! field can never end the line or forge another field. SERVICE (`imap`,
//! `pop3`, `smtp`, ...) and CLIENT (the client's IP address, as Dovecot's
//! `remote_ip`) may be empty; a CLIENT that is not an IP address makes the
//! request invalid. USER may contain `@` (mail logins are split at their
//! last `@`).
//!
//! The answer is one line, the same words for `auth` and `isuser`:
//!
//! - `OK`: right password / the user exists; also for an `isuser` that the
//!   back end could not answer for a user the cache knows
//!   ([`Reply::KnownWhileUnreachable`]): Dovecot delivers into its own
//!   mailboxes, so mail for a known user is kept, not deferred for the
//!   length of an outage;
//! - `NO`: wrong password / no such user, and every refused request;
//! - `TEMPFAIL`: the back end could not answer and no cache entry could
//!   ([`Reply::TryLater`]): Dovecot says `[UNAVAILABLE]` to the mail client
//!   and defers delivery.
//!
//! A line longer than [`MAX_LINE`] is answered `NO` and skipped as it
//! arrives. A last line without `\n` when the peer closes is dropped: it
//! may be cut short, and there is nobody to answer.

use bytes::{BufMut, BytesMut};

use super::generic::LineReader;
use super::{Codec, Decoded, Reply, Request};
use crate::secret::Secret;

/// The longest accepted line, counting its `\n`: room for a long password
/// or token twice over after escaping, while bounding what one stream can
/// make us buffer.
pub const MAX_LINE: usize = 8 * 1024;

/// Fields of an `auth` line, the command included.
const AUTH_FIELDS: usize = 6;

/// Fields of an `isuser` line, the command included.
const ISUSER_FIELDS: usize = 3;

const ANSWER_OK: &[u8] = b"OK\n";
const ANSWER_NO: &[u8] = b"NO\n";
const ANSWER_TEMPFAIL: &[u8] = b"TEMPFAIL\n";

/// Decoder and encoder for one Dovecot stream.
#[derive(Debug, Default)]
pub struct DovecotCodec {
    lines: LineReader,
}

impl Codec for DovecotCodec {
    fn decode(&mut self, buf: &mut BytesMut) -> Decoded {
        self.lines.decode(buf, MAX_LINE, parse_line)
    }

    fn encode(&self, reply: &Reply, out: &mut BytesMut) {
        out.put_slice(match reply {
            Reply::Yes | Reply::KnownWhileUnreachable => ANSWER_OK,
            Reply::TryLater => ANSWER_TEMPFAIL,
            Reply::No | Reply::Invalid(_) | Reply::Roster(_) => ANSWER_NO,
        });
    }
}

/// Parses one line (without `\n`; the line reader has dropped one trailing
/// `\r`, which a field can only carry escaped). Reasons name at most the
/// command, never a field, which may be a password.
fn parse_line(line: &[u8]) -> Request {
    let raw: Vec<&[u8]> = line.split(|&b| b == b'\t').collect();
    let command = match raw[0] {
        b"auth" => "auth",
        b"isuser" => "isuser",
        b"quit" if raw.len() == 1 => return Request::Quit,
        b"quit" => return invalid("quit: takes no arguments"),
        b"" if raw.len() == 1 => return invalid("empty request"),
        _ => return invalid("unknown command"),
    };
    let expected = if command == "auth" {
        AUTH_FIELDS
    } else {
        ISUSER_FIELDS
    };
    if raw.len() != expected {
        return invalid(format!(
            "{command}: expected {} TAB-separated fields after the command",
            expected - 1
        ));
    }
    let mut fields = Vec::with_capacity(expected - 1);
    for field in &raw[1..] {
        match unescape(field) {
            Some(text) => fields.push(text),
            None => return invalid(format!("{command}: a bad escape or invalid UTF-8")),
        }
    }
    let (user, domain) = (&fields[0], &fields[1]);
    if let Some(problem) = super::name_problem(user, domain, true) {
        return invalid(format!("{command}: {problem}"));
    }
    if command == "isuser" {
        return Request::IsUser {
            user: user.clone(),
            domain: domain.clone(),
        };
    }
    let (password, service, client) = (&fields[2], &fields[3], &fields[4]);
    if password.is_empty() {
        return invalid("auth: empty password");
    }
    if service.chars().any(super::breaks_lines) {
        return invalid("auth: control characters in the service");
    }
    if !client.is_empty() && client.parse::<std::net::IpAddr>().is_err() {
        return invalid("auth: the client is not an IP address");
    }
    Request::Auth {
        user: user.clone(),
        domain: domain.clone(),
        password: Secret::new(password),
        service: (!service.is_empty()).then(|| service.clone()),
        client: (!client.is_empty()).then(|| client.clone()),
    }
}

/// The text of one escaped field; `None` for a bad escape or bytes that are
/// not UTF-8.
fn unescape(field: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(field.len());
    let mut bytes = field.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match bytes.next()? {
            b'\\' => b'\\',
            b't' => b'\t',
            b'n' => b'\n',
            b'r' => b'\r',
            _ => return None,
        });
    }
    String::from_utf8(out).ok()
}

/// `text` escaped as a field of a request line: the inverse of the
/// decoder's unescaping (for clients and tests).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            other => out.push(other),
        }
    }
    out
}

fn invalid(reason: impl Into<String>) -> Request {
    Request::Invalid {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testing::{self, decode_all, decode_bytewise, encode_all, isuser, reason};

    fn one(input: &[u8]) -> Request {
        testing::one(&mut DovecotCodec::default(), input)
    }

    fn auth(user: &str, domain: &str, password: &str, service: &str, client: &str) -> Request {
        Request::Auth {
            user: user.into(),
            domain: domain.into(),
            password: Secret::new(password),
            service: (!service.is_empty()).then(|| service.into()),
            client: (!client.is_empty()).then(|| client.into()),
        }
    }

    #[test]
    fn auth_and_isuser() {
        assert_eq!(
            one(b"auth\talice\texample.org\tpw\timap\t192.0.2.7\n"),
            auth("alice", "example.org", "pw", "imap", "192.0.2.7")
        );
        assert_eq!(
            one(b"auth\talice\texample.org\tpw\t\t\n"),
            auth("alice", "example.org", "pw", "", "")
        );
        assert_eq!(
            one(b"auth\ta@b\tc\tpw\tsmtp\t2001:db8::1\r\n"),
            auth("a@b", "c", "pw", "smtp", "2001:db8::1")
        );
        assert_eq!(
            one(b"isuser\talice\texample.org\n"),
            isuser("alice", "example.org")
        );
        assert_eq!(one(b"quit\n"), Request::Quit);
    }

    #[test]
    fn escapes_carry_any_password() {
        for password in [
            "a\tb", "a\nb", "a\rb", "a\\b", "\\t", "p:w", "x\r", "ü\u{1}",
        ] {
            let line = format!("auth\talice\td\t{}\timap\t\n", escape(password));
            assert_eq!(
                one(line.as_bytes()),
                auth("alice", "d", password, "imap", ""),
                "{password:?}"
            );
        }
    }

    #[test]
    fn refused_requests() {
        for (input, why) in [
            (&b"\n"[..], "empty request"),
            (b"setpass\ta\tb\tc\n", "unknown command"),
            (b"hunter2\n", "unknown command"),
            (b"quit\tnow\n", "quit: takes no arguments"),
            (
                b"auth\talice\td\tpw\timap\n",
                "auth: expected 5 TAB-separated fields after the command",
            ),
            (
                b"auth\talice\td\tp\tw\timap\t\n",
                "auth: expected 5 TAB-separated fields after the command",
            ),
            (
                b"isuser\talice\n",
                "isuser: expected 2 TAB-separated fields after the command",
            ),
            (
                b"auth\talice\td\tp\\x\timap\t\n",
                "auth: a bad escape or invalid UTF-8",
            ),
            (
                b"auth\talice\td\tpw\\\timap\t\n",
                "auth: a bad escape or invalid UTF-8",
            ),
            (
                b"auth\talice\td\tpw\\\n",
                "auth: expected 5 TAB-separated fields after the command",
            ),
            (
                b"isuser\talice\td\\\n",
                "isuser: a bad escape or invalid UTF-8",
            ),
            (
                b"auth\talice\td\tp\xff\timap\t\n",
                "auth: a bad escape or invalid UTF-8",
            ),
            (b"auth\t\td\tpw\timap\t\n", "auth: empty user or domain"),
            (b"isuser\talice\t\n", "isuser: empty user or domain"),
            (
                b"auth\ta\\nb\td\tpw\timap\t\n",
                "auth: control characters in user or domain",
            ),
            (b"isuser\ta\tb@c\n", "isuser: @ in user or domain"),
            (b"auth\talice\td\t\timap\t\n", "auth: empty password"),
            (
                b"auth\talice\td\tpw\ti\\nmap\t\n",
                "auth: control characters in the service",
            ),
            (
                b"auth\talice\td\tpw\timap\tnot-an-ip\n",
                "auth: the client is not an IP address",
            ),
            (
                b"auth\talice\td\tpw\timap\t192.0.2.7;25\n",
                "auth: the client is not an IP address",
            ),
        ] {
            assert_eq!(reason(&one(input)), why, "{input:?}");
        }
    }

    #[test]
    fn reasons_never_hold_the_password() {
        for input in [
            &b"auth\talice\td\tsecret\\q\timap\t\n"[..],
            b"auth\talice\td\tsecret\timap\tx\n",
            b"auth\talice\td\tsecret\n",
            b"secret\n",
        ] {
            assert!(!reason(&one(input)).contains("secret"), "{input:?}");
        }
    }

    #[test]
    fn pipelined_and_split_lines() {
        let input = b"auth\talice\td\tpw\timap\t::1\nisuser\tbob\td\nquit\n";
        let expected = vec![
            Decoded::Request(auth("alice", "d", "pw", "imap", "::1")),
            Decoded::Request(isuser("bob", "d")),
            Decoded::Request(Request::Quit),
        ];
        assert_eq!(decode_all(&mut DovecotCodec::default(), input), expected);
        let mut buf = BytesMut::new();
        assert_eq!(
            decode_bytewise(&mut DovecotCodec::default(), &mut buf, input),
            expected
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_line_needs_more_and_is_dropped_at_eof() {
        let mut codec = DovecotCodec::default();
        let partial = b"auth\talice\td\tpw";
        let mut buf = BytesMut::from(&partial[..]);
        assert_eq!(codec.decode(&mut buf), Decoded::NeedMore);
        assert_eq!(buf.len(), partial.len());
        assert_eq!(codec.decode_eof(&mut buf), Decoded::End);
        assert!(buf.is_empty());
    }

    #[test]
    fn over_long_line_is_refused_once_and_not_buffered() {
        let mut codec = DovecotCodec::default();
        let mut buf = BytesMut::new();
        buf.put_slice(b"auth\talice\td\t");
        buf.put_slice(&vec![b'p'; MAX_LINE]);
        match codec.decode(&mut buf) {
            Decoded::Request(request) => {
                assert_eq!(reason(&request), "line longer than 8192 bytes");
            }
            other => panic!("{other:?}"),
        }
        assert!(buf.is_empty());
        buf.put_slice(&vec![b'p'; MAX_LINE * 4]);
        assert_eq!(codec.decode(&mut buf), Decoded::NeedMore);
        assert!(buf.is_empty());
        buf.put_slice(b"\timap\t\nisuser\tbob\td\n");
        assert_eq!(codec.decode(&mut buf), Decoded::Request(isuser("bob", "d")));
    }

    #[test]
    fn encodes_three_answers() {
        let codec = DovecotCodec::default();
        assert_eq!(
            encode_all(
                &codec,
                &[
                    Reply::Yes,
                    Reply::KnownWhileUnreachable,
                    Reply::No,
                    Reply::TryLater,
                    Reply::Invalid("x".into()),
                    Reply::Roster("{}".into()),
                ]
            ),
            b"OK\nOK\nNO\nTEMPFAIL\nNO\nNO\n"
        );
    }
}
