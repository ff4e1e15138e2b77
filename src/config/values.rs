//! The value types of the options and their parsers, each with its bounds:
//! the command line, the environment and the file accept the same spellings.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser, ValueParser};
use clap::{Arg, ArgAction, ArgMatches};

use crate::backend::{BackendKind, LoginForm};
use crate::proto::{Protocol, SaslauthdFields};
use crate::secret::Secret;

/// What an option's value is: how its text is parsed (environment and
/// file) and how clap takes it (command line). The column "type" of the
/// option table names one of these.
pub(super) trait Value: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// A bare key in the config file means "true".
    const SWITCH: bool = false;
    /// A valid spelling, for the table's own tests.
    #[cfg(test)]
    const EXAMPLE: &'static str;

    /// Parses the text form; the error says what is wrong with the value
    /// (the caller adds which option and where it came from).
    fn parse(text: &str) -> Result<Self, String>;

    /// Sets the clap argument's action and value parser.
    fn clap(arg: Arg) -> Arg {
        arg.action(ArgAction::Set).value_parser(ValueParser::new(
            Self::parse as fn(&str) -> Result<Self, String>,
        ))
    }

    /// The command line's value, if it gave one.
    fn from_matches(matches: &ArgMatches, id: &str) -> Option<Self> {
        matches.get_one::<Self>(id).cloned()
    }
}

/// One of a fixed set of names: clap lists them in `--help` and in its
/// error, then `parse` turns the name into the value.
fn choice<T: Value>(
    names: &'static [&'static str],
    parse: fn(&str) -> Result<T, String>,
) -> ValueParser {
    ValueParser::new(PossibleValuesParser::new(names).try_map(move |name: String| parse(&name)))
}

/// Free text (socket owner and group, the recipient delimiter).
impl Value for String {
    #[cfg(test)]
    const EXAMPLE: &'static str = "text";
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
}

/// A file or directory; on the command line it may be any OS string, as
/// clap's own path parser allows.
impl Value for PathBuf {
    #[cfg(test)]
    const EXAMPLE: &'static str = "/some/path";
    fn parse(text: &str) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }
    fn clap(arg: Arg) -> Arg {
        arg.action(ArgAction::Set)
            .value_parser(ValueParser::path_buf())
    }
}

/// The API secret.
impl Value for Secret {
    #[cfg(test)]
    const EXAMPLE: &'static str = "s3cr3t";
    fn parse(text: &str) -> Result<Self, String> {
        Ok(Secret::new(text))
    }
}

/// A switch: `-d` on the command line; `debug`, `debug=true`, `debug=no`
/// ... in the file and the environment. The command line only ever says
/// "on": an absent `-d` leaves the decision to the environment and the file.
impl Value for bool {
    const SWITCH: bool = true;
    #[cfg(test)]
    const EXAMPLE: &'static str = "true";
    fn parse(text: &str) -> Result<Self, String> {
        parse_switch(text)
    }
    fn clap(arg: Arg) -> Arg {
        arg.action(ArgAction::SetTrue)
    }
    fn from_matches(matches: &ArgMatches, id: &str) -> Option<Self> {
        matches.get_flag(id).then_some(true)
    }
}

pub(super) const PROTOCOL_NAMES: [&str; 6] = [
    "generic",
    "prosody",
    "ejabberd",
    "saslauthd",
    "postfix",
    "dovecot",
];
const CACHE_STORAGE_NAMES: [&str; 3] = ["none", "memory", "db"];
const SASLAUTHD_FIELDS_NAMES: [&str; 3] = ["auto", "4", "5"];

impl Value for Protocol {
    #[cfg(test)]
    const EXAMPLE: &'static str = "postfix";
    fn parse(text: &str) -> Result<Self, String> {
        parse_protocol(text)
    }
    fn clap(arg: Arg) -> Arg {
        arg.action(ArgAction::Set)
            .value_parser(choice(&PROTOCOL_NAMES, parse_protocol))
    }
}

/// Where cached credentials live (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheStorage {
    /// No cache (default).
    #[default]
    None,
    /// In process memory, lost on exit.
    Memory,
    /// In the SQLite database.
    Db,
}

impl Value for BackendKind {
    #[cfg(test)]
    const EXAMPLE: &'static str = "nextcloud";
    fn parse(text: &str) -> Result<Self, String> {
        BackendKind::parse(text)
    }
    fn clap(arg: Arg) -> Arg {
        arg.action(ArgAction::Set)
            .value_parser(choice(&["jsxc", "nextcloud"], BackendKind::parse))
    }
}

impl Value for LoginForm {
    #[cfg(test)]
    const EXAMPLE: &'static str = "user@domain";
    fn parse(text: &str) -> Result<Self, String> {
        LoginForm::parse(text)
    }
    fn clap(arg: Arg) -> Arg {
        arg.action(ArgAction::Set)
            .value_parser(choice(&["user", "user@domain"], LoginForm::parse))
    }
}

impl Value for CacheStorage {
    #[cfg(test)]
    const EXAMPLE: &'static str = "memory";
    fn parse(text: &str) -> Result<Self, String> {
        parse_cache_storage(text)
    }
    fn clap(arg: Arg) -> Arg {
        arg.action(ArgAction::Set)
            .value_parser(choice(&CACHE_STORAGE_NAMES, parse_cache_storage))
    }
}

impl Value for SaslauthdFields {
    #[cfg(test)]
    const EXAMPLE: &'static str = "5";
    fn parse(text: &str) -> Result<Self, String> {
        parse_saslauthd_fields(text)
    }
    fn clap(arg: Arg) -> Arg {
        arg.action(ArgAction::Set)
            .value_parser(choice(&SASLAUTHD_FIELDS_NAMES, parse_saslauthd_fields))
    }
}

/// An http(s) URL, kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Url(pub String);

impl Value for Url {
    #[cfg(test)]
    const EXAMPLE: &'static str = "https://cloud.example.org/x";
    fn parse(text: &str) -> Result<Self, String> {
        parse_url(text).map(Url)
    }
}

/// A time span in whole seconds where 0 is meaningful (a cache TTL of 0:
/// "never fresh").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span(pub i64);

impl Span {
    /// As a [`Duration`].
    pub(super) fn duration(self) -> Duration {
        Duration::from_secs(u64::try_from(self.0).unwrap_or(0))
    }
}

impl Value for Span {
    #[cfg(test)]
    const EXAMPLE: &'static str = "5m";
    fn parse(text: &str) -> Result<Self, String> {
        parse_span(text).map(Span)
    }
}

/// A time span of at least one second, for options where 0 would mean
/// nothing sensible (an idle limit of 0 closes every connection at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PositiveSpan(pub i64);

impl PositiveSpan {
    /// As a [`Duration`].
    pub(super) fn duration(self) -> Duration {
        Duration::from_secs(u64::try_from(self.0).unwrap_or(0))
    }
}

impl Value for PositiveSpan {
    #[cfg(test)]
    const EXAMPLE: &'static str = "5m";
    fn parse(text: &str) -> Result<Self, String> {
        match parse_span(text)? {
            0 => Err(format!(
                "`{text}` is too short a span here; use at least 1s"
            )),
            seconds => Ok(PositiveSpan(seconds)),
        }
    }
}

/// Back-end timeouts `CONNECT[,TOTAL]`, both above 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Timeouts {
    pub connect: Duration,
    pub total: Duration,
}

impl Value for Timeouts {
    #[cfg(test)]
    const EXAMPLE: &'static str = "1.5,3";
    fn parse(text: &str) -> Result<Self, String> {
        let (connect, total) = parse_timeouts(text)?;
        Ok(Timeouts { connect, total })
    }
}

/// bcrypt costs `DB[,MEMORY]`, each in [`BCRYPT_ROUNDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rounds {
    pub db: u32,
    pub memory: u32,
}

impl Value for Rounds {
    #[cfg(test)]
    const EXAMPLE: &'static str = "10,5";
    fn parse(text: &str) -> Result<Self, String> {
        let (db, memory) = parse_rounds(text)?;
        Ok(Rounds { db, memory })
    }
}

/// A count of at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Count(pub usize);

impl Value for Count {
    #[cfg(test)]
    const EXAMPLE: &'static str = "7";
    fn parse(text: &str) -> Result<Self, String> {
        parse_count(text).map(Count)
    }
}

/// A count where 0 means "off" (the guard's limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limit(pub u32);

impl Value for Limit {
    #[cfg(test)]
    const EXAMPLE: &'static str = "0";
    fn parse(text: &str) -> Result<Self, String> {
        text.trim()
            .parse::<u32>()
            .map(Limit)
            .map_err(|_| format!("{text:?}: expected a number (0 switches it off)"))
    }
}

/// Addresses or ranges, comma-separated: `127.0.0.1, 2001:db8::/32`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Networks(pub Vec<crate::guard::Network>);

impl Value for Networks {
    #[cfg(test)]
    const EXAMPLE: &'static str = "127.0.0.1,10.0.0.0/8";
    fn parse(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(crate::guard::Network::parse)
            .collect::<Result<_, _>>()
            .map(Networks)
    }
}

/// Permission bits, octal, at most 0777.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Octal(pub u32);

impl Value for Octal {
    #[cfg(test)]
    const EXAMPLE: &'static str = "600";
    fn parse(text: &str) -> Result<Self, String> {
        parse_mode(text).map(Octal)
    }
}

/// Where a `--listen` socket is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// A TCP address such as `127.0.0.1:23663` or `[::1]:23663`.
    Tcp(std::net::SocketAddr),
    /// A Unix socket path (`unix:/run/saslauthd/mux`).
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddress {
    /// As `--listen` and `--trusted-socket` spell it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddress::Tcp(addr) => write!(f, "{addr}"),
            ListenAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// One `--listen PROTO[:REQUESTS]=ADDR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// The protocol spoken on this socket.
    pub protocol: Protocol,
    /// Where to listen.
    pub address: ListenAddress,
    /// Which requests are answered here (`:auth+isuser`); all by default.
    pub requests: RequestSet,
}

/// Which kinds of request a socket answers: `auth`, `isuser`, `roster`.
/// A refused one gets the protocol's failure answer. Quitting and the
/// failure answers to invalid requests are not requests in this sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSet {
    auth: bool,
    isuser: bool,
    roster: bool,
}

impl RequestSet {
    /// Every request (the default, as before per-socket sets existed).
    pub const ALL: RequestSet = RequestSet {
        auth: true,
        isuser: true,
        roster: true,
    };

    /// The names, in this order, as written in a listen spec.
    const NAMES: [&'static str; 3] = ["auth", "isuser", "roster"];

    /// Parses `auth+isuser` (names joined by `+`, at least one).
    pub fn parse(text: &str) -> Result<RequestSet, String> {
        let mut set = RequestSet {
            auth: false,
            isuser: false,
            roster: false,
        };
        for name in text.split('+') {
            match name.trim() {
                "auth" => set.auth = true,
                "isuser" => set.isuser = true,
                "roster" => set.roster = true,
                other => {
                    return Err(format!(
                        "`{other}` is not a request; use {} joined by +",
                        Self::NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(set)
    }

    /// The name of `request`'s kind when this set does not answer it.
    pub fn refuses(&self, request: &crate::proto::Request) -> Option<&'static str> {
        use crate::proto::Request;
        match request {
            Request::Auth { .. } if !self.auth => Some("auth"),
            Request::IsUser { .. } if !self.isuser => Some("isuser"),
            Request::Roster { .. } if !self.roster => Some("roster"),
            _ => None,
        }
    }

    fn flags(&self) -> [bool; 3] {
        [self.auth, self.isuser, self.roster]
    }
}

impl Default for RequestSet {
    fn default() -> Self {
        RequestSet::ALL
    }
}

impl std::fmt::Display for RequestSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = Self::NAMES
            .iter()
            .zip(self.flags())
            .filter_map(|(name, on)| on.then_some(*name))
            .collect();
        f.write_str(&names.join("+"))
    }
}

/// The request kinds `protocol` can carry at all.
fn spoken(protocol: Protocol) -> RequestSet {
    match protocol {
        Protocol::Generic => RequestSet::ALL,
        Protocol::Ejabberd => RequestSet {
            roster: false,
            ..RequestSet::ALL
        },
        Protocol::Saslauthd => RequestSet {
            auth: true,
            isuser: false,
            roster: false,
        },
        Protocol::Postfix => RequestSet {
            auth: false,
            isuser: true,
            roster: false,
        },
        Protocol::Dovecot => RequestSet {
            roster: false,
            ..RequestSet::ALL
        },
    }
}

/// Own listeners: `--listen` is repeated on the command line; the file and
/// the environment list them separated by commas or spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Listen(pub Vec<ListenSpec>);

impl Value for Listen {
    #[cfg(test)]
    const EXAMPLE: &'static str = "generic=127.0.0.1:1";
    fn parse(text: &str) -> Result<Self, String> {
        parse_listen_list(text).map(Listen)
    }
    fn clap(arg: Arg) -> Arg {
        arg.action(ArgAction::Append)
            .value_parser(parse_listen_one as fn(&str) -> Result<ListenSpec, String>)
    }
    fn from_matches(matches: &ArgMatches, id: &str) -> Option<Self> {
        matches
            .get_many::<ListenSpec>(id)
            .map(|specs| Listen(specs.cloned().collect()))
    }
}

/// Sockets whose clients are believed when they say a client's address
/// (`--trusted-socket`): repeated on the command line; the file and the
/// environment list them separated by commas or spaces, as `listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TrustedSockets(pub Vec<ListenAddress>);

impl Value for TrustedSockets {
    #[cfg(test)]
    const EXAMPLE: &'static str = "unix:/run/xcauth/prosody.sock";
    fn parse(text: &str) -> Result<Self, String> {
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|part| !part.is_empty())
            .map(parse_listen_address)
            .collect::<Result<_, _>>()
            .map(TrustedSockets)
    }
    fn clap(arg: Arg) -> Arg {
        arg.action(ArgAction::Append)
            .value_parser(parse_listen_address as fn(&str) -> Result<ListenAddress, String>)
    }
    fn from_matches(matches: &ArgMatches, id: &str) -> Option<Self> {
        matches
            .get_many::<ListenAddress>(id)
            .map(|addresses| TrustedSockets(addresses.cloned().collect()))
    }
}

/// `--metrics ADDR`: a TCP `host:port`, or a Unix socket path (`/PATH` or
/// `unix:/PATH`). Whether a TCP address may be other than loopback is
/// decided with `metrics-allow-remote` in resolved.rs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MetricsAddress(pub ListenAddress);

impl Value for MetricsAddress {
    #[cfg(test)]
    const EXAMPLE: &'static str = "127.0.0.1:9155";
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let path = text.strip_prefix("unix:").unwrap_or(text);
        if path.starts_with('/') {
            return Ok(MetricsAddress(ListenAddress::Unix(PathBuf::from(path))));
        }
        text.parse()
            .map(|a| MetricsAddress(ListenAddress::Tcp(a)))
            .map_err(|_| {
                format!(
                    "{text:?}: expected IP:PORT (e.g. 127.0.0.1:9155, [::1]:9155) \
                 or the absolute path of a Unix socket"
                )
            })
    }
}

/// bcrypt costs we accept. bcrypt itself goes to 31, but every step
/// doubles the work: cost 12 takes about a quarter of a second, 16 about 4 s
/// (already longer than most servers wait for a login), 31 about 36 hours.
pub(super) const BCRYPT_ROUNDS: std::ops::RangeInclusive<u32> = 4..=16;

/// An http(s) URL, returned as written.
pub(crate) fn parse_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e})"))?;
    match url.scheme() {
        "https" | "http" => Ok(text.to_owned()),
        other => Err(format!("`{text}` is not an http(s) URL (scheme `{other}`)")),
    }
}

fn parse_protocol(text: &str) -> Result<Protocol, String> {
    Protocol::from_name(text).ok_or_else(|| {
        format!(
            "`{text}` is not a type; use one of {}",
            PROTOCOL_NAMES.join(", ")
        )
    })
}

fn parse_cache_storage(text: &str) -> Result<CacheStorage, String> {
    match text {
        "none" => Ok(CacheStorage::None),
        "memory" => Ok(CacheStorage::Memory),
        "db" => Ok(CacheStorage::Db),
        _ => Err(format!(
            "`{text}` is not a cache storage; use one of {}",
            CACHE_STORAGE_NAMES.join(", ")
        )),
    }
}

/// `PROTO[:REQUESTS]=ADDR`: ADDR is `unix:PATH` or a TCP `host:port`
/// (`[v6]:port`); REQUESTS (e.g. `auth+isuser`) the requests answered.
fn parse_listen_one(text: &str) -> Result<ListenSpec, String> {
    let (proto, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected PROTO=ADDR, e.g. prosody=127.0.0.1:23663"))?;
    let (proto, requests) = match proto.split_once(':') {
        Some((proto, requests)) => (proto, Some(requests)),
        None => (proto, None),
    };
    let protocol = parse_protocol(proto.trim())?;
    let requests = match requests {
        None => RequestSet::ALL,
        Some(list) => {
            let set = RequestSet::parse(list).map_err(|e| format!("{text:?}: {e}"))?;
            let carried = spoken(protocol).flags();
            if !set.flags().iter().zip(carried).any(|(on, can)| *on && can) {
                return Err(format!(
                    "{text:?}: {} carries only {}",
                    protocol.name(),
                    spoken(protocol)
                ));
            }
            set
        }
    };
    Ok(ListenSpec {
        protocol,
        address: parse_listen_address(addr)?,
        requests,
    })
}

/// A socket address as `--listen` spells it: `unix:/PATH`, `IP:PORT` or
/// `[v6]:PORT`.
fn parse_listen_address(addr: &str) -> Result<ListenAddress, String> {
    let addr = addr.trim();
    if let Some(path) = addr.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err(format!("{addr:?}: a Unix socket path must be absolute"));
        }
        Ok(ListenAddress::Unix(PathBuf::from(path)))
    } else {
        addr.parse()
            .map(ListenAddress::Tcp)
            .map_err(|_| format!("{addr:?}: expected IP:PORT ([::1]:PORT for IPv6) or unix:/PATH"))
    }
}

/// Several `PROTO=ADDR` separated by commas or spaces (file and
/// environment form of `--listen`).
fn parse_listen_list(text: &str) -> Result<Vec<ListenSpec>, String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .map(parse_listen_one)
        .collect()
}

/// Octal permission bits such as `0660` or `660`.
fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim(), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{text:?}: expected octal permission bits such as 0660"))
}

/// A positive count.
fn parse_count(text: &str) -> Result<usize, String> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?}: expected a positive number"))
}

fn parse_saslauthd_fields(text: &str) -> Result<SaslauthdFields, String> {
    match text {
        "auto" => Ok(SaslauthdFields::Auto),
        "4" => Ok(SaslauthdFields::Four),
        "5" => Ok(SaslauthdFields::Five),
        _ => Err(format!("`{text}` is not one of auto, 4, 5")),
    }
}

/// A switch value as ConfigArgParse took it (plus on/off).
fn parse_switch(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(format!("`{text}` is not true or false")),
    }
}

/// A time span in seconds: `90`, `90s`, `30m`, `1h`, `2d`, `1w`.
fn parse_span(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    let bad = || {
        format!(
            "`{text}` is not a time span; use seconds or a number with s, m, h, d or w \
             (90, 30m, 1h, 2d, 1w)"
        )
    };
    if trimmed.starts_with('-') {
        return Err(format!("`{text}`: a time span cannot be negative"));
    }
    let (digits, factor) = match trimmed.char_indices().last() {
        Some((at, unit)) if unit.is_ascii_alphabetic() => {
            let factor = match unit {
                's' => 1,
                'm' => 60,
                'h' => 60 * 60,
                'd' => 24 * 60 * 60,
                'w' => 7 * 24 * 60 * 60,
                _ => return Err(bad()),
            };
            (&trimmed[..at], factor)
        }
        _ => (trimmed, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("`{text}` is too long a time span"))
}

/// `FIRST[,SECOND]`; one value stands for both.
fn split_pair(text: &str) -> Result<(&str, &str), String> {
    let mut parts = text.split(',').map(str::trim);
    let first = parts.next().unwrap_or_default();
    let second = parts.next().unwrap_or(first);
    if parts.next().is_some() {
        return Err(format!("`{text}`: give one or two comma-separated values"));
    }
    Ok((first, second))
}

/// bcrypt costs `DB[,MEMORY]`.
fn parse_rounds(text: &str) -> Result<(u32, u32), String> {
    let one = |part: &str| -> Result<u32, String> {
        let rounds: u32 = part
            .parse()
            .map_err(|_| format!("`{part}` is not a number of bcrypt rounds"))?;
        if BCRYPT_ROUNDS.contains(&rounds) {
            Ok(rounds)
        } else if rounds > *BCRYPT_ROUNDS.end() && rounds <= 31 {
            // Seconds for one hash at this cost, from about 0.25 s at 12.
            let seconds = 0.25 * f64::from(1u32 << (rounds - 12));
            Err(format!(
                "bcrypt rounds {rounds} would make every cached login take about {} of \
                 CPU (each step doubles it; 12 takes about 0.25 s): use at most {}",
                describe_seconds(seconds),
                BCRYPT_ROUNDS.end()
            ))
        } else {
            Err(format!(
                "bcrypt rounds must be from {} to {}, not {rounds}",
                BCRYPT_ROUNDS.start(),
                BCRYPT_ROUNDS.end()
            ))
        }
    };
    let (db, memory) = split_pair(text)?;
    Ok((one(db)?, one(memory)?))
}

/// A number of seconds as an administrator reads it (`8 s`, `3 h`, `12 days`).
fn describe_seconds(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.0} h", s / 3600.0),
        s => format!("{:.0} days", s / 86_400.0),
    }
}

/// Timeouts `CONNECT[,TOTAL]` in (possibly fractional) seconds.
fn parse_timeouts(text: &str) -> Result<(Duration, Duration), String> {
    let one = |part: &str| -> Result<Duration, String> {
        let seconds: f64 = part
            .parse()
            .map_err(|_| format!("`{part}` is not a number of seconds"))?;
        if !seconds.is_finite() || seconds <= 0.0 {
            return Err(format!(
                "a timeout must be a positive number of seconds, not `{part}`"
            ));
        }
        Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{part}` is too long a timeout"))
    };
    let (connect, total) = split_pair(text)?;
    Ok((one(connect)?, one(total)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testutil::*;

    #[test]
    fn time_spans() {
        for (text, seconds) in [
            ("0", 0),
            ("90", 90),
            ("90s", 90),
            ("30m", 1800),
            ("1h", 3600),
            ("2d", 172800),
            ("1w", 604800),
            (" 5m ", 300),
        ] {
            assert_eq!(parse_span(text), Ok(seconds), "{text}");
        }
        for text in [
            "",
            "h",
            "-5",
            "-1h",
            "1.5h",
            "1y",
            "1H",
            "abc",
            "+5",
            "1 h",
            "99999999999999999999",
        ] {
            assert!(parse_span(text).is_err(), "{text}");
        }
        assert!(parse_span("-5").unwrap_err().contains("negative"));
        assert!(parse_span("1y").unwrap_err().contains("30m"));
    }

    #[test]
    fn bcrypt_rounds() {
        assert_eq!(parse_rounds("12,4"), Ok((12, 4)));
        assert_eq!(parse_rounds("10"), Ok((10, 10)));
        assert_eq!(parse_rounds(" 16 , 4 "), Ok((16, 4)));
        for bad in [
            "3", "32", "12,3", "x", "12,4,4", "", "12,", "17", "31", "12,31",
        ] {
            assert!(parse_rounds(bad).is_err(), "{bad}");
        }
        // Too high a cost says what it would cost, in words.
        let e = parse_rounds("31").unwrap_err();
        assert!(e.contains("about 36 h") && e.contains("at most 16"), "{e}");
        assert!(parse_rounds("17").unwrap_err().contains("about 8 s"));
        let c = ok(&["--cache-bcrypt-rounds", "8"]);
        assert_eq!((c.bcrypt_rounds_db, c.bcrypt_rounds_memory), (8, 8));
    }

    #[test]
    fn timeouts() {
        let s = Duration::from_secs;
        assert_eq!(parse_timeouts("5,10"), Ok((s(5), s(10))));
        assert_eq!(parse_timeouts("7"), Ok((s(7), s(7))));
        assert_eq!(
            parse_timeouts("0.25, 2"),
            Ok((Duration::from_millis(250), s(2)))
        );
        for bad in ["0", "-1", "x", "1,2,3", "inf", "NaN", "1,", "1e300"] {
            assert!(parse_timeouts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trusted_sockets_are_spelled_like_listen_addresses() {
        let list = TrustedSockets::parse("unix:/run/xcauth/prosody.sock, 127.0.0.1:23663 [::1]:1")
            .expect("list");
        assert_eq!(
            list.0,
            vec![
                ListenAddress::Unix(PathBuf::from("/run/xcauth/prosody.sock")),
                ListenAddress::Tcp("127.0.0.1:23663".parse().unwrap()),
                ListenAddress::Tcp("[::1]:1".parse().unwrap()),
            ]
        );
        assert_eq!(list.0[0].to_string(), "unix:/run/xcauth/prosody.sock");
        for bad in [
            "unix:relative",
            "localhost:1",
            "127.0.0.1",
            "generic=127.0.0.1:1",
        ] {
            assert!(TrustedSockets::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listen_specs_may_name_the_requests_served() {
        let all = parse_listen_one("generic=unix:/run/x.sock").expect("plain");
        assert_eq!(all.requests, RequestSet::ALL);
        let some = parse_listen_one("prosody:auth+isuser=127.0.0.1:1").expect("with requests");
        assert_eq!(some.protocol, Protocol::Generic);
        assert_eq!(some.requests.to_string(), "auth+isuser");
        let roster = crate::proto::Request::Roster {
            user: "a".into(),
            domain: "d".into(),
        };
        assert_eq!(some.requests.refuses(&roster), Some("roster"));
        assert_eq!(all.requests.refuses(&roster), None);
        let auth_only = parse_listen_one("generic:auth=unix:/run/x.sock").expect("auth only");
        assert_eq!(
            auth_only.requests.refuses(&crate::proto::Request::IsUser {
                user: "a".into(),
                domain: "d".into(),
            }),
            Some("isuser")
        );
        // Comma- or space-separated lists in the file keep working.
        let list = parse_listen_list("generic:auth=unix:/a, postfix=unix:/b").expect("list");
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].requests, RequestSet::ALL);
        for bad in [
            "generic:=unix:/a",
            "generic:auth+setpass=unix:/a",
            "generic:Auth=unix:/a",
            "postfix:auth=unix:/a",
            "saslauthd:isuser+roster=unix:/a",
        ] {
            assert!(parse_listen_one(bad).is_err(), "{bad}");
        }
        assert!(parse_listen_one("ejabberd:isuser=unix:/a").is_ok());
    }
}
