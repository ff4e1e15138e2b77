//! The generic line protocol (`--type generic`, alias `prosody`): `auth:USER:DOMAIN:PASSWORD\n` in, `1\n` or `0\n` out.
//!
//! One request per `\n`-terminated line (a trailing `\r` is dropped). The
//! line is split on `:` at most three times, so a password may contain `:`:
//!
//! | line                         | request              |
//! |------------------------------|----------------------|
//! | `auth:USER:DOMAIN:PASSWORD`  | [`Request::Auth`]    |
//! | `isuser:USER:DOMAIN`         | [`Request::IsUser`]  |
//! | `roster:USER:DOMAIN`         | [`Request::Roster`]  |
//! | `quit`, `exit`               | [`Request::Quit`]    |
//!
//! Everything else — `setpass`, ejabberd's `tryregister`, `removeuser`,
//! `removeuser3`, `certauth`, unknown commands, a wrong number of fields, an
//! empty user or domain, bad UTF-8, a line longer than [`MAX_LINE`] — is a
//! [`Request::Invalid`], answered `0`. The text parser is shared with the
//! ejabberd codec, whose frames carry the same commands.

use bytes::{Buf, BufMut, BytesMut};

use super::{Codec, Decoded, Reply, Request};
use crate::secret::Secret;

/// The longest accepted line, counting its `\n`. Prosody itself refuses
/// queries over 1000 bytes; this leaves room for long passwords and tokens
/// while bounding what one stream can make us buffer.
pub const MAX_LINE: usize = 8 * 1024;

/// Decoder and encoder for one generic (Prosody) stream.
#[derive(Debug, Default)]
pub struct GenericCodec {
    lines: LineReader,
}

impl Codec for GenericCodec {
    fn decode(&mut self, buf: &mut BytesMut) -> Decoded {
        self.lines.decode(buf, MAX_LINE, parse_command)
    }

    /// Like Python's `readline`, a last line without `\n` is still a request;
    /// the call after it (or with nothing left) says [`Decoded::End`].
    fn decode_eof(&mut self, buf: &mut BytesMut) -> Decoded {
        self.lines.decode_eof(buf, MAX_LINE, parse_command)
    }

    fn encode(&self, reply: &Reply, out: &mut BytesMut) {
        match reply {
            Reply::Yes | Reply::KnownWhileUnreachable => out.put_slice(b"1\n"),
            Reply::No | Reply::TryLater | Reply::Invalid(_) => out.put_slice(b"0\n"),
            Reply::Roster(json) => {
                // The answer must stay one line. Raw line breaks can only be
                // white space between JSON tokens (inside strings they are
                // escaped), so turning them into spaces keeps the JSON valid.
                out.reserve(json.len() + 1);
                out.extend(json.bytes().map(|b| match b {
                    b'\n' | b'\r' => b' ',
                    other => other,
                }));
                out.put_u8(b'\n');
            }
        }
    }
}

/// `authclient:ADDRESS:USER:DOMAIN:PASSWORD` (what the Prosody module sends
/// so the guard knows the client): ADDRESS is an IPv4 address or an IPv6
/// address in brackets (`[2001:db8::1]`); the rest is as in `auth`.
fn parse_authclient(rest: &str) -> Request {
    let usage = || invalid("authclient: expected authclient:ADDRESS:USER:DOMAIN:PASSWORD");
    let (address, rest) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once("]:") {
            Some((address, rest)) => (address, rest),
            None => return usage(),
        },
        None => match rest.split_once(':') {
            Some(split) => split,
            None => return usage(),
        },
    };
    if address.parse::<std::net::IpAddr>().is_err() {
        return invalid("authclient: the address is not an IP address");
    }
    match parse_command(format!("auth:{rest}").as_bytes()) {
        auth @ Request::Auth { .. } => auth.with_client(address),
        _ => usage(),
    }
}

/// Parses the text of one generic line or ejabberd frame (without line
/// terminator). Reasons in [`Request::Invalid`] name at most the command,
/// never the rest of the text, which may hold a password.
pub(crate) fn parse_command(bytes: &[u8]) -> Request {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return match known_command(bytes) {
            Some(command) => invalid(format!("{command}: not valid UTF-8")),
            None => invalid("request is not valid UTF-8"),
        };
    };
    let mut fields = text.splitn(4, ':');
    let command = fields.next().unwrap_or_default();
    let (a, b, c) = (fields.next(), fields.next(), fields.next());
    match command {
        "auth" => match (a, b, c) {
            (Some(user), Some(domain), Some(password)) => {
                if let Some(problem) = super::name_problem(user, domain, false) {
                    invalid(format!("auth: {problem}"))
                } else {
                    Request::Auth {
                        user: user.to_owned(),
                        domain: domain.to_owned(),
                        password: Secret::new(password),
                        service: None,
                        client: None,
                    }
                }
            }
            _ => invalid("auth: expected auth:USER:DOMAIN:PASSWORD"),
        },
        "authclient" => parse_authclient(&text["authclient:".len().min(text.len())..]),
        "isuser" | "roster" => match (a, b, c) {
            (Some(user), Some(domain), None) => {
                if let Some(problem) = super::name_problem(user, domain, false) {
                    invalid(format!("{command}: {problem}"))
                } else if command == "isuser" {
                    Request::IsUser {
                        user: user.to_owned(),
                        domain: domain.to_owned(),
                    }
                } else {
                    Request::Roster {
                        user: user.to_owned(),
                        domain: domain.to_owned(),
                    }
                }
            }
            _ => invalid(format!("{command}: expected {command}:USER:DOMAIN")),
        },
        "quit" | "exit" if a.is_none() => Request::Quit,
        "quit" | "exit" => invalid(format!("{command}: takes no arguments")),
        "setpass" | "tryregister" | "removeuser" | "removeuser3" | "certauth" => {
            invalid(format!("{command}: not supported"))
        }
        "" if a.is_none() => invalid("empty request"),
        // An unknown "command" may be a password typed into the wrong place:
        // do not echo it.
        _ => invalid("unknown command"),
    }
}

/// The command word of `bytes` if it is one we know by name; used to make
/// log reasons useful without echoing unknown (possibly secret) text.
fn known_command(bytes: &[u8]) -> Option<&'static str> {
    let word = bytes.split(|&b| b == b':').next().unwrap_or_default();
    [
        "auth",
        "authclient",
        "isuser",
        "roster",
        "quit",
        "exit",
        "setpass",
        "tryregister",
        "removeuser",
        "removeuser3",
        "certauth",
    ]
    .into_iter()
    .find(|known| known.as_bytes() == word)
}

fn invalid(reason: impl Into<String>) -> Request {
    Request::Invalid {
        reason: reason.into(),
    }
}

/// Splits a stream into `\n`-terminated lines of bounded length; shared by
/// the generic and Postfix codecs.
///
/// A line reaching the limit without a `\n` yields one over-long answer at
/// once; its remaining bytes, up to and including the next `\n`, are then
/// dropped as they arrive, so nothing beyond the limit is ever buffered.
#[derive(Debug, Default)]
pub(crate) struct LineReader {
    /// Bytes at the front of the buffer already searched for `\n`, so a line
    /// arriving a byte at a time is not searched from its start each time.
    scanned: usize,
    /// Dropping the tail of an over-long line.
    discarding: bool,
}

impl LineReader {
    /// Takes one line (of at most `max` bytes including `\n`) off `buf` and
    /// hands its text, without `\n` and one trailing `\r`, to `parse`.
    pub(crate) fn decode(
        &mut self,
        buf: &mut BytesMut,
        max: usize,
        parse: impl FnOnce(&[u8]) -> Request,
    ) -> Decoded {
        if self.discarding {
            match find_newline(buf) {
                Some(newline) => {
                    buf.advance(newline + 1);
                    self.discarding = false;
                }
                None => {
                    buf.clear();
                    return Decoded::NeedMore;
                }
            }
        }
        let start = self.scanned.min(buf.len());
        match find_newline(&buf[start..]) {
            Some(offset) => {
                let newline = start + offset;
                self.scanned = 0;
                if newline >= max {
                    buf.advance(newline + 1);
                    return too_long(max);
                }
                let request = parse(strip_cr(&buf[..newline]));
                buf.advance(newline + 1);
                Decoded::Request(request)
            }
            None if buf.len() >= max => {
                buf.clear();
                self.scanned = 0;
                self.discarding = true;
                too_long(max)
            }
            None => {
                self.scanned = buf.len();
                Decoded::NeedMore
            }
        }
    }

    /// At end of input: a last line without `\n` is still parsed; after that
    /// (or if nothing is left) the stream ends.
    pub(crate) fn decode_eof(
        &mut self,
        buf: &mut BytesMut,
        max: usize,
        parse: impl FnOnce(&[u8]) -> Request,
    ) -> Decoded {
        if self.discarding || buf.is_empty() {
            self.discarding = false;
            self.scanned = 0;
            buf.clear();
            return Decoded::End;
        }
        if find_newline(buf).is_some() {
            // Callers normally come here only after `decode` said NeedMore,
            // but a whole line must still be taken as one.
            return self.decode(buf, max, parse);
        }
        self.scanned = 0;
        let decoded = if buf.len() >= max {
            too_long(max)
        } else {
            Decoded::Request(parse(strip_cr(buf)))
        };
        buf.clear();
        decoded
    }
}

fn find_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn too_long(max: usize) -> Decoded {
    Decoded::Request(invalid(format!("line longer than {max} bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testing::{self, auth, decode_all, decode_bytewise, encode_all, reason};

    fn one(input: &[u8]) -> Request {
        testing::one(&mut GenericCodec::default(), input)
    }

    #[test]
    fn auth_isuser_roster() {
        assert_eq!(
            one(b"auth:alice:example.org:pw\n"),
            auth("alice", "example.org", "pw")
        );
        assert_eq!(
            one(b"isuser:alice:example.org\n"),
            Request::IsUser {
                user: "alice".into(),
                domain: "example.org".into()
            }
        );
        assert_eq!(
            one(b"roster:alice:example.org\r\n"),
            Request::Roster {
                user: "alice".into(),
                domain: "example.org".into()
            }
        );
    }

    #[test]
    fn control_characters_and_at_signs_are_refused() {
        for (input, why) in [
            (
                &b"auth:a\x1bb:d:pw\n"[..],
                "auth: control characters in user or domain",
            ),
            (
                b"auth:a:d\x7f:pw\n",
                "auth: control characters in user or domain",
            ),
            (
                b"isuser:a\x00:d\n",
                "isuser: control characters in user or domain",
            ),
            (
                "isuser:a\u{2028}b:d\n".as_bytes(),
                "isuser: control characters in user or domain",
            ),
            (
                "auth:a:d\u{2029}:pw\n".as_bytes(),
                "auth: control characters in user or domain",
            ),
            (b"auth:a@b:c:pw\n", "auth: @ in user or domain"),
            (b"auth:a:b@c:pw\n", "auth: @ in user or domain"),
            (b"roster:a@b:c\n", "roster: @ in user or domain"),
        ] {
            assert_eq!(
                one(input),
                Request::Invalid { reason: why.into() },
                "{input:?}"
            );
        }
        // A control character in the password is the password's business.
        assert!(matches!(one(b"auth:a:d:p\x01w\n"), Request::Auth { .. }));
    }

    #[test]
    fn authclient_carries_the_client_address() {
        let with = |client: &str| Request::Auth {
            user: "alice".into(),
            domain: "example.org".into(),
            password: Secret::new("p:w"),
            service: None,
            client: Some(client.into()),
        };
        assert_eq!(
            one(b"authclient:192.0.2.1:alice:example.org:p:w\n"),
            with("192.0.2.1")
        );
        assert_eq!(
            one(b"authclient:[2001:db8::1]:alice:example.org:p:w\n"),
            with("2001:db8::1")
        );
        for bad in [
            &b"authclient:not-an-ip:alice:example.org:pw\n"[..],
            b"authclient:2001:db8::1:alice:example.org:pw\n",
            b"authclient:[::1:alice:example.org:pw\n",
            b"authclient:192.0.2.1:alice\n",
            b"authclient:192.0.2.1::example.org:pw\n",
        ] {
            assert!(matches!(one(bad), Request::Invalid { .. }), "{bad:?}");
        }
    }

    #[test]
    fn password_keeps_colons_and_only_one_cr_is_stripped() {
        assert_eq!(one(b"auth:a:d:p:w::\n"), auth("a", "d", "p:w::"));
        assert_eq!(one(b"auth:a:d:pw\r\r\n"), auth("a", "d", "pw\r"));
        assert_eq!(one(b"auth:a:d:\n"), auth("a", "d", ""));
        assert_eq!(
            one("auth:jürgen:exämple.org:pässwörd\n".as_bytes()),
            auth("jürgen", "exämple.org", "pässwörd")
        );
    }

    #[test]
    fn quit_and_exit() {
        assert_eq!(one(b"quit\n"), Request::Quit);
        assert_eq!(one(b"exit\r\n"), Request::Quit);
        assert_eq!(reason(&one(b"quit:now\n")), "quit: takes no arguments");
    }

    #[test]
    fn unsupported_and_malformed_requests_are_invalid_without_secrets() {
        for (line, expected) in [
            (&b"setpass:a:d:secret1\n"[..], "setpass: not supported"),
            (b"tryregister:a:d:secret1\n", "tryregister: not supported"),
            (b"removeuser:a:d\n", "removeuser: not supported"),
            (b"removeuser3:a:d:secret1\n", "removeuser3: not supported"),
            (b"certauth:a:d\n", "certauth: not supported"),
            (b"secret1\n", "unknown command"),
            (b"frobnicate:a:secret1\n", "unknown command"),
            (b"auth:a:d\n", "auth: expected auth:USER:DOMAIN:PASSWORD"),
            (b"auth::d:secret1\n", "auth: empty user or domain"),
            (b"auth:a::secret1\n", "auth: empty user or domain"),
            (b"isuser:a\n", "isuser: expected isuser:USER:DOMAIN"),
            (
                b"isuser:a:d:secret1\n",
                "isuser: expected isuser:USER:DOMAIN",
            ),
            (b"roster::d\n", "roster: empty user or domain"),
            (b"\n", "empty request"),
            (b"auth:a:d:secret1\xff\n", "auth: not valid UTF-8"),
            (b"secret1\xff\n", "request is not valid UTF-8"),
        ] {
            let request = one(line);
            let got = reason(&request);
            assert_eq!(got, expected, "for {line:?}");
            assert!(!got.contains("secret1"));
        }
    }

    #[test]
    fn partial_input_needs_more_and_byte_at_a_time_gives_the_same() {
        let input = b"auth:a:d:p:w\nisuser:b:e\r\nquit\n";
        let whole = decode_all(&mut GenericCodec::default(), input);
        assert_eq!(whole.len(), 3);

        let mut buf = BytesMut::new();
        let got = decode_bytewise(&mut GenericCodec::default(), &mut buf, input);
        assert_eq!(got, whole);
        assert!(buf.is_empty());
    }

    #[test]
    fn pipelined_requests_come_out_in_order() {
        let got = decode_all(
            &mut GenericCodec::default(),
            b"isuser:a:d\nauth:b:d:x\nisuser:c:d\n",
        );
        let users: Vec<_> = got
            .iter()
            .map(|d| match d {
                Decoded::Request(Request::IsUser { user, .. } | Request::Auth { user, .. }) => {
                    user.as_str()
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(users, ["a", "b", "c"]);
    }

    #[test]
    fn over_long_line_is_one_invalid_then_the_stream_goes_on() {
        let mut codec = GenericCodec::default();
        let mut buf = BytesMut::new();
        // The limit is reached without a newline: one Invalid at once, and
        // nothing kept in the buffer.
        buf.put_slice(b"auth:a:d:");
        buf.put_slice(&vec![b'x'; MAX_LINE]);
        assert_eq!(
            reason(&match codec.decode(&mut buf) {
                Decoded::Request(r) => r,
                other => panic!("{other:?}"),
            }),
            format!("line longer than {MAX_LINE} bytes")
        );
        assert!(buf.is_empty());
        assert_eq!(codec.decode(&mut buf), Decoded::NeedMore);
        // More of the same line, across calls, is dropped silently.
        buf.put_slice(&vec![b'y'; 3 * MAX_LINE]);
        assert_eq!(codec.decode(&mut buf), Decoded::NeedMore);
        assert!(buf.is_empty());
        buf.put_slice(b"yyy\nisuser:a:d\n");
        assert_eq!(
            codec.decode(&mut buf),
            Decoded::Request(Request::IsUser {
                user: "a".into(),
                domain: "d".into()
            })
        );
        assert_eq!(codec.decode(&mut buf), Decoded::NeedMore);
    }

    #[test]
    fn over_long_line_arriving_whole_is_one_invalid() {
        let mut input = vec![b'z'; MAX_LINE];
        input.extend_from_slice(b"\nquit\n");
        let got = decode_all(&mut GenericCodec::default(), &input);
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[0], Decoded::Request(Request::Invalid { .. })));
        assert_eq!(got[1], Decoded::Request(Request::Quit));
    }

    #[test]
    fn line_of_exactly_the_limit_is_accepted() {
        let mut line = b"auth:a:d:".to_vec();
        line.resize(MAX_LINE - 1, b'p');
        line.push(b'\n');
        match one(&line) {
            Request::Auth { password, .. } => assert_eq!(password.expose().len(), MAX_LINE - 1 - 9),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn last_line_without_newline_is_decoded_at_eof() {
        let mut codec = GenericCodec::default();
        let mut buf = BytesMut::from(&b"isuser:a:d\nauth:a:d:pw"[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Decoded::Request(Request::IsUser { .. })
        ));
        assert_eq!(codec.decode(&mut buf), Decoded::NeedMore);
        assert_eq!(
            codec.decode_eof(&mut buf),
            Decoded::Request(auth("a", "d", "pw"))
        );
        assert_eq!(codec.decode_eof(&mut buf), Decoded::End);
    }

    #[test]
    fn eof_while_discarding_ends() {
        let mut codec = GenericCodec::default();
        let mut buf = BytesMut::from(&vec![b'q'; MAX_LINE + 5][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Decoded::Request(Request::Invalid { .. })
        ));
        buf.put_slice(b"tail");
        assert_eq!(codec.decode(&mut buf), Decoded::NeedMore);
        assert_eq!(codec.decode_eof(&mut buf), Decoded::End);
    }

    #[test]
    fn encodes_answers() {
        let roster = "{\n \"a\": {\"name\": \"A\\nB\"}\r\n}";
        assert_eq!(
            encode_all(&GenericCodec::default(), &testing::replies(roster)),
            b"1\n0\n0\n0\n{  \"a\": {\"name\": \"A\\nB\"}  }\n"
        );
    }
}
