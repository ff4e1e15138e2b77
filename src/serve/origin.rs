//! Who a request comes from, for the guard's per-address count. A client
//! address that a request carries (Prosody's `authclient:`, saslauthd's
//! CLIENT_ADDR) is believed only on a trusted socket: standard input, or a
//! socket listed in `trusted-socket`. Anywhere else anyone who can connect
//! could name any address and have the guard (and fail2ban after it) shut
//! that address out; there the socket's peer counts instead.

use std::net::IpAddr;

use bytes::BytesMut;
use tracing::debug;

use crate::proto::{Codec, Decoded, Reply, Request};

/// Where the requests of one stream come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Believe the client address a request carries.
    trusted: bool,
    /// The peer's address, when it identifies a client.
    peer: Option<IpAddr>,
}

impl Origin {
    /// Standard input: the server that spawned us is believed.
    pub const STDIO: Origin = Origin {
        trusted: true,
        peer: None,
    };

    /// A socket connection from `peer` (`None` for a Unix peer), trusted or
    /// not. A loopback peer counts as no address: it is a server on this
    /// host relaying many users, and counting its failures would let a few
    /// guessers lock all of them out.
    pub fn new(trusted: bool, peer: Option<IpAddr>) -> Origin {
        let peer = peer
            .map(|ip| ip.to_canonical())
            .filter(|ip| !ip.is_loopback());
        Origin { trusted, peer }
    }

    /// `request` with the client address the guard is to count: on a
    /// trusted stream the one the request carries (or else the peer's), on
    /// any other the peer's (or none).
    pub fn attribute(&self, request: Request) -> Request {
        let Request::Auth {
            user,
            domain,
            password,
            service,
            client,
        } = request
        else {
            return request;
        };
        let client = match client {
            Some(sent) if self.trusted => Some(sent),
            sent => {
                if let Some(sent) = sent {
                    // Quoted and escaped: the client chose it.
                    debug!(
                        "client address {sent:?} ignored: not a trusted socket (counted: {})",
                        self.peer
                            .map_or_else(|| "none".to_owned(), |p| p.to_string())
                    );
                }
                self.peer.map(|p| p.to_string())
            }
        };
        Request::Auth {
            user,
            domain,
            password,
            service,
            client,
        }
    }

    /// `codec`, its requests attributed to this origin.
    pub fn wrap(self, codec: Box<dyn Codec>) -> Box<dyn Codec> {
        if self == Origin::STDIO {
            return codec;
        }
        Box::new(Attributed {
            inner: codec,
            origin: self,
        })
    }
}

/// A codec whose decoded requests pass [`Origin::attribute`].
struct Attributed {
    inner: Box<dyn Codec>,
    origin: Origin,
}

impl Attributed {
    fn attribute(&self, decoded: Decoded) -> Decoded {
        match decoded {
            Decoded::Request(request) => Decoded::Request(self.origin.attribute(request)),
            other => other,
        }
    }
}

impl Codec for Attributed {
    fn decode(&mut self, buf: &mut BytesMut) -> Decoded {
        let decoded = self.inner.decode(buf);
        self.attribute(decoded)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Decoded {
        let decoded = self.inner.decode_eof(buf);
        self.attribute(decoded)
    }

    fn encode(&self, reply: &Reply, out: &mut BytesMut) {
        self.inner.encode(reply, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{CodecOptions, Protocol};
    use crate::secret::Secret;

    fn auth(client: Option<&str>) -> Request {
        Request::Auth {
            user: "alice".into(),
            domain: "example.org".into(),
            password: Secret::new("pw"),
            service: None,
            client: client.map(str::to_owned),
        }
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("IP"))
    }

    #[test]
    fn a_trusted_stream_keeps_the_address_its_client_sends() {
        let sent = auth(Some("203.0.113.9"));
        assert_eq!(Origin::STDIO.attribute(sent.clone()), sent);
        let socket = Origin::new(true, None);
        assert_eq!(socket.attribute(sent.clone()), sent);
        // Without one, the peer counts.
        let peer = Origin::new(true, ip("198.51.100.7"));
        assert_eq!(peer.attribute(auth(None)), auth(Some("198.51.100.7")));
        assert_eq!(peer.attribute(sent.clone()), sent);
    }

    #[test]
    fn an_untrusted_stream_counts_its_peer_instead() {
        let spoofed = auth(Some("203.0.113.9"));
        let remote = Origin::new(false, ip("198.51.100.7"));
        assert_eq!(
            remote.attribute(spoofed.clone()),
            auth(Some("198.51.100.7"))
        );
        assert_eq!(remote.attribute(auth(None)), auth(Some("198.51.100.7")));
        // A Unix peer is no address.
        assert_eq!(Origin::new(false, None).attribute(spoofed), auth(None));
    }

    #[test]
    fn loopback_peers_are_no_address() {
        for local in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            let origin = Origin::new(false, ip(local));
            assert_eq!(
                origin.attribute(auth(Some("203.0.113.9"))),
                auth(None),
                "{local}"
            );
            assert_eq!(
                Origin::new(true, ip(local)).attribute(auth(None)),
                auth(None)
            );
        }
        // An IPv4-mapped remote peer counts as its IPv4 address.
        let mapped = Origin::new(false, ip("::ffff:198.51.100.7"));
        assert_eq!(mapped.attribute(auth(None)), auth(Some("198.51.100.7")));
    }

    #[test]
    fn other_requests_pass_unchanged() {
        let origin = Origin::new(false, ip("198.51.100.7"));
        let isuser = Request::IsUser {
            user: "alice".into(),
            domain: "example.org".into(),
        };
        assert_eq!(origin.attribute(isuser.clone()), isuser);
        assert_eq!(origin.attribute(Request::Quit), Request::Quit);
    }

    #[test]
    fn a_wrapped_codec_attributes_what_it_decodes() {
        let codec = Protocol::Generic.codec(&CodecOptions::default());
        let mut codec = Origin::new(false, None).wrap(codec);
        let mut buf = BytesMut::from(&b"authclient:203.0.113.9:alice:example.org:pw\n"[..]);
        match codec.decode(&mut buf) {
            Decoded::Request(request) => assert_eq!(request, auth(None)),
            _ => panic!("one request"),
        }
        let mut out = BytesMut::new();
        codec.encode(&Reply::Yes, &mut out);
        assert_eq!(&out[..], b"1\n");
    }
}
