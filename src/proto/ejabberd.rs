//! ejabberd's extauth protocol: 2-byte big-endian length + `auth:U:D:P` text in, `00 02 00 01`/`00 02 00 00` out.
//!
//! The frame text is the generic protocol's (see [`super::generic`]):
//! `auth:USER:DOMAIN:PASSWORD`, `isuser:USER:DOMAIN`, and the commands we
//! refuse (`setpass`, `tryregister`, `removeuser`, …). A length of 0 is a
//! logical end of input; a frame cut short by the end of input ends the
//! stream (the default [`Codec::decode_eof`]). `roster` is refused here:
//! its answer is JSON, which this protocol cannot carry.

use bytes::{Buf, BufMut, BytesMut};

use super::generic::parse_command;
use super::{Codec, Decoded, Reply, Request};

/// The longest frame body: its length is a 16-bit number, so no other limit
/// is needed.
pub const MAX_FRAME: usize = u16::MAX as usize;

/// Bytes of the length prefix (of requests and answers).
const HEADER: usize = 2;

const SUCCESS: [u8; 4] = [0, 2, 0, 1];
const FAILURE: [u8; 4] = [0, 2, 0, 0];

/// Decoder and encoder for one ejabberd extauth stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct EjabberdCodec;

impl Codec for EjabberdCodec {
    fn decode(&mut self, buf: &mut BytesMut) -> Decoded {
        let Some(&[high, low]) = buf.get(..HEADER) else {
            return Decoded::NeedMore;
        };
        let len = usize::from(u16::from_be_bytes([high, low]));
        if len == 0 {
            buf.advance(HEADER);
            return Decoded::End;
        }
        let end = HEADER + len;
        let Some(body) = buf.get(HEADER..end) else {
            // The size is known: make room for the rest of the frame at once.
            buf.reserve(end - buf.len());
            return Decoded::NeedMore;
        };
        let request = match parse_command(body) {
            Request::Roster { .. } => Request::Invalid {
                reason: "roster: only answered on the generic protocol".into(),
            },
            other => other,
        };
        buf.advance(end);
        Decoded::Request(request)
    }

    fn encode(&self, reply: &Reply, out: &mut BytesMut) {
        out.put_slice(match reply {
            Reply::Yes | Reply::KnownWhileUnreachable => &SUCCESS,
            Reply::No | Reply::TryLater | Reply::Invalid(_) | Reply::Roster(_) => &FAILURE,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testing::{
        self, auth, decode_bytewise, encode_all, length_prefixed, replies,
    };

    fn frame(text: &[u8]) -> Vec<u8> {
        length_prefixed(&[text])
    }

    fn decode_all(input: &[u8]) -> Vec<Decoded> {
        testing::decode_all(&mut EjabberdCodec, input)
    }

    #[test]
    fn decodes_auth_with_colons_in_the_password() {
        assert_eq!(
            decode_all(&frame(b"auth:alice:example.org:a:b\nc")),
            [Decoded::Request(auth("alice", "example.org", "a:b\nc"))]
        );
    }

    #[test]
    fn partial_frames_need_more_and_bytes_one_by_one_give_the_same() {
        let mut input = frame(b"isuser:a:d");
        input.extend(frame(b"auth:b:d:pw"));
        input.extend(frame(b"setpass:b:d:pw"));
        input.extend([0, 0]);
        input.extend(frame(b"isuser:after:end"));
        let whole = decode_all(&input);
        assert_eq!(whole.len(), 4);
        assert!(
            matches!(&whole[2], Decoded::Request(Request::Invalid { reason }) if reason == "setpass: not supported")
        );
        assert_eq!(whole[3], Decoded::End);

        let got = decode_bytewise(&mut EjabberdCodec, &mut BytesMut::new(), &input);
        assert_eq!(got, whole);
    }

    #[test]
    fn quit_bad_utf8_and_roster() {
        assert_eq!(
            decode_all(&frame(b"quit")),
            [Decoded::Request(Request::Quit)]
        );
        assert!(matches!(
            &decode_all(&frame(b"auth:a:d:\xff"))[..],
            [Decoded::Request(Request::Invalid { reason })] if reason == "auth: not valid UTF-8"
        ));
        assert!(matches!(
            &decode_all(&frame(b"roster:a:d"))[..],
            [Decoded::Request(Request::Invalid { .. })]
        ));
    }

    #[test]
    fn eof_inside_a_frame_ends_the_stream() {
        let mut codec = EjabberdCodec;
        let mut buf = BytesMut::from(&frame(b"isuser:a:d")[..5]);
        assert_eq!(codec.decode(&mut buf), Decoded::NeedMore);
        assert_eq!(codec.decode_eof(&mut buf), Decoded::End);
    }

    #[test]
    fn largest_frame_is_decoded() {
        let mut text = b"auth:a:d:".to_vec();
        text.resize(MAX_FRAME, b'p');
        match &decode_all(&frame(&text))[..] {
            [Decoded::Request(Request::Auth { password, .. })] => {
                assert_eq!(password.expose().len(), MAX_FRAME - 9)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encodes_four_byte_answers() {
        assert_eq!(
            encode_all(&EjabberdCodec, &replies("{}")),
            [0, 2, 0, 1, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0]
        );
    }
}
