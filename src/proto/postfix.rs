//! Postfix `tcp_table` lookups: `get user@domain\n` in, `200 OK\n` / `500 …\n` / `400 …\n` out.
//!
//! A request is `get SP KEY NL` (a trailing `\r` is dropped). Postfix
//! %XX-encodes `%`, white space and every non-printable byte of KEY, so
//! international addresses arrive as `%C3%A9`; the key is decoded (either hex
//! case) before use. KEY `user@domain` (split at the last `@`) asks whether
//! the user exists ([`Request::IsUser`]). With a recipient delimiter
//! configured, an address extension is cut off the local part at the first
//! delimiter character, as Postfix's `recipient_delimiter` does:
//! `alice+lists@example.org` asks about `alice@example.org`. `quit` closes
//! the stream. Anything else is answered `500 REASON` and the stream goes on.
//!
//! Answers: `200 OK` (user exists), `500 no such user`, `400 back end
//! unreachable, try again later` (Postfix then defers instead of bouncing).
//! Answer texts are %XX-encoded like keys and a whole answer line is at
//! most [`MAX_REPLY`] bytes.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use super::generic::LineReader;
use super::{Codec, Decoded, Reply, Request};

/// The longest accepted request line, counting its `\n`; a longer line is
/// answered `500` once and its remaining bytes are dropped.
pub const MAX_LINE: usize = 4096;

/// The longest answer line, counting its `\n` (the `tcp_table` limit).
pub const MAX_REPLY: usize = 4096;

const HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";

/// Decoder and encoder for one Postfix `tcp_table` stream.
#[derive(Debug)]
pub struct PostfixCodec {
    /// Characters that start an address extension; empty: no stripping.
    recipient_delimiter: String,
    lines: LineReader,
}

impl PostfixCodec {
    /// A codec for one stream. `recipient_delimiter` lists the characters
    /// that start an address extension (like Postfix's setting of that
    /// name); an empty string turns extension stripping off.
    pub fn new(recipient_delimiter: String) -> Self {
        PostfixCodec {
            recipient_delimiter,
            lines: LineReader::default(),
        }
    }
}

impl Codec for PostfixCodec {
    fn decode(&mut self, buf: &mut BytesMut) -> Decoded {
        let delimiters = self.recipient_delimiter.as_str();
        self.lines
            .decode(buf, MAX_LINE, |line| parse_request(line, delimiters))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Decoded {
        let delimiters = self.recipient_delimiter.as_str();
        self.lines
            .decode_eof(buf, MAX_LINE, |line| parse_request(line, delimiters))
    }

    fn encode(&self, reply: &Reply, out: &mut BytesMut) {
        let (code, text): (&[u8], &str) = match reply {
            Reply::Yes => (b"200 ", "OK"),
            Reply::No => (b"500 ", "no such user"),
            // Postfix defers the mail either way; a cached user is no proof
            // that the mailbox still exists.
            Reply::TryLater | Reply::KnownWhileUnreachable => {
                (b"400 ", "back end unreachable, try again later")
            }
            Reply::Invalid(reason) if reason.is_empty() => (b"500 ", "invalid request"),
            Reply::Invalid(reason) => (b"500 ", reason),
            Reply::Roster(_) => (b"500 ", "not supported"),
        };
        out.reserve(code.len() + text.len() + 1);
        out.put_slice(code);
        push_encoded(out, text, MAX_REPLY - code.len() - 1);
        out.put_u8(b'\n');
    }
}

/// Parses one request line (without `\n` and `\r`).
fn parse_request(line: &[u8], recipient_delimiter: &str) -> Request {
    if line == b"quit" {
        return Request::Quit;
    }
    let Some(key) = line.strip_prefix(b"get ") else {
        return invalid(match line.split(|&b| b == b' ').next() {
            Some(b"get") => "get: expected get KEY",
            Some(b"put") => "put: not supported",
            _ => "unknown command",
        });
    };
    if key.is_empty() {
        return invalid("get: empty key");
    }
    let Some(key) = unescape(key) else {
        return invalid("bad %XX escape in key");
    };
    let Ok(key) = std::str::from_utf8(&key) else {
        return invalid("key is not valid UTF-8");
    };
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid("key contains white space or control characters");
    }
    let Some((local, domain)) = key.rsplit_once('@') else {
        return invalid("not an address");
    };
    let user = strip_extension(local, recipient_delimiter);
    if user.is_empty() || domain.is_empty() {
        return invalid("empty local part or domain");
    }
    Request::IsUser {
        user: user.to_owned(),
        domain: domain.to_owned(),
    }
}

/// Cuts an address extension off `local`: everything from the first
/// character found in `delimiters`. Like Postfix, an address is not split if
/// that would leave nothing.
fn strip_extension<'a>(local: &'a str, delimiters: &str) -> &'a str {
    if delimiters.is_empty() {
        return local;
    }
    match local.find(|c| delimiters.contains(c)) {
        Some(0) | None => local,
        Some(cut) => &local[..cut],
    }
}

/// Decodes %XX escapes (either hex case) in a `tcp_table` key. `None` for a
/// `%` not followed by two hex digits. Other bytes are kept as they are.
pub fn decode_key(key: &[u8]) -> Option<Vec<u8>> {
    unescape(key).map(Cow::into_owned)
}

/// [`decode_key`] without a copy when there is nothing to decode.
fn unescape(key: &[u8]) -> Option<Cow<'_, [u8]>> {
    if !key.contains(&b'%') {
        return Some(Cow::Borrowed(key));
    }
    let mut out = Vec::with_capacity(key.len());
    let mut bytes = key.iter();
    while let Some(&byte) = bytes.next() {
        if byte == b'%' {
            let high = hex_value(*bytes.next()?)?;
            let low = hex_value(*bytes.next()?)?;
            out.push(high << 4 | low);
        } else {
            out.push(byte);
        }
    }
    Some(Cow::Owned(out))
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// %XX-encodes `text` for a `tcp_table` answer: `%`, space, control
/// characters and every non-ASCII byte are escaped (upper-case hex), other
/// printable ASCII is kept. [`decode_key`] reverses it.
pub fn encode_text(text: &str) -> String {
    let mut out = BytesMut::with_capacity(text.len());
    push_encoded(&mut out, text, usize::MAX);
    // Every byte written is printable ASCII.
    out.iter().map(|&b| char::from(b)).collect()
}

/// Appends the encoding of `text`, stopping before the first character
/// whose encoding would not fit in `budget` bytes (so neither an escape
/// nor a multi-byte character is ever cut in half).
fn push_encoded(out: &mut BytesMut, text: &str, budget: usize) {
    if text.len() <= budget && text.bytes().all(is_plain) {
        out.put_slice(text.as_bytes());
        return;
    }
    let mut used = 0;
    let mut utf8 = [0u8; 4];
    for c in text.chars() {
        let bytes = c.encode_utf8(&mut utf8).as_bytes();
        if let [byte] = bytes {
            if is_plain(*byte) {
                if used + 1 > budget {
                    return;
                }
                out.put_u8(*byte);
                used += 1;
                continue;
            }
        }
        if used + 3 * bytes.len() > budget {
            return;
        }
        for &byte in bytes {
            out.put_slice(&[
                b'%',
                HEX_DIGITS[usize::from(byte >> 4)],
                HEX_DIGITS[usize::from(byte & 0x0f)],
            ]);
        }
        used += 3 * bytes.len();
    }
}

/// Printable ASCII other than `%` and space goes on the wire as it is.
fn is_plain(byte: u8) -> bool {
    byte > b' ' && byte < 0x7f && byte != b'%'
}

fn invalid(reason: impl Into<String>) -> Request {
    Request::Invalid {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testing::{self, decode_bytewise, isuser, reason, requests};

    fn decode_all(codec: &mut PostfixCodec, input: &[u8]) -> Vec<Request> {
        requests(testing::decode_all(codec, input))
    }

    fn one(delimiter: &str, input: &[u8]) -> Request {
        testing::one(&mut PostfixCodec::new(delimiter.into()), input)
    }

    /// Each line, without a delimiter configured, is `isuser` of that user
    /// and domain.
    fn isusers(cases: &[(&[u8], &str, &str)]) {
        for (line, user, domain) in cases {
            assert_eq!(one("", line), isuser(user, domain), "{line:?}");
        }
    }

    #[test]
    fn get_address_is_isuser() {
        isusers(&[
            (&b"get alice@example.org\n"[..], "alice", "example.org"),
            (b"get alice@example.org\r\n", "alice", "example.org"),
            (b"get a@b@example.org\n", "a@b", "example.org"),
        ]);
    }

    #[test]
    fn keys_are_percent_decoded() {
        isusers(&[
            (&b"get alice%40example.org\n"[..], "alice", "example.org"),
            (
                b"get j%C3%BCrgen@ex%c3%a4mple.org\n",
                "jürgen",
                "exämple.org",
            ),
            (b"get %25x@d\n", "%x", "d"),
        ]);
    }

    #[test]
    fn refused_requests_keep_the_stream_going() {
        for (line, expected) in [
            (&b"get alice%4@d\n"[..], "bad %XX escape in key"),
            (b"get alice%zz@d\n", "bad %XX escape in key"),
            (b"get alice@d%\n", "bad %XX escape in key"),
            (b"get alice%FF@d\n", "key is not valid UTF-8"),
            (b"get al\xffice@d\n", "key is not valid UTF-8"),
            (b"get alice\n", "not an address"),
            (b"get @d\n", "empty local part or domain"),
            (b"get alice@\n", "empty local part or domain"),
            (
                b"get alice%20x@d\n",
                "key contains white space or control characters",
            ),
            (
                b"get alice%0A@d\n",
                "key contains white space or control characters",
            ),
            (b"get \n", "get: empty key"),
            (b"get\n", "get: expected get KEY"),
            (b"put alice@d 1\n", "put: not supported"),
            (b"hello\n", "unknown command"),
            (b"\n", "unknown command"),
        ] {
            let mut codec = PostfixCodec::new(String::new());
            let mut input = line.to_vec();
            input.extend_from_slice(b"get bob@d\n");
            let got = decode_all(&mut codec, &input);
            assert_eq!(got.len(), 2, "{line:?}");
            assert_eq!(reason(&got[0]), expected, "{line:?}");
            assert_eq!(got[1], isuser("bob", "d"));
        }
    }

    #[test]
    fn quit_closes() {
        assert_eq!(one("", b"quit\n"), Request::Quit);
        assert_eq!(one("", b"quit\r\n"), Request::Quit);
    }

    #[test]
    fn address_extension_is_stripped() {
        assert_eq!(one("+", b"get alice+lists@d\n"), isuser("alice", "d"));
        assert_eq!(one("+-", b"get alice-x+y@d\n"), isuser("alice", "d"));
        assert_eq!(one("+", b"get alice%2Blists@d\n"), isuser("alice", "d"));
        // Nothing would be left: not split, like Postfix.
        assert_eq!(one("+", b"get +lists@d\n"), isuser("+lists", "d"));
        // No delimiter configured: kept.
        assert_eq!(one("", b"get alice+lists@d\n"), isuser("alice+lists", "d"));
    }

    #[test]
    fn byte_at_a_time_and_pipelined() {
        let input = b"get a@d\nget b%40d\r\nbogus\nget c+x@d\nquit\n";
        let whole = decode_all(&mut PostfixCodec::new("+".into()), input);
        assert_eq!(whole.len(), 5);
        assert_eq!(whole[3], isuser("c", "d"));
        let got = requests(decode_bytewise(
            &mut PostfixCodec::new("+".into()),
            &mut BytesMut::new(),
            input,
        ));
        assert_eq!(got, whole);
    }

    #[test]
    fn over_long_line_is_refused_once() {
        let mut codec = PostfixCodec::new(String::new());
        let mut buf = BytesMut::new();
        buf.put_slice(b"get ");
        buf.put_slice(&vec![b'a'; MAX_LINE]);
        assert_eq!(
            codec.decode(&mut buf),
            Decoded::Request(Request::Invalid {
                reason: format!("line longer than {MAX_LINE} bytes")
            })
        );
        assert!(buf.is_empty());
        buf.put_slice(b"aaaa@d\nget b@d\n");
        assert_eq!(codec.decode(&mut buf), Decoded::Request(isuser("b", "d")));
        assert_eq!(codec.decode(&mut buf), Decoded::NeedMore);
    }

    #[test]
    fn encodes_answers() {
        let codec = PostfixCodec::new(String::new());
        let mut out = BytesMut::new();
        for (reply, expected) in [
            (Reply::Yes, &b"200 OK\n"[..]),
            (Reply::No, b"500 no%20such%20user\n"),
            (
                Reply::TryLater,
                b"400 back%20end%20unreachable,%20try%20again%20later\n",
            ),
            (
                Reply::Invalid("not an address".into()),
                b"500 not%20an%20address\n",
            ),
            (Reply::Invalid(String::new()), b"500 invalid%20request\n"),
            (Reply::Roster("{}".into()), b"500 not%20supported\n"),
        ] {
            out.clear();
            codec.encode(&reply, &mut out);
            assert_eq!(&out[..], expected, "{reply:?}");
        }
    }

    #[test]
    fn text_encoding() {
        assert_eq!(encode_text("OK"), "OK");
        assert_eq!(encode_text("a b%c\n\u{7f}é"), "a%20b%25c%0A%7F%C3%A9");
        assert_eq!(
            decode_key(encode_text("a b%c\né").as_bytes()).unwrap(),
            "a b%c\né".as_bytes()
        );
        assert_eq!(decode_key(b"%c3%A9").unwrap(), "é".as_bytes());
        assert_eq!(decode_key(b"%"), None);
        assert_eq!(decode_key(b"%4"), None);
        assert_eq!(decode_key(b"%g0"), None);
        assert_eq!(decode_key(b"plain").unwrap(), b"plain");
    }

    #[test]
    fn long_answers_are_cut_on_a_character_boundary() {
        let codec = PostfixCodec::new(String::new());
        for text in ["x".repeat(5000), "é".repeat(1000), "a".repeat(4090) + "é"] {
            let mut out = BytesMut::new();
            codec.encode(&Reply::Invalid(text.clone()), &mut out);
            assert!(out.len() <= MAX_REPLY, "{}", out.len());
            assert!(out.len() > MAX_REPLY - 6);
            assert!(out.ends_with(b"\n"));
            let body = &out[4..out.len() - 1];
            let decoded = decode_key(body).unwrap();
            let decoded = std::str::from_utf8(&decoded).unwrap();
            assert!(text.starts_with(decoded));
        }
    }
}
