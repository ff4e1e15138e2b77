//! Helpers shared by the fuzz targets: the layout of a codec target's
//! input, feeding a codec in chunks, and the checks every codec must pass.
//!
//! A codec target's input is a small header followed by the stream:
//!
//! | bytes      | meaning                                                  |
//! |------------|----------------------------------------------------------|
//! | 1          | target option (saslauthd framing, Postfix delimiter, …)  |
//! | 1          | number of cuts, modulo 16                                |
//! | 2 × cuts   | cut positions, big-endian, taken modulo the stream length |
//! | the rest   | the bytes a client sends                                 |
//!
//! So a seed of two zero bytes followed by real request bytes is fed whole,
//! and the fuzzer finds the splits by mutating the header.

use arbitrary::Unstructured;
use bytes::BytesMut;
use xcauth::proto::{Codec, Decoded, Request};

/// One codec target's input, taken apart.
#[derive(Debug)]
pub struct CodecInput<'a> {
    /// The first byte; each target says what it selects.
    pub option: u8,
    /// Where the stream is cut into writes (not yet reduced).
    pub cuts: Vec<usize>,
    /// The client's bytes.
    pub stream: &'a [u8],
}

impl<'a> CodecInput<'a> {
    /// Takes `data` apart as the module documentation says; missing header
    /// bytes count as zero.
    pub fn parse(data: &'a [u8]) -> CodecInput<'a> {
        let mut u = Unstructured::new(data);
        let option: u8 = u.arbitrary().unwrap_or(0);
        let count = usize::from(u.arbitrary::<u8>().unwrap_or(0) % 16);
        let mut cuts = Vec::with_capacity(count);
        for _ in 0..count {
            let Ok(bytes) = u.bytes(2) else { break };
            cuts.push(usize::from(u16::from_be_bytes([bytes[0], bytes[1]])));
        }
        let stream = u.take_rest();
        CodecInput {
            option,
            cuts,
            stream,
        }
    }
}

/// What a codec made of a stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Fed {
    /// The requests, in order.
    pub requests: Vec<Request>,
    /// Whether the codec ended the stream (rather than waiting for more).
    pub ended: bool,
    /// Stream offsets just past each request's bytes (and 0 first).
    pub boundaries: Vec<usize>,
}

/// Cuts `input` at `cuts` (each modulo `input.len() + 1`).
pub fn split<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(0);
    points.push(input.len());
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| &input[w[0]..w[1]]).collect()
}

/// Feeds `chunks` to `codec` one write at a time, decoding after each,
/// then drains at end of input as the server does.
pub fn feed(codec: &mut dyn Codec, chunks: &[&[u8]]) -> Fed {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    // A request takes at least one byte, plus one decision per write and
    // the end of input: more than this means a codec spinning in place.
    let limit = 2 * total + chunks.len() + 4;
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut out = Fed {
        requests: Vec::new(),
        ended: false,
        boundaries: vec![0],
    };
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            assert!(out.requests.len() <= limit, "no progress");
            match codec.decode(&mut buf) {
                Decoded::NeedMore => break,
                Decoded::End => {
                    out.ended = true;
                    return out;
                }
                Decoded::Request(request) => {
                    out.requests.push(request);
                    out.boundaries.push(fed - buf.len());
                }
            }
        }
    }
    loop {
        assert!(out.requests.len() <= limit, "no progress at end of input");
        match codec.decode_eof(&mut buf) {
            Decoded::Request(request) => {
                out.requests.push(request);
                out.boundaries.push(fed - buf.len());
            }
            Decoded::End => {
                out.ended = true;
                return out;
            }
            Decoded::NeedMore => return out,
        }
    }
}

/// How a codec target checks one input.
pub struct CodecCheck<'a> {
    /// A fresh codec for one stream.
    pub codec: &'a dyn Fn() -> Box<dyn Codec>,
    /// Whether any split must decode like the whole stream. When false
    /// (saslauthd's auto framing, which looks at what has arrived), only
    /// splits between whole requests are tried.
    pub any_split: bool,
    /// The request as a client would send it, alone on a fresh stream, if
    /// the protocol can carry it.
    pub encode: &'a dyn Fn(&Request) -> Option<Vec<u8>>,
}

impl CodecCheck<'_> {
    /// Runs every check on one input; panics on a violation.
    pub fn run(&self, input: &CodecInput<'_>) {
        let whole = feed((self.codec)().as_mut(), &[input.stream]);
        for request in &whole.requests {
            assert_sane(request);
        }

        let chunks = if self.any_split {
            split(input.stream, &input.cuts)
        } else {
            let cuts: Vec<usize> = input
                .cuts
                .iter()
                .map(|c| whole.boundaries[c % whole.boundaries.len()])
                .collect();
            split(input.stream, &cuts)
        };
        let pieces = feed((self.codec)().as_mut(), &chunks);
        assert_eq!(whole.requests, pieces.requests, "split into {chunks:?}");
        assert_eq!(whole.ended, pieces.ended, "split into {chunks:?}");

        for request in &whole.requests {
            let Some(bytes) = (self.encode)(request) else {
                continue;
            };
            let again = feed((self.codec)().as_mut(), &[&bytes]);
            assert_eq!(again.requests, [request.clone()], "re-encoded as {bytes:?}");
        }
    }
}

/// No request names an empty user or domain.
pub fn assert_sane(request: &Request) {
    match request {
        Request::Auth { user, domain, .. }
        | Request::IsUser { user, domain }
        | Request::Roster { user, domain } => {
            assert!(!user.is_empty(), "empty user: {request:?}");
            assert!(!domain.is_empty(), "empty domain: {request:?}");
        }
        Request::Quit | Request::Invalid { .. } => {}
    }
}

/// The generic protocol's text of `request` (shared by ejabberd), if it
/// has one.
pub fn command_text(request: &Request) -> Option<String> {
    Some(match request {
        Request::Auth {
            user,
            domain,
            password,
            client: None,
            ..
        } => format!("auth:{user}:{domain}:{}", password.expose()),
        Request::Auth {
            user,
            domain,
            password,
            client: Some(client),
            ..
        } => {
            // IPv6 addresses go in brackets, as the codec reads them.
            let address = if client.contains(':') {
                format!("[{client}]")
            } else {
                client.clone()
            };
            format!("authclient:{address}:{user}:{domain}:{}", password.expose())
        }
        Request::IsUser { user, domain } => format!("isuser:{user}:{domain}"),
        Request::Roster { user, domain } => format!("roster:{user}:{domain}"),
        Request::Quit => "quit".to_owned(),
        Request::Invalid { .. } => return None,
    })
}

/// `text` behind a 2-byte big-endian length, as ejabberd and saslauthd
/// frame their fields; `None` if it does not fit.
pub fn length_prefixed(text: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(text.len()).ok()?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(text);
    Some(out)
}

/// The status, `Location` header and body of a classifier target's input
/// (after its first byte): a status byte below 0xC0 means 200, otherwise
/// the next two bytes give the status (big-endian); then a length byte for
/// the `Location` (0: none) and that many bytes; the body is the rest.
pub fn status_and_location(data: &[u8]) -> (u16, Option<String>, &[u8]) {
    let mut u = Unstructured::new(data);
    let selector: u8 = u.arbitrary().unwrap_or(0);
    let status = if selector < 0xC0 {
        200
    } else {
        u.bytes(2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .unwrap_or(200)
    };
    let len = usize::from(u.arbitrary::<u8>().unwrap_or(0));
    let location = match len {
        0 => None,
        _ => {
            let bytes = u.bytes(len.min(u.len())).unwrap_or_default();
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
    };
    (status, location, u.take_rest())
}
