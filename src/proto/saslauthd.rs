//! The Cyrus saslauthd "mux" protocol: length-prefixed LOGIN, PASSWORD, SERVICE, REALM (and perhaps CLIENT_ADDR) in, `OK`/`NO` out.
//!
//! Every field is a 2-byte big-endian length followed by that many bytes.
//! A request always means `auth`: user = LOGIN, domain = REALM; SERVICE is
//! not used. When REALM is empty and LOGIN contains `@`, LOGIN is split at
//! its last `@` (mail clients log in as `alice@example.org`). Like
//! saslauthd itself, the answer is `NO` for an empty login or password and
//! for any field longer than [`MAX_FIELD`] bytes; also for text that is not
//! UTF-8 and for a login with no domain at all. The answer is a 2-byte
//! big-endian length, then `OK success` or `NO xcauth authentication
//! failure` (the texts of the original xcauth).
//!
//! # Four or five fields
//!
//! Cyrus SASL 2.1.28 (Debian's) sends four fields; newer Cyrus sends a
//! fifth, CLIENT_ADDR, the peer's address as Cyrus formats it: an IPv4 or
//! IPv6 address (IPv6 perhaps with a `%zone`), optionally followed by
//! `;PORT`, e.g. `192.0.2.7;51234` or `2001:db8::7;51234`. The protocol
//! itself does not say how many fields come, so with
//! [`SaslauthdFields::Auto`] (the default) the codec looks at what follows
//! the fourth field:
//!
//! 1. Nothing yet: a four-field request. Clients write a whole request with
//!    one `writev`, so a five-field request has its fifth field already in
//!    the buffer.
//! 2. A complete field that is empty or looks like a client address (as
//!    above): the fifth field; it is consumed with the request.
//! 3. A field that cannot be an address (longer than 64 bytes) or a complete
//!    field that does not look like one: the start of the next request from
//!    a client that sends several four-field requests in a row.
//! 4. An incomplete field of up to 64 bytes: wait for more bytes (unless
//!    the peer has closed its side; then the four fields are the request).
//!
//! The rule can misjudge only odd traffic: a pipelining four-field client
//! whose next LOGIN is empty or an IP address, or a five-field client whose
//! fifth field arrives in a later write than the other four. If your
//! clients are known, [`SaslauthdFields::Four`] or [`SaslauthdFields::Five`]
//! fixes the count.
//!
//! A field longer than [`MAX_FIELD`] still has a known length, so its bytes
//! are skipped as they arrive (never buffered) to keep the framing, and the
//! whole request is answered `NO` once it has been read.

use std::net::{IpAddr, Ipv6Addr};

use bytes::{Buf, BufMut, BytesMut};

use super::{Codec, Decoded, Reply, Request, SaslauthdFields};
use crate::secret::Secret;

/// The longest field saslauthd accepts; a request with a longer one is
/// answered `NO`.
pub const MAX_FIELD: usize = 256;

/// The longest CLIENT_ADDR recognised by [`SaslauthdFields::Auto`]: an IPv6
/// address with zone and `;port` stays well below it.
const MAX_CLIENT_ADDR: usize = 64;

/// Bytes of each length prefix.
const HEADER: usize = 2;

/// LOGIN, PASSWORD, SERVICE, REALM.
const BASE_FIELDS: usize = 4;

const SUCCESS: &[u8] = b"OK success";
const FAILURE: &[u8] = b"NO xcauth authentication failure";

/// Decoder and encoder for one saslauthd stream.
#[derive(Debug)]
pub struct SaslauthdCodec {
    fields: SaslauthdFields,
    /// Set while skipping the rest of a request that had an over-long field.
    dropping: Option<Dropping>,
    /// The peer has closed its side: no fifth field can follow any more.
    eof: bool,
}

/// Progress through a request that will be answered `NO` whatever follows.
#[derive(Debug, Clone, Copy)]
struct Dropping {
    /// Index of the next field whose header is to be read.
    next_field: usize,
    /// Bytes of the current field still to be skipped.
    skip: usize,
}

/// One field at some offset of the buffer.
enum Field {
    Incomplete,
    /// Longer than [`MAX_FIELD`]; the number is its length.
    TooLong(usize),
    /// Complete; the number is the offset just past it.
    Complete(usize),
}

/// What follows the fourth field.
enum Fifth {
    NeedMore,
    /// No fifth field: the request ends after REALM.
    Absent,
    /// A fifth field of this many bytes, header included.
    Present(usize),
    /// A fifth field longer than [`MAX_FIELD`] (only with a fixed count).
    TooLong(usize),
}

impl SaslauthdCodec {
    /// A codec for one stream, framing requests as `fields` says.
    pub fn new(fields: SaslauthdFields) -> Self {
        SaslauthdCodec {
            fields,
            dropping: None,
            eof: false,
        }
    }

    /// Fields whose headers are read unconditionally.
    fn fixed_fields(&self) -> usize {
        match self.fields {
            SaslauthdFields::Five => BASE_FIELDS + 1,
            SaslauthdFields::Auto | SaslauthdFields::Four => BASE_FIELDS,
        }
    }

    fn fifth(&self, rest: &[u8]) -> Fifth {
        match self.fields {
            SaslauthdFields::Four => Fifth::Absent,
            SaslauthdFields::Five => match field_at(rest, 0) {
                Field::Incomplete => Fifth::NeedMore,
                Field::TooLong(len) => Fifth::TooLong(len),
                Field::Complete(end) => Fifth::Present(end),
            },
            SaslauthdFields::Auto => {
                if rest.is_empty() {
                    return Fifth::Absent;
                }
                // At end of input an incomplete field cannot become a
                // CLIENT_ADDR: answer the four fields we have.
                let wait = if self.eof {
                    Fifth::Absent
                } else {
                    Fifth::NeedMore
                };
                let Some(len) = length_at(rest, 0) else {
                    return wait;
                };
                if len > MAX_CLIENT_ADDR {
                    return Fifth::Absent;
                }
                match rest.get(HEADER..HEADER + len) {
                    None => wait,
                    Some(text) if text.is_empty() || looks_like_client_addr(text) => {
                        Fifth::Present(HEADER + len)
                    }
                    Some(_) => Fifth::Absent,
                }
            }
        }
    }

    /// Starts skipping a request at the header of an over-long field:
    /// `header_at` is its offset, `index` its position in the request.
    fn start_dropping(
        &mut self,
        buf: &mut BytesMut,
        header_at: usize,
        index: usize,
        len: usize,
    ) -> Decoded {
        buf.advance(header_at + HEADER);
        self.dropping = Some(Dropping {
            next_field: index + 1,
            skip: len,
        });
        self.continue_dropping(buf)
    }

    fn continue_dropping(&mut self, buf: &mut BytesMut) -> Decoded {
        let Some(mut state) = self.dropping else {
            return Decoded::NeedMore;
        };
        let decoded = loop {
            if state.skip > 0 {
                let n = state.skip.min(buf.len());
                buf.advance(n);
                state.skip -= n;
                if state.skip > 0 {
                    break Decoded::NeedMore;
                }
            }
            if state.next_field < self.fixed_fields() {
                let Some(len) = length_at(buf, 0) else {
                    break Decoded::NeedMore;
                };
                buf.advance(HEADER);
                state.skip = len;
                state.next_field += 1;
                continue;
            }
            if state.next_field == BASE_FIELDS {
                match self.fifth(buf) {
                    Fifth::NeedMore => break Decoded::NeedMore,
                    Fifth::Absent => {}
                    Fifth::Present(n) => buf.advance(n),
                    Fifth::TooLong(len) => {
                        buf.advance(HEADER);
                        state.skip = len;
                        state.next_field += 1;
                        continue;
                    }
                }
            }
            self.dropping = None;
            return Decoded::Request(invalid(format!("a field is longer than {MAX_FIELD} bytes")));
        };
        self.dropping = Some(state);
        decoded
    }
}

impl Codec for SaslauthdCodec {
    fn decode(&mut self, buf: &mut BytesMut) -> Decoded {
        if self.dropping.is_some() {
            return self.continue_dropping(buf);
        }
        // Fast path: nothing is consumed until the whole request, at most
        // 5 × 258 bytes, is in the buffer; then it is parsed in place.
        let mut ends = [0usize; BASE_FIELDS];
        let mut offset = 0;
        for (index, end) in ends.iter_mut().enumerate() {
            match field_at(buf, offset) {
                Field::Incomplete => return Decoded::NeedMore,
                Field::TooLong(len) => return self.start_dropping(buf, offset, index, len),
                Field::Complete(field_end) => {
                    *end = field_end;
                    offset = field_end;
                }
            }
        }
        let (total, client) = match self.fifth(&buf[offset..]) {
            Fifth::NeedMore => return Decoded::NeedMore,
            Fifth::Absent => (offset, &[][..]),
            Fifth::Present(n) => (offset + n, &buf[offset + HEADER..offset + n]),
            Fifth::TooLong(len) => return self.start_dropping(buf, offset, BASE_FIELDS, len),
        };
        let field = |index: usize| {
            let start = if index == 0 {
                HEADER
            } else {
                ends[index - 1] + HEADER
            };
            &buf[start..ends[index]]
        };
        let request = build_request(field(0), field(1), field(2), field(3), client);
        buf.advance(total);
        Decoded::Request(request)
    }

    /// A complete request still in the buffer (in Auto mode, four fields
    /// followed by the start of something) is answered; a partial one is
    /// dropped and the stream ends.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> Decoded {
        self.eof = true;
        match self.decode(buf) {
            Decoded::Request(request) => Decoded::Request(request),
            Decoded::NeedMore | Decoded::End => {
                buf.clear();
                self.dropping = None;
                Decoded::End
            }
        }
    }

    fn encode(&self, reply: &Reply, out: &mut BytesMut) {
        let text = match reply {
            Reply::Yes => SUCCESS,
            // Only `isuser` can be "known while unreachable"; saslauthd only
            // asks `auth`, so it is never a success here.
            Reply::No
            | Reply::TryLater
            | Reply::KnownWhileUnreachable
            | Reply::Invalid(_)
            | Reply::Roster(_) => FAILURE,
        };
        out.reserve(HEADER + text.len());
        // Both texts are short constants, far below 65535 bytes.
        out.put_u16(text.len() as u16);
        out.put_slice(text);
    }
}

/// The length in the header at `offset`, if both bytes are there.
fn length_at(buf: &[u8], offset: usize) -> Option<usize> {
    match buf.get(offset..offset + HEADER) {
        Some(&[high, low]) => Some(usize::from(u16::from_be_bytes([high, low]))),
        _ => None,
    }
}

fn field_at(buf: &[u8], offset: usize) -> Field {
    let Some(len) = length_at(buf, offset) else {
        return Field::Incomplete;
    };
    let end = offset + HEADER + len;
    if len > MAX_FIELD {
        Field::TooLong(len)
    } else if buf.len() < end {
        Field::Incomplete
    } else {
        Field::Complete(end)
    }
}

/// Cyrus formats CLIENT_ADDR as `ADDRESS` or `ADDRESS;PORT` (numeric host
/// and service from `getnameinfo`).
fn looks_like_client_addr(text: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(text) else {
        return false;
    };
    let host = match text.rsplit_once(';') {
        Some((host, port)) => {
            if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            host
        }
        None => text,
    };
    match host.split_once('%') {
        Some((address, zone)) => !zone.is_empty() && address.parse::<Ipv6Addr>().is_ok(),
        None => host.parse::<IpAddr>().is_ok(),
    }
}

fn build_request(
    login: &[u8],
    password: &[u8],
    service: &[u8],
    realm: &[u8],
    client: &[u8],
) -> Request {
    if login.is_empty() {
        return invalid("empty login");
    }
    if password.is_empty() {
        return invalid("empty password");
    }
    let (Ok(login), Ok(password), Ok(service), Ok(realm)) = (
        std::str::from_utf8(login),
        std::str::from_utf8(password),
        std::str::from_utf8(service),
        std::str::from_utf8(realm),
    ) else {
        return invalid("a field is not valid UTF-8");
    };
    let (user, domain) = if realm.is_empty() {
        match login.rsplit_once('@') {
            Some(split) => split,
            None => return invalid("no realm and no @domain in the login"),
        }
    } else {
        (login, realm)
    };
    if let Some(problem) = super::name_problem(user, domain, true) {
        return invalid(problem);
    }
    Request::Auth {
        user: user.to_owned(),
        domain: domain.to_owned(),
        password: Secret::new(password),
        service: (!service.is_empty()).then(|| service.to_owned()),
        // Only an address is kept (with a fixed count of five the field may
        // hold anything).
        client: looks_like_client_addr(client)
            .then(|| String::from_utf8_lossy(client).into_owned()),
    }
}

fn invalid(reason: impl Into<String>) -> Request {
    Request::Invalid {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testing::{self, decode_buf, length_prefixed as request, reason, requests};

    fn decode_all(fields: SaslauthdFields, input: &[u8]) -> (Vec<Request>, BytesMut) {
        let mut buf = BytesMut::from(input);
        let decoded = decode_buf(&mut SaslauthdCodec::new(fields), &mut buf);
        (requests(decoded), buf)
    }

    fn byte_at_a_time(fields: SaslauthdFields, input: &[u8]) -> Vec<Request> {
        let mut codec = SaslauthdCodec::new(fields);
        requests(testing::decode_bytewise(
            &mut codec,
            &mut BytesMut::new(),
            input,
        ))
    }

    /// An auth request for the `smtp` service, which most tests use.
    fn auth(user: &str, domain: &str, password: &str) -> Request {
        auth_for("smtp", user, domain, password)
    }

    fn auth_for(service: &str, user: &str, domain: &str, password: &str) -> Request {
        testing::auth_for(Some(service), user, domain, password)
    }

    #[test]
    fn four_field_request() {
        let input = request(&[b"alice", b"s3cret", b"smtp", b"example.org"]);
        for mode in [SaslauthdFields::Auto, SaslauthdFields::Four] {
            let (got, rest) = decode_all(mode, &input);
            assert_eq!(got, [auth("alice", "example.org", "s3cret")]);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn five_field_request() {
        for addr in [
            &b"192.0.2.7;51234"[..],
            b"2001:db8::7;993",
            b"fe80::1%eth0;25",
            b"::1",
            b"",
        ] {
            let input = request(&[b"alice", b"pw", b"imap", b"example.org", addr]);
            let plain = auth_for("imap", "alice", "example.org", "pw");
            let expected = match std::str::from_utf8(addr).unwrap() {
                "" => plain,
                text => plain.with_client(text),
            };
            for mode in [SaslauthdFields::Auto, SaslauthdFields::Five] {
                let (got, rest) = decode_all(mode, &input);
                assert_eq!(got, std::slice::from_ref(&expected), "{addr:?} {mode:?}");
                assert!(rest.is_empty(), "{addr:?} {mode:?}");
            }
            // Byte by byte only a fixed count can work: in Auto mode the four
            // fields alone look like a whole request (see the module doc).
            assert_eq!(byte_at_a_time(SaslauthdFields::Five, &input), [expected]);
        }
    }

    #[test]
    fn five_field_mode_takes_any_fifth_field() {
        let input = request(&[b"alice", b"pw", b"imap", b"example.org", b"not-an-address"]);
        let (got, rest) = decode_all(SaslauthdFields::Five, &input);
        assert_eq!(got, [auth_for("imap", "alice", "example.org", "pw")]);
        assert!(rest.is_empty());
    }

    #[test]
    fn pipelined_four_field_requests() {
        let mut input = request(&[b"alice", b"pw1", b"smtp", b"example.org"]);
        input.extend(request(&[b"bob", b"pw2", b"smtp", b"example.net"]));
        input.extend(request(&[b"carol@example.com", b"pw3", b"smtp", b""]));
        let expected = [
            auth("alice", "example.org", "pw1"),
            auth("bob", "example.net", "pw2"),
            auth("carol", "example.com", "pw3"),
        ];
        for mode in [SaslauthdFields::Auto, SaslauthdFields::Four] {
            let (got, rest) = decode_all(mode, &input);
            assert_eq!(got, expected);
            assert!(rest.is_empty());
            assert_eq!(byte_at_a_time(mode, &input), expected);
        }
    }

    #[test]
    fn pipelined_five_field_requests() {
        let mut input = request(&[b"alice", b"pw1", b"smtp", b"example.org", b"192.0.2.1;1"]);
        input.extend(request(&[
            b"bob",
            b"pw2",
            b"smtp",
            b"example.net",
            b"192.0.2.2;2",
        ]));
        let expected = [
            auth("alice", "example.org", "pw1").with_client("192.0.2.1;1"),
            auth("bob", "example.net", "pw2").with_client("192.0.2.2;2"),
        ];
        for mode in [SaslauthdFields::Auto, SaslauthdFields::Five] {
            assert_eq!(decode_all(mode, &input).0, expected);
        }
        assert_eq!(byte_at_a_time(SaslauthdFields::Five, &input), expected);
    }

    #[test]
    fn auto_waits_for_an_incomplete_field_after_the_fourth() {
        let mut input = request(&[b"alice", b"pw", b"imap", b"example.org", b"192.0.2.7;1"]);
        input.truncate(input.len() - 3);
        let (got, rest) = decode_all(SaslauthdFields::Auto, &input);
        assert!(got.is_empty());
        assert_eq!(rest.len(), input.len());
        // A single byte of a following header is not enough to decide either.
        let mut input = request(&[b"alice", b"pw", b"imap", b"example.org"]);
        input.push(0);
        assert!(decode_all(SaslauthdFields::Auto, &input).0.is_empty());
    }

    #[test]
    fn auto_does_not_wait_for_a_field_too_long_to_be_an_address() {
        let mut input = request(&[b"alice", b"pw", b"imap", b"example.org"]);
        input.extend_from_slice(&[0, 100]);
        input.extend_from_slice(b"partial login");
        let (got, rest) = decode_all(SaslauthdFields::Auto, &input);
        assert_eq!(got, [auth_for("imap", "alice", "example.org", "pw")]);
        assert_eq!(rest.len(), 2 + 13);
    }

    #[test]
    fn empty_realm_splits_login_at_the_last_at() {
        let input = request(&[b"alice@example.org", b"pw", b"smtp", b""]);
        assert_eq!(
            decode_all(SaslauthdFields::Auto, &input).0,
            [auth("alice", "example.org", "pw")]
        );
        let input = request(&[b"a@b@c", b"pw", b"smtp", b""]);
        assert_eq!(
            decode_all(SaslauthdFields::Auto, &input).0,
            [auth("a@b", "c", "pw")]
        );
        // With a realm, LOGIN is the user as it is.
        let input = request(&[b"a@b", b"pw", b"smtp", b"c"]);
        assert_eq!(
            decode_all(SaslauthdFields::Auto, &input).0,
            [auth("a@b", "c", "pw")]
        );
    }

    #[test]
    fn refused_requests() {
        for (fields, expected) in [
            (&[&b""[..], b"pw", b"smtp", b"d"], "empty login"),
            (&[&b"alice"[..], b"", b"smtp", b"d"], "empty password"),
            (
                &[&b"alice"[..], b"pw", b"smtp", b""],
                "no realm and no @domain in the login",
            ),
            (
                &[&b"alice@"[..], b"pw", b"smtp", b""],
                "empty user or domain",
            ),
            (&[&b"@d"[..], b"pw", b"smtp", b""], "empty user or domain"),
            (
                &[&b"a\nb"[..], b"pw", b"smtp", b"d"],
                "control characters in user or domain",
            ),
            (&[&b"a"[..], b"pw", b"smtp", b"b@c"], "@ in user or domain"),
            (
                &[&b"alice"[..], b"pw\xff", b"smtp", b"d"],
                "a field is not valid UTF-8",
            ),
            (
                &[&b"alice"[..], b"pw", b"smtp", b"d\xc3"],
                "a field is not valid UTF-8",
            ),
        ] {
            let (got, rest) = decode_all(SaslauthdFields::Four, &request(fields));
            assert_eq!(got.len(), 1);
            assert_eq!(reason(&got[0]), expected);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn over_long_field_is_skipped_and_refused_once() {
        let long = vec![b'x'; MAX_FIELD + 1];
        let max = vec![b'y'; MAX_FIELD];
        for (mode, fields) in [
            (
                SaslauthdFields::Auto,
                vec![&b"alice"[..], &long, b"smtp", b"d"],
            ),
            (SaslauthdFields::Auto, vec![&long[..], b"pw", &long, b"d"]),
            (
                SaslauthdFields::Auto,
                vec![&b"alice"[..], b"pw", b"smtp", &long],
            ),
            (
                SaslauthdFields::Auto,
                vec![&b"alice"[..], b"pw", b"smtp", &long, b"192.0.2.1;1"],
            ),
            (
                SaslauthdFields::Four,
                vec![&b"alice"[..], b"pw", &long, b"d"],
            ),
            (
                SaslauthdFields::Five,
                vec![&b"alice"[..], b"pw", &long, b"d", b""],
            ),
            (
                SaslauthdFields::Five,
                vec![&b"alice"[..], b"pw", b"smtp", b"d", &long],
            ),
        ] {
            let mut input = request(&fields);
            let mut next: Vec<&[u8]> = vec![b"bob", &max, b"smtp", b"d"];
            if mode == SaslauthdFields::Five {
                next.push(b"");
            }
            input.extend(request(&next));
            let expected_next = auth("bob", "d", std::str::from_utf8(&max).unwrap());
            let mut runs = vec![decode_all(mode, &input).0];
            if mode != SaslauthdFields::Auto || fields.len() == BASE_FIELDS {
                runs.push(byte_at_a_time(mode, &input));
            }
            for got in runs {
                assert_eq!(got.len(), 2, "{mode:?}");
                assert_eq!(reason(&got[0]), "a field is longer than 256 bytes");
                assert_eq!(got[1], expected_next);
            }
        }
    }

    #[test]
    fn over_long_field_is_not_buffered() {
        let mut codec = SaslauthdCodec::new(SaslauthdFields::Auto);
        let mut buf = BytesMut::new();
        buf.put_slice(&request(&[b"alice"])[..]);
        buf.put_slice(&[0xff, 0xff]);
        buf.put_slice(&[b'p'; 1000]);
        assert_eq!(codec.decode(&mut buf), Decoded::NeedMore);
        assert!(buf.is_empty());
        buf.put_slice(&vec![b'p'; 0xffff - 1000]);
        assert_eq!(codec.decode(&mut buf), Decoded::NeedMore);
        assert!(buf.is_empty());
        buf.put_slice(&request(&[b"smtp", b"d"]));
        assert!(matches!(
            codec.decode(&mut buf),
            Decoded::Request(Request::Invalid { .. })
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_request_needs_more_and_eof_ends() {
        let input = request(&[b"alice", b"pw", b"smtp", b"example.org"]);
        let mut codec = SaslauthdCodec::new(SaslauthdFields::Auto);
        let mut buf = BytesMut::from(&input[..input.len() - 1]);
        assert_eq!(codec.decode(&mut buf), Decoded::NeedMore);
        assert_eq!(buf.len(), input.len() - 1);
        assert_eq!(codec.decode_eof(&mut buf), Decoded::End);
    }

    #[test]
    fn eof_decides_for_four_fields_when_the_rest_is_incomplete() {
        let mut input = request(&[b"alice", b"pw", b"imap", b"example.org"]);
        input.extend_from_slice(&[0, 11, b'1']);
        let mut codec = SaslauthdCodec::new(SaslauthdFields::Auto);
        let mut buf = BytesMut::from(&input[..]);
        assert_eq!(codec.decode(&mut buf), Decoded::NeedMore);
        assert_eq!(
            codec.decode_eof(&mut buf),
            Decoded::Request(auth_for("imap", "alice", "example.org", "pw"))
        );
        assert_eq!(codec.decode_eof(&mut buf), Decoded::End);
        assert!(buf.is_empty());

        // A fixed count of five waits for the fifth field; at EOF the partial
        // request is dropped.
        let mut codec = SaslauthdCodec::new(SaslauthdFields::Five);
        let mut buf = BytesMut::from(&input[..]);
        assert_eq!(codec.decode(&mut buf), Decoded::NeedMore);
        assert_eq!(codec.decode_eof(&mut buf), Decoded::End);

        // The same after an over-long field.
        let long = vec![b'x'; MAX_FIELD + 1];
        let mut input = request(&[b"alice", &long, b"imap", b"example.org"]);
        input.push(0);
        let mut codec = SaslauthdCodec::new(SaslauthdFields::Auto);
        let mut buf = BytesMut::from(&input[..]);
        assert_eq!(codec.decode(&mut buf), Decoded::NeedMore);
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Decoded::Request(Request::Invalid { .. })
        ));
        assert_eq!(codec.decode_eof(&mut buf), Decoded::End);
    }

    #[test]
    fn client_addresses() {
        for yes in [
            "192.0.2.7",
            "192.0.2.7;25",
            "::1;0",
            "2001:db8::1",
            "fe80::1%eth0;993",
            "::ffff:192.0.2.1;1",
        ] {
            assert!(looks_like_client_addr(yes.as_bytes()), "{yes}");
        }
        for no in [
            "alice",
            "192.0.2.7;",
            "192.0.2.7;123456",
            "192.0.2.7;x",
            "192.0.2.7%eth0",
            "fe80::1%",
            "1.2.3",
            "example.org;25",
        ] {
            assert!(!looks_like_client_addr(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn encodes_answers() {
        let codec = SaslauthdCodec::new(SaslauthdFields::Auto);
        let mut out = BytesMut::new();
        codec.encode(&Reply::Yes, &mut out);
        assert_eq!(&out[..], b"\x00\x0aOK success");
        for reply in [
            Reply::No,
            Reply::TryLater,
            Reply::Invalid("x".into()),
            Reply::Roster("{}".into()),
        ] {
            out.clear();
            codec.encode(&reply, &mut out);
            assert_eq!(&out[..], b"\x00\x20NO xcauth authentication failure");
        }
    }
}
