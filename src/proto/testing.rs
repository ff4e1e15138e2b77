//! Helpers shared by the codecs' inline tests: decode what a buffer holds (whole or a byte at a time), build length-prefixed input, and spell the expected requests.

use bytes::{BufMut, BytesMut};

use super::{Codec, Decoded, Reply, Request};
use crate::secret::Secret;

/// Decodes from `buf` until the codec needs more bytes or ends the stream
/// ([`Decoded::End`] is the last element then). What is left stays in `buf`.
pub(crate) fn decode_buf(codec: &mut dyn Codec, buf: &mut BytesMut) -> Vec<Decoded> {
    let mut out = Vec::new();
    loop {
        match codec.decode(buf) {
            Decoded::NeedMore => return out,
            Decoded::End => {
                out.push(Decoded::End);
                return out;
            }
            request => out.push(request),
        }
    }
}

/// Everything `codec` decodes from `input` arriving in one piece.
pub(crate) fn decode_all(codec: &mut dyn Codec, input: &[u8]) -> Vec<Decoded> {
    decode_buf(codec, &mut BytesMut::from(input))
}

/// Everything `codec` decodes from `input` arriving one byte at a time
/// into `buf`, up to the end of the stream; what is left stays in `buf`.
pub(crate) fn decode_bytewise(
    codec: &mut dyn Codec,
    buf: &mut BytesMut,
    input: &[u8],
) -> Vec<Decoded> {
    let mut out = Vec::new();
    for &byte in input {
        buf.put_u8(byte);
        out.extend(decode_buf(codec, buf));
        if out.last() == Some(&Decoded::End) {
            break;
        }
    }
    out
}

/// The requests of `decoded`, for a protocol without an end marker.
pub(crate) fn requests(decoded: Vec<Decoded>) -> Vec<Request> {
    decoded
        .into_iter()
        .map(|d| match d {
            Decoded::Request(request) => request,
            other => panic!("this protocol has no end marker, got {other:?}"),
        })
        .collect()
}

/// The one request `codec` decodes from `input`.
pub(crate) fn one(codec: &mut dyn Codec, input: &[u8]) -> Request {
    match decode_all(codec, input).as_slice() {
        [Decoded::Request(request)] => request.clone(),
        other => panic!("expected one request, got {other:?}"),
    }
}

/// Fields each preceded by its length as two bytes, big-endian: an ejabberd
/// frame is one such field, a saslauthd request four or five.
pub(crate) fn length_prefixed(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields {
        let len = u16::try_from(field.len()).expect("a test field fits in 64 KiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// An auth request without a service.
pub(crate) fn auth(user: &str, domain: &str, password: &str) -> Request {
    auth_for(None, user, domain, password)
}

/// An auth request for `service`.
pub(crate) fn auth_for(service: Option<&str>, user: &str, domain: &str, password: &str) -> Request {
    Request::Auth {
        user: user.into(),
        domain: domain.into(),
        password: Secret::new(password),
        service: service.map(str::to_owned),
        client: None,
    }
}

/// An isuser request.
pub(crate) fn isuser(user: &str, domain: &str) -> Request {
    Request::IsUser {
        user: user.into(),
        domain: domain.into(),
    }
}

/// The reason of a refused request.
pub(crate) fn reason(request: &Request) -> &str {
    match request {
        Request::Invalid { reason } => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// One reply of each kind a decision gives, with `roster` as the roster.
pub(crate) fn replies(roster: &str) -> [Reply; 5] {
    [
        Reply::Yes,
        Reply::No,
        Reply::TryLater,
        Reply::Invalid("x".into()),
        Reply::Roster(roster.into()),
    ]
}

/// The wire form of `replies`, one after another.
pub(crate) fn encode_all(codec: &dyn Codec, replies: &[Reply]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for reply in replies {
        codec.encode(reply, &mut out);
    }
    out.to_vec()
}
