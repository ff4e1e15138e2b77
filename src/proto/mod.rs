//! Wire protocols. Each submodule is a pure codec: bytes in, [`Request`]s
//! out, and a [`Reply`] back into bytes. No sockets, no decisions here.

use bytes::BytesMut;

use crate::secret::Secret;

pub mod domain;
pub mod dovecot;
pub mod ejabberd;
pub mod generic;
pub mod postfix;
pub mod saslauthd;
impl Request {
    /// The same request from the client at `client` (an `Auth`; any other
    /// request is returned as it is).
    pub fn with_client(self, client: &str) -> Request {
        match self {
            Request::Auth {
                user,
                domain,
                password,
                service,
                ..
            } => Request::Auth {
                user,
                domain,
                password,
                service,
                client: Some(client.to_owned()),
            },
            other => other,
        }
    }

    /// The same request with its domain in the canonical form
    /// ([`domain::canonical_domain`]), or [`Request::Invalid`] when the
    /// domain is not a host name. Every request goes through this before
    /// any decision, so the row look-up, the cache, the guard, the token
    /// check and the logs all see one spelling of a domain.
    pub fn canonical(self) -> Request {
        let canonical = |domain: &str| {
            domain::canonical_domain(domain).map_err(|why| Request::Invalid {
                reason: invalid_domain_reason(domain, why),
            })
        };
        let result = match self {
            Request::Auth {
                user,
                domain,
                password,
                service,
                client,
            } => canonical(&domain).map(|domain| Request::Auth {
                user,
                domain,
                password,
                service,
                client,
            }),
            Request::IsUser { user, domain } => {
                canonical(&domain).map(|domain| Request::IsUser { user, domain })
            }
            Request::Roster { user, domain } => {
                canonical(&domain).map(|domain| Request::Roster { user, domain })
            }
            other => Ok(other),
        };
        result.unwrap_or_else(|invalid| invalid)
    }
}

/// The most characters of a refused domain quoted in a reason.
const QUOTED_DOMAIN: usize = 80;

/// Why a request for `domain` is refused: the domain (shortened; whoever
/// logs or sends the reason escapes it) and what is wrong with it.
fn invalid_domain_reason(domain: &str, why: &str) -> String {
    let mut quoted: String = domain.chars().take(QUOTED_DOMAIN).collect();
    if quoted.len() < domain.len() {
        quoted.push('…');
    }
    format!("invalid domain \"{quoted}\": {why}")
}

/// A control character, or one of the Unicode line and paragraph
/// separators (U+2028, U+2029; nodeprep prohibits them too), which some log
/// viewers break lines at.
fn breaks_lines(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// Why `user` at `domain` cannot be asked about, if it cannot: empty
/// halves; control characters (they would split or forge log lines); `@`
/// in the domain, or in the user where `at_in_user` is false (the XMPP
/// protocols: `a@b` at `c` and `a` at `b@c` would be one JID, one cache
/// entry and one token input).
pub(crate) fn name_problem(user: &str, domain: &str, at_in_user: bool) -> Option<&'static str> {
    if user.is_empty() || domain.is_empty() {
        Some("empty user or domain")
    } else if user.chars().chain(domain.chars()).any(breaks_lines) {
        Some("control characters in user or domain")
    } else if domain.contains('@') || (!at_in_user && user.contains('@')) {
        Some("@ in user or domain")
    } else {
        None
    }
}

#[cfg(test)]
pub(crate) mod testing;

/// The protocols xcauth speaks (`--type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Newline-terminated `auth:U:D:P` lines (Prosody's `mod_auth_external`).
    Generic,
    /// ejabberd's length-prefixed extauth frames.
    Ejabberd,
    /// The Cyrus saslauthd "mux" socket protocol.
    Saslauthd,
    /// Postfix `tcp_table` lookups.
    Postfix,
    /// TAB-separated lines from xcauth's Lua passdb and userdb for Dovecot,
    /// with a three-way answer.
    Dovecot,
}

impl Protocol {
    /// Parses a `--type` value or a systemd socket name; `prosody` is an
    /// alias of `generic`.
    pub fn from_name(name: &str) -> Option<Protocol> {
        match name {
            "generic" | "prosody" => Some(Protocol::Generic),
            "ejabberd" => Some(Protocol::Ejabberd),
            "saslauthd" => Some(Protocol::Saslauthd),
            "postfix" => Some(Protocol::Postfix),
            "dovecot" => Some(Protocol::Dovecot),
            _ => None,
        }
    }

    /// The canonical name, as accepted by [`Protocol::from_name`].
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Generic => "generic",
            Protocol::Ejabberd => "ejabberd",
            Protocol::Saslauthd => "saslauthd",
            Protocol::Postfix => "postfix",
            Protocol::Dovecot => "dovecot",
        }
    }

    /// A fresh decoder/encoder for one stream of this protocol.
    pub fn codec(self, options: &CodecOptions) -> Box<dyn Codec> {
        match self {
            Protocol::Generic => Box::new(generic::GenericCodec::default()),
            Protocol::Ejabberd => Box::new(ejabberd::EjabberdCodec),
            Protocol::Saslauthd => {
                Box::new(saslauthd::SaslauthdCodec::new(options.saslauthd_fields))
            }
            Protocol::Postfix => Box::new(postfix::PostfixCodec::new(
                options.recipient_delimiter.clone(),
            )),
            Protocol::Dovecot => Box::new(dovecot::DovecotCodec::default()),
        }
    }
}

/// How a saslauthd client frames its requests (see [`saslauthd`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaslauthdFields {
    /// Tell 4-field (Cyrus SASL 2.1.28) from 5-field (newer Cyrus) requests
    /// by looking at what follows the fourth field.
    #[default]
    Auto,
    /// Always LOGIN, PASSWORD, SERVICE, REALM.
    Four,
    /// Always LOGIN, PASSWORD, SERVICE, REALM, CLIENT_ADDR.
    Five,
}

/// Per-protocol settings that change how bytes are read.
#[derive(Debug, Clone, Default)]
pub struct CodecOptions {
    /// Postfix: characters that start an address extension
    /// (like Postfix's `recipient_delimiter`); empty means no stripping.
    pub recipient_delimiter: String,
    /// saslauthd: how requests are framed.
    pub saslauthd_fields: SaslauthdFields,
}

/// One decoded request, the same for every protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Is `password` right for `user@domain`?
    Auth {
        /// Local part as sent by the server.
        user: String,
        /// XMPP or mail domain.
        domain: String,
        /// The password or JSXC token.
        password: Secret,
        /// What the login is for, when the protocol says (saslauthd's
        /// SERVICE field: `imap`, `smtp`, ...); only logged.
        service: Option<String>,
        /// The client's address, when the protocol says (saslauthd's
        /// CLIENT_ADDR, the generic `authclient:` request of the Prosody
        /// module); the guard counts failures per address.
        client: Option<String>,
    },
    /// Does `user@domain` exist?
    IsUser {
        /// Local part.
        user: String,
        /// Domain.
        domain: String,
    },
    /// The user's shared roster as JSON (generic protocol only).
    Roster {
        /// Local part.
        user: String,
        /// Domain.
        domain: String,
    },
    /// The caller asks to close this stream (`quit`/`exit`).
    Quit,
    /// Well framed but not something we answer with success: unknown
    /// commands, `setpass`, bad UTF-8, over-long input, empty fields.
    /// Answered with the protocol's failure reply; `reason` is for the log
    /// and must not contain a password.
    Invalid {
        /// Why the request was refused, safe to log.
        reason: String,
    },
}

/// What the decision says, before a protocol spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Authenticated / the user exists.
    Yes,
    /// Wrong password / no such user / refused request.
    No,
    /// The answer cannot be known now (back end unreachable during an
    /// `isuser`, or during an `auth` that no cache entry could answer);
    /// Postfix says `400`, Dovecot `TEMPFAIL`, others fall back to failure.
    TryLater,
    /// `isuser` while the back end is unreachable, for a user the cache
    /// verified recently: XMPP protocols say yes (a "no" would make
    /// ejabberd bounce messages), so does Dovecot (mail for a known user is
    /// delivered), Postfix still says `400`.
    KnownWhileUnreachable,
    /// Shared roster JSON text (one line) for a `roster` request.
    Roster(String),
    /// The request was refused before any decision ([`Request::Invalid`]);
    /// spelled as the failure answer, Postfix adds the reason.
    Invalid(String),
}

/// Result of trying to take one request off the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Not enough bytes yet for a whole request.
    NeedMore,
    /// One request; its bytes were removed from the buffer.
    Request(Request),
    /// The stream ends here (ejabberd length 0); stop reading.
    End,
}

/// A stateful decoder and encoder for one stream.
pub trait Codec: Send {
    /// Takes at most one request off the front of `buf`. Consumed bytes are
    /// removed from `buf`. A partial request is [`Decoded::NeedMore`], never
    /// an error.
    fn decode(&mut self, buf: &mut BytesMut) -> Decoded;

    /// Called once the peer has closed its side and [`Codec::decode`] said
    /// [`Decoded::NeedMore`]: what to make of the bytes left over. The
    /// default drops a partial frame and ends the stream.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> Decoded {
        buf.clear();
        Decoded::End
    }

    /// Appends the wire form of `reply` to `out`.
    fn encode(&self, reply: &Reply, out: &mut BytesMut);
}

#[cfg(test)]
mod canonical_tests {
    use super::*;

    fn auth(domain: &str) -> Request {
        Request::Auth {
            user: "Alice".into(),
            domain: domain.into(),
            password: Secret::new("hunter2"),
            service: Some("imap".into()),
            client: Some("192.0.2.1".into()),
        }
    }

    #[test]
    fn requests_get_the_canonical_domain_and_keep_the_rest() {
        assert_eq!(auth("EXAMPLE.ORG.").canonical(), auth("example.org"));
        assert_eq!(
            Request::IsUser {
                user: "Bob".into(),
                domain: "Example.org".into()
            }
            .canonical(),
            Request::IsUser {
                user: "Bob".into(),
                domain: "example.org".into()
            }
        );
        assert_eq!(
            Request::Roster {
                user: "c".into(),
                domain: "xn--bcher-kva.example".into()
            }
            .canonical(),
            Request::Roster {
                user: "c".into(),
                domain: "bücher.example".into()
            }
        );
        assert_eq!(Request::Quit.canonical(), Request::Quit);
        let invalid = Request::Invalid { reason: "x".into() };
        assert_eq!(invalid.clone().canonical(), invalid);
    }

    #[test]
    fn a_domain_that_is_not_a_host_name_makes_the_request_invalid() {
        for bad in [
            "example.org\u{200B}",
            "exa mple.org",
            "a_b.example",
            "10.0.0.1",
        ] {
            match auth(bad).canonical() {
                Request::Invalid { reason } => {
                    assert!(reason.starts_with("invalid domain"), "{reason}");
                    assert!(!reason.contains("hunter2"), "{reason}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
            let isuser = Request::IsUser {
                user: "a".into(),
                domain: bad.into(),
            };
            assert!(matches!(isuser.canonical(), Request::Invalid { .. }));
        }
        // A long domain is quoted shortened.
        let long = format!("{}\u{200B}", "a".repeat(5000));
        match auth(&long).canonical() {
            Request::Invalid { reason } => assert!(reason.len() < 300, "{}", reason.len()),
            other => panic!("{other:?}"),
        }
    }
}
