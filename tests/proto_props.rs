//! Property tests for the wire codecs: any bytes in any split never panic or yield an empty user, and encoded requests decode back.

use bytes::BytesMut;
use proptest::prelude::*;
use xcauth::proto::dovecot::{escape, DovecotCodec};
use xcauth::proto::ejabberd::EjabberdCodec;
use xcauth::proto::generic::GenericCodec;
use xcauth::proto::postfix::{decode_key, encode_text, PostfixCodec};
use xcauth::proto::saslauthd::SaslauthdCodec;
use xcauth::proto::{Codec, Decoded, Reply, Request, SaslauthdFields};
use xcauth::secret::Secret;

/// Every codec configuration worth fuzzing.
fn all_codecs() -> Vec<(&'static str, Box<dyn Codec>)> {
    vec![
        ("generic", Box::new(GenericCodec::default())),
        ("ejabberd", Box::new(EjabberdCodec)),
        (
            "saslauthd-auto",
            Box::new(SaslauthdCodec::new(SaslauthdFields::Auto)),
        ),
        (
            "saslauthd-four",
            Box::new(SaslauthdCodec::new(SaslauthdFields::Four)),
        ),
        (
            "saslauthd-five",
            Box::new(SaslauthdCodec::new(SaslauthdFields::Five)),
        ),
        ("postfix", Box::new(PostfixCodec::new(String::new()))),
        (
            "postfix-delimiter",
            Box::new(PostfixCodec::new("+-".into())),
        ),
        ("dovecot", Box::new(DovecotCodec::default())),
    ]
}

/// Cuts `input` into chunks at the given points (taken modulo its length).
fn split<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(0);
    points.push(input.len());
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| &input[w[0]..w[1]]).collect()
}

/// Feeds chunks one after another, decoding after each, then drains at end
/// of input. Returns the requests and whether the codec ended the stream.
fn feed(codec: &mut dyn Codec, chunks: &[&[u8]]) -> (Vec<Request>, bool) {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    // Every request takes at least one byte, give or take a final decision
    // per chunk; this only catches a codec that spins without progress.
    let limit = 2 * total + chunks.len() + 4;
    let mut buf = BytesMut::new();
    let mut requests = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            assert!(requests.len() <= limit, "no progress");
            match codec.decode(&mut buf) {
                Decoded::NeedMore => break,
                Decoded::End => return (requests, true),
                Decoded::Request(request) => requests.push(request),
            }
        }
    }
    loop {
        assert!(requests.len() <= limit, "no progress at end of input");
        match codec.decode_eof(&mut buf) {
            Decoded::Request(request) => requests.push(request),
            Decoded::End => return (requests, true),
            Decoded::NeedMore => return (requests, false),
        }
    }
}

fn assert_sane(name: &str, request: &Request) {
    match request {
        Request::Auth { user, domain, .. }
        | Request::IsUser { user, domain }
        | Request::Roster { user, domain } => {
            assert!(
                !user.is_empty() && !domain.is_empty(),
                "{name}: {request:?}"
            );
        }
        Request::Quit | Request::Invalid { .. } => {}
    }
}

/// Pieces of each protocol's syntax that the fuzzing strings together.
const WIRE_PIECES: [&[u8]; 24] = [
    b"auth\t",
    b"isuser\t",
    b"\t",
    b"\\",
    b"auth:",
    b"isuser:",
    b"roster:",
    b"quit",
    b"get ",
    b":",
    b"@",
    b"+",
    b"%",
    b"%4",
    b"%40",
    b"\n",
    b"\r\n",
    &[0],
    &[0, 0],
    &[0, 3],
    &[1, 1],
    &[0xff, 0xff],
    b"127.0.0.1;25",
    &[0xc3],
];

/// Bytes that look a little like each protocol, so the fuzzing reaches past
/// the first check of every parser. Each fixed piece is as likely as each of
/// the three random kinds.
fn wire_noise() -> impl Strategy<Value = Vec<u8>> {
    let fixed = WIRE_PIECES.len() as u32;
    let piece = prop_oneof![
        fixed => prop::sample::select(&WIRE_PIECES[..]).prop_map(<[u8]>::to_vec),
        1 => "[a-z.]{1,6}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..8),
        1 => prop::collection::vec(any::<u8>(), 200..400),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..600), wire_noise()]
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..12)
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_or_yield_an_empty_user(input in any_input(), cuts in cuts()) {
        let chunks = split(&input, &cuts);
        for (name, mut codec) in all_codecs() {
            let (requests, _) = feed(codec.as_mut(), &chunks);
            for request in &requests {
                assert_sane(name, request);
            }
        }
    }

    #[test]
    fn any_split_of_the_same_bytes_decodes_alike_with_fixed_framing(input in any_input(), cuts in cuts()) {
        // Auto saslauthd framing depends on what has arrived (see its module
        // doc), so it is left out here.
        for (name, _) in all_codecs().into_iter().filter(|(name, _)| *name != "saslauthd-auto") {
            let fresh = || all_codecs().into_iter().find(|(n, _)| *n == name).map(|(_, c)| c).unwrap();
            let whole = feed(fresh().as_mut(), &[&input]);
            let pieces = feed(fresh().as_mut(), &split(&input, &cuts));
            prop_assert_eq!(whole, pieces, "{}", name);
        }
    }

    #[test]
    fn postfix_text_encoding_round_trips(text in any::<String>()) {
        let encoded = encode_text(&text);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_graphic()), "{encoded:?}");
        prop_assert_eq!(decode_key(encoded.as_bytes()), Some(text.into_bytes()));
    }

    #[test]
    fn generic_roster_answer_is_one_line(json in any::<String>()) {
        let mut out = BytesMut::new();
        GenericCodec::default().encode(&Reply::Roster(json), &mut out);
        prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        prop_assert!(!out.contains(&b'\r'));
        prop_assert_eq!(out.last(), Some(&b'\n'));
    }
}

// ---- round trips: a small client-side encoder per protocol ----

#[derive(Debug, Clone)]
enum Query {
    Auth(String, String, String),
    IsUser(String, String),
    Roster(String, String),
    Quit,
}

impl Query {
    fn expected(&self) -> Request {
        match self.clone() {
            Query::Auth(user, domain, password) => Request::Auth {
                user,
                domain,
                password: Secret::new(password),
                service: None,
                client: None,
            },
            Query::IsUser(user, domain) => Request::IsUser { user, domain },
            Query::Roster(user, domain) => Request::Roster { user, domain },
            Query::Quit => Request::Quit,
        }
    }

    fn text(&self) -> String {
        match self {
            Query::Auth(u, d, p) => format!("auth:{u}:{d}:{p}"),
            Query::IsUser(u, d) => format!("isuser:{u}:{d}"),
            Query::Roster(u, d) => format!("roster:{u}:{d}"),
            Query::Quit => "quit".into(),
        }
    }
}

/// A user or domain as the codecs accept it: no `:` (the separator), no
/// `@`, no control characters (those make a request invalid).
fn jid_part() -> impl Strategy<Value = String> {
    "[^:@\\p{Cc}]{1,12}"
}

fn generic_query(password: &'static str) -> impl Strategy<Value = Query> {
    prop_oneof![
        (jid_part(), jid_part(), password).prop_map(|(u, d, p)| Query::Auth(u, d, p)),
        (jid_part(), jid_part()).prop_map(|(u, d)| Query::IsUser(u, d)),
        (jid_part(), jid_part()).prop_map(|(u, d)| Query::Roster(u, d)),
        Just(Query::Quit),
    ]
}

fn frame(text: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(text.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(text);
    out
}

/// One saslauthd request as a client writes it, and what it must decode to.
#[derive(Debug, Clone)]
struct SaslQuery {
    user: String,
    domain: String,
    password: String,
    service: String,
    /// Send the domain in REALM (else as `LOGIN@DOMAIN` with REALM empty).
    realm: bool,
    client_addr: String,
}

impl SaslQuery {
    fn encode(&self, five: bool) -> Vec<u8> {
        let (login, realm) = if self.realm {
            (self.user.clone(), self.domain.clone())
        } else {
            (format!("{}@{}", self.user, self.domain), String::new())
        };
        let mut fields = vec![login, self.password.clone(), self.service.clone(), realm];
        if five {
            fields.push(self.client_addr.clone());
        }
        fields.iter().flat_map(|f| frame(f.as_bytes())).collect()
    }

    /// The request, sent with (`five`) or without CLIENT_ADDR.
    fn expected(&self, five: bool) -> Request {
        Request::Auth {
            user: self.user.clone(),
            domain: self.domain.clone(),
            password: Secret::new(self.password.clone()),
            service: (!self.service.is_empty()).then(|| self.service.clone()),
            client: (five && !self.client_addr.is_empty()).then(|| self.client_addr.clone()),
        }
    }
}

fn sasl_query() -> impl Strategy<Value = SaslQuery> {
    let addr = prop_oneof![
        Just(String::new()),
        (any::<std::net::Ipv4Addr>(), any::<u16>()).prop_map(|(a, p)| format!("{a};{p}")),
        (any::<std::net::Ipv6Addr>(), any::<u16>()).prop_map(|(a, p)| format!("{a};{p}")),
        any::<std::net::IpAddr>().prop_map(|a| a.to_string()),
    ];
    (
        // A leading `u` keeps a login from ever looking like an address.
        "u[^@\\p{Cc}]{0,15}",
        "[^@\\p{Cc}]{1,16}",
        "(?s).{1,16}",
        "[a-z]{0,8}",
        any::<bool>(),
        addr,
    )
        .prop_map(
            |(user, domain, password, service, realm, client_addr)| SaslQuery {
                user,
                domain,
                password,
                service,
                realm,
                client_addr,
            },
        )
}

/// Local part without delimiter, domain, and an optional extension.
fn address() -> impl Strategy<Value = (String, String, Option<String>)> {
    (
        "[^\\s\\p{Cc}@+]{1,12}",
        "[^\\s\\p{Cc}@]{1,12}",
        prop::option::of("[^\\s\\p{Cc}@]{0,8}"),
    )
}

proptest! {
    #[test]
    fn generic_round_trip(
        queries in prop::collection::vec(generic_query("[^\r\n]{0,20}"), 1..8),
        crlf in any::<bool>(),
        cuts in cuts(),
    ) {
        let ending = if crlf { "\r\n" } else { "\n" };
        let input: String = queries.iter().map(|q| q.text() + ending).collect();
        let (got, ended) = feed(&mut GenericCodec::default(), &split(input.as_bytes(), &cuts));
        let expected: Vec<Request> = queries.iter().map(Query::expected).collect();
        prop_assert_eq!(got, expected);
        prop_assert!(ended);
    }

    #[test]
    fn generic_last_line_without_newline(query in generic_query("[^\r\n]{0,20}")) {
        let input = query.text();
        let (got, ended) = feed(&mut GenericCodec::default(), &[input.as_bytes()]);
        prop_assert_eq!(got, vec![query.expected()]);
        prop_assert!(ended);
    }

    #[test]
    fn ejabberd_round_trip(
        queries in prop::collection::vec(
            generic_query("(?s).{0,20}").prop_filter("no roster on ejabberd", |q| !matches!(q, Query::Roster(..))),
            1..8,
        ),
        cuts in cuts(),
    ) {
        let mut input: Vec<u8> = queries.iter().flat_map(|q| frame(q.text().as_bytes())).collect();
        input.extend([0, 0]);
        input.extend(frame(b"isuser:not:read"));
        let (got, ended) = feed(&mut EjabberdCodec, &split(&input, &cuts));
        let expected: Vec<Request> = queries.iter().map(Query::expected).collect();
        prop_assert_eq!(got, expected);
        prop_assert!(ended);
    }

    #[test]
    fn saslauthd_round_trip_with_fixed_field_count(
        queries in prop::collection::vec(sasl_query(), 1..6),
        five in any::<bool>(),
        cuts in cuts(),
    ) {
        let input: Vec<u8> = queries.iter().flat_map(|q| q.encode(five)).collect();
        let mode = if five { SaslauthdFields::Five } else { SaslauthdFields::Four };
        let (got, _) = feed(&mut SaslauthdCodec::new(mode), &split(&input, &cuts));
        let expected: Vec<Request> = queries.iter().map(|q| q.expected(five)).collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn saslauthd_auto_round_trip_four_fields_any_split(
        queries in prop::collection::vec(sasl_query(), 1..6),
        cuts in cuts(),
    ) {
        let input: Vec<u8> = queries.iter().flat_map(|q| q.encode(false)).collect();
        let (got, _) = feed(&mut SaslauthdCodec::new(SaslauthdFields::Auto), &split(&input, &cuts));
        let expected: Vec<Request> = queries.iter().map(|q| q.expected(false)).collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn saslauthd_auto_round_trip_whole_writes(
        queries in prop::collection::vec((sasl_query(), any::<bool>()), 1..6),
        joins in prop::collection::vec(any::<bool>(), 6),
    ) {
        // Each request arrives in one write (as Cyrus sends it); writes may
        // also be coalesced. Four- and five-field requests may be mixed.
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        for (i, (query, five)) in queries.iter().enumerate() {
            let bytes = query.encode(*five);
            match chunks.last_mut() {
                Some(last) if joins[i] => last.extend(bytes),
                _ => chunks.push(bytes),
            }
        }
        let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        let (got, _) = feed(&mut SaslauthdCodec::new(SaslauthdFields::Auto), &chunks);
        let expected: Vec<Request> = queries.iter().map(|(q, five)| q.expected(*five)).collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn postfix_round_trip(
        addresses in prop::collection::vec(address(), 1..8),
        cuts in cuts(),
    ) {
        let mut input = Vec::new();
        for (local, domain, extension) in &addresses {
            let key = match extension {
                Some(extension) => format!("{local}+{extension}@{domain}"),
                None => format!("{local}@{domain}"),
            };
            input.extend_from_slice(b"get ");
            input.extend_from_slice(encode_text(&key).as_bytes());
            input.push(b'\n');
        }
        input.extend_from_slice(b"quit\n");
        let (got, _) = feed(&mut PostfixCodec::new("+".into()), &split(&input, &cuts));
        let mut expected: Vec<Request> = addresses
            .iter()
            .map(|(local, domain, _)| Request::IsUser { user: local.clone(), domain: domain.clone() })
            .collect();
        expected.push(Request::Quit);
        prop_assert_eq!(got, expected);
    }
}

/// One Dovecot request: auth (user, domain, password, service, client) or
/// isuser (user, domain).
#[derive(Debug, Clone)]
enum DovecotQuery {
    Auth(String, String, String, String, Option<std::net::IpAddr>),
    IsUser(String, String),
}

impl DovecotQuery {
    fn line(&self) -> String {
        match self {
            DovecotQuery::Auth(u, d, p, s, c) => format!(
                "auth\t{}\t{}\t{}\t{}\t{}\n",
                escape(u),
                escape(d),
                escape(p),
                escape(s),
                c.map(|c| c.to_string()).unwrap_or_default()
            ),
            DovecotQuery::IsUser(u, d) => format!("isuser\t{}\t{}\n", escape(u), escape(d)),
        }
    }

    fn expected(&self) -> Request {
        match self.clone() {
            DovecotQuery::Auth(user, domain, password, service, client) => Request::Auth {
                user,
                domain,
                password: Secret::new(password),
                service: (!service.is_empty()).then_some(service),
                client: client.map(|c| c.to_string()),
            },
            DovecotQuery::IsUser(user, domain) => Request::IsUser { user, domain },
        }
    }
}

fn dovecot_query() -> impl Strategy<Value = DovecotQuery> {
    // No control characters or line separators: those make a request
    // invalid (tests in the codec's module).
    let user = "[^\\p{Cc}\u{2028}\u{2029}]{1,12}";
    let domain = "[^@\\p{Cc}\u{2028}\u{2029}]{1,12}";
    prop_oneof![
        (
            user,
            domain,
            "(?s).{1,24}",
            "[a-z0-9-]{0,10}",
            prop::option::of(any::<std::net::IpAddr>()),
        )
            .prop_map(|(u, d, p, s, c)| DovecotQuery::Auth(u, d, p, s, c)),
        (user, domain).prop_map(|(u, d)| DovecotQuery::IsUser(u, d)),
    ]
}

proptest! {
    #[test]
    fn dovecot_round_trip_any_split(
        queries in prop::collection::vec(dovecot_query(), 1..8),
        cuts in cuts(),
    ) {
        let mut input: String = queries.iter().map(DovecotQuery::line).collect();
        input.push_str("quit\n");
        let (got, _) = feed(&mut DovecotCodec::default(), &split(input.as_bytes(), &cuts));
        let mut expected: Vec<Request> = queries.iter().map(DovecotQuery::expected).collect();
        expected.push(Request::Quit);
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn dovecot_answer_is_one_of_three_lines(reply in prop_oneof![
        Just(Reply::Yes),
        Just(Reply::No),
        Just(Reply::TryLater),
        Just(Reply::KnownWhileUnreachable),
        any::<String>().prop_map(Reply::Invalid),
        any::<String>().prop_map(Reply::Roster),
    ]) {
        let mut out = BytesMut::new();
        DovecotCodec::default().encode(&reply, &mut out);
        prop_assert!(matches!(&out[..], b"OK\n" | b"NO\n" | b"TEMPFAIL\n"));
    }
}
