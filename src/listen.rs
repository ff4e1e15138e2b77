//! Where connections come from (SPEC §3): systemd socket activation, a
//! socket inherited on standard input (inetd "wait" and "nowait"), and our
//! own `--listen` sockets. Everything here is told apart by asking the
//! kernel about the descriptor, never by guessing from the environment.
//!
//! Start-up collects all of them into [`Sockets`] before the async runtime
//! (or any other thread) exists: the systemd variables are removed from the
//! environment, which is only sound while the process is single-threaded.
//! The library's `run` then serves what it is given.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{
    getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage,
};
use tracing::{info, warn};

use crate::config::{ListenAddress, ListenSpec, RequestSet, SocketOptions};
use crate::proto::Protocol;

/// A listening socket, bound or adopted, not yet handed to a reactor.
#[derive(Debug)]
pub enum Listener {
    /// TCP, IPv4 or IPv6.
    Tcp(std::net::TcpListener),
    /// A Unix stream socket.
    Unix(std::os::unix::net::UnixListener),
}

/// Everything a service serves, collected at start-up.
#[derive(Debug)]
pub enum Sockets {
    /// Standard input and output: the classic helper of ejabberd and
    /// Prosody (a pipe, a terminal or a file on descriptor 0).
    Stdio,
    /// A connection inherited on standard input (inetd "nowait"): served,
    /// then the process ends.
    Connected {
        /// The connection.
        connection: Connected,
        /// Whether its client is believed when it sends a client's address
        /// (its local address is a `--trusted-socket`).
        trusted: bool,
    },
    /// Listening sockets (systemd's, our own `--listen` ones, or one
    /// inherited on standard input): accepted on until stopped.
    Listening(Vec<Bound>),
}

/// A listener and the protocol spoken on it.
#[derive(Debug)]
pub struct Bound {
    /// Protocol of every connection accepted here.
    pub protocol: Protocol,
    /// The socket.
    pub listener: Listener,
    /// For log lines: address or systemd name.
    pub label: String,
    /// Which requests are answered here.
    pub requests: RequestSet,
    /// Whether clients here are believed when they send a client's address
    /// (its local address is a `--trusted-socket`).
    pub trusted: bool,
}

/// A connected stream handed to us on standard input.
#[derive(Debug)]
pub enum Connected {
    /// TCP connection (inetd "nowait").
    Tcp(std::net::TcpStream),
    /// Unix stream connection.
    Unix(std::os::unix::net::UnixStream),
}

/// What file descriptor 0 turned out to be.
#[derive(Debug)]
pub enum Stdin {
    /// A pipe, terminal or file: the classic stdin/stdout helper.
    Stdio,
    /// A connected socket: serve it, then exit.
    Connected(Connected),
    /// A listening socket: accept on it until stopped.
    Listening(std::os::fd::OwnedFd, AddressFamily),
}

/// Looks at descriptor 0 through a duplicate (so stdin itself is left
/// alone) and says which kind it is.
pub fn classify_stdin() -> io::Result<Stdin> {
    let fd = io::stdin().as_fd().try_clone_to_owned()?;
    classify(fd)
}

/// Points descriptor 0 at `/dev/null` (after its listening socket was
/// adopted through a duplicate), so closing our listener really closes the
/// socket.
pub fn release_stdin() -> io::Result<()> {
    let null = std::fs::File::open("/dev/null")?;
    nix::unistd::dup2(null.as_raw_fd(), 0)?;
    Ok(())
}

fn classify(fd: OwnedFd) -> io::Result<Stdin> {
    let kind = match getsockopt(&fd, sockopt::SockType) {
        Ok(kind) => kind,
        // Not a socket: pipe, terminal, /dev/null or a file.
        Err(Errno::ENOTSOCK) => return Ok(Stdin::Stdio),
        Err(e) => return Err(e.into()),
    };
    if kind != SockType::Stream {
        return Err(io::Error::other(format!(
            "standard input is a {kind:?} socket; only stream sockets are supported"
        )));
    }
    let family = getsockname::<SockaddrStorage>(fd.as_raw_fd())?
        .family()
        .ok_or_else(|| io::Error::other("standard input socket has no address family"))?;
    let listening = getsockopt(&fd, sockopt::AcceptConn)?;
    Ok(match (family, listening) {
        (AddressFamily::Inet | AddressFamily::Inet6 | AddressFamily::Unix, true) => {
            Stdin::Listening(fd, family)
        }
        (AddressFamily::Inet | AddressFamily::Inet6, false) => {
            Stdin::Connected(Connected::Tcp(std::net::TcpStream::from(fd)))
        }
        (AddressFamily::Unix, false) => {
            Stdin::Connected(Connected::Unix(std::os::unix::net::UnixStream::from(fd)))
        }
        (other, _) => {
            return Err(io::Error::other(format!(
                "standard input is a socket of family {other:?}; only TCP and Unix are supported"
            )))
        }
    })
}

/// Takes an inherited listening descriptor as a listener.
pub fn adopt_listening(fd: OwnedFd, family: AddressFamily) -> Listener {
    if family == AddressFamily::Unix {
        Listener::Unix(std::os::unix::net::UnixListener::from(fd))
    } else {
        Listener::Tcp(std::net::TcpListener::from(fd))
    }
}

/// The environment variables of systemd's socket-activation protocol
/// (sd_listen_fds(3)).
const SYSTEMD_VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// Descriptors systemd passed to this process (from 3 on), with their
/// names; none when it did not.
pub struct SystemdFds {
    fds: listenfd::ListenFd,
    names: Vec<String>,
}

impl std::fmt::Debug for SystemdFds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemdFds")
            .field("count", &self.fds.len())
            .field("names", &self.names)
            .finish()
    }
}

/// Reads systemd's socket-activation variables the way sd_listen_fds(3)
/// does, and removes them from the environment so that no child process
/// (ejabberdctl) mistakes our descriptors for its own.
///
/// `LISTEN_FDS` counts only when `LISTEN_PID` is present and is this
/// process's id: a variable inherited from a socket-activated parent, or
/// set for another process, is ignored (and removed all the same).
///
/// Call this first thing in `main`, before any other thread exists:
/// changing the environment while another thread may read it is undefined
/// behaviour (glibc's `getenv` does not synchronise with `unsetenv`).
pub fn take_systemd_env() -> io::Result<SystemdFds> {
    let read = |name| std::env::var(name).ok();
    let count = systemd_count(
        read("LISTEN_PID").as_deref(),
        read("LISTEN_FDS").as_deref(),
        std::process::id(),
    );
    let names: Vec<String> = read("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    let fds = match count {
        Ok(Some(_)) => {
            // listenfd reads LISTEN_PID and LISTEN_FDS again (they are ours)
            // and adopts descriptors 3.. without unsafe code of our own.
            // Its extension LISTEN_FDS_FIRST_FD is not systemd's protocol.
            std::env::remove_var("LISTEN_FDS_FIRST_FD");
            listenfd::ListenFd::from_env()
        }
        _ => listenfd::ListenFd::empty(),
    };
    for name in SYSTEMD_VARS {
        std::env::remove_var(name);
    }
    match count {
        Ok(Some(n)) if fds.len() != n => Err(io::Error::other(format!(
            "LISTEN_FDS={n} but {} descriptors were handed over",
            fds.len()
        ))),
        Ok(Some(_)) => Ok(SystemdFds { fds, names }),
        Ok(None) => Ok(SystemdFds {
            fds,
            names: Vec::new(),
        }),
        Err(e) => Err(io::Error::other(e)),
    }
}

/// How many descriptors systemd passed, given `LISTEN_PID` and
/// `LISTEN_FDS` and our process id: `None` when they are not meant for us.
fn systemd_count(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    our_pid: u32,
) -> Result<Option<usize>, String> {
    // Parsed strictly, as listenfd (which adopts the descriptors) does.
    let ours = listen_pid.and_then(|p| p.parse::<u32>().ok()) == Some(our_pid);
    match listen_fds {
        Some(count) if ours => count
            .parse::<usize>()
            .map(|n| (n > 0).then_some(n))
            .map_err(|_| format!("LISTEN_FDS={count:?} is not a number of descriptors")),
        _ => Ok(None),
    }
}

impl SystemdFds {
    /// How many descriptors systemd passed.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// Whether systemd passed no descriptor.
    pub fn is_empty(&self) -> bool {
        self.fds.len() == 0
    }

    /// The passed descriptors as listeners. A descriptor named `ejabberd`,
    /// `prosody`, `generic`, `saslauthd`, `postfix` or `dovecot` speaks that
    /// protocol;
    /// others speak `fallback` (`-t`). Every one must be a listening stream
    /// socket.
    pub fn listeners(mut self, fallback: Protocol) -> io::Result<Vec<Bound>> {
        let mut bound = Vec::new();
        for idx in 0..self.fds.len() {
            let name = self.names.get(idx).cloned().unwrap_or_default();
            let protocol = Protocol::from_name(&name).unwrap_or(fallback);
            // listenfd checks family and type but not that the socket
            // listens: a unit with Accept=yes hands over a connection instead.
            let listener = match self.fds.take_tcp_listener(idx) {
                Ok(Some(l)) if is_listening(&l) => Listener::Tcp(l),
                _ => match self.fds.take_unix_listener(idx) {
                    Ok(Some(l)) if is_listening(&l) => Listener::Unix(l),
                    _ => {
                        return Err(io::Error::other(format!(
                            "systemd descriptor {} ({name:?}) is not a listening stream socket (Accept=no is required)",
                            idx + 3
                        )))
                    }
                },
            };
            let label = if name.is_empty() {
                format!("systemd fd {}", idx + 3)
            } else {
                format!("systemd socket {name}")
            };
            bound.push(Bound {
                protocol,
                listener,
                label,
                requests: RequestSet::ALL,
                trusted: false,
            });
        }
        Ok(bound)
    }
}

impl Listener {
    /// The address the socket is bound to, as `--listen` spells it; `None`
    /// for an unnamed or abstract Unix socket.
    pub fn local_address(&self) -> Option<ListenAddress> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok().map(ListenAddress::Tcp),
            Listener::Unix(l) => unix_path(l.local_addr().ok()),
        }
    }
}

impl Connected {
    /// The local address of the connection: that of the socket it was
    /// accepted on.
    pub fn local_address(&self) -> Option<ListenAddress> {
        match self {
            Connected::Tcp(s) => s.local_addr().ok().map(ListenAddress::Tcp),
            Connected::Unix(s) => unix_path(s.local_addr().ok()),
        }
    }
}

fn unix_path(addr: Option<std::os::unix::net::SocketAddr>) -> Option<ListenAddress> {
    addr.and_then(|a| {
        a.as_pathname()
            .map(|p| ListenAddress::Unix(p.to_path_buf()))
    })
}

/// Marks the sockets in `bound` whose local address is one of `trusted`
/// (compared as socket addresses or as Unix paths), and says which entries
/// of `trusted` matched none of them.
pub fn mark_trusted<'a>(
    bound: &mut [Bound],
    trusted: &'a [ListenAddress],
) -> Vec<&'a ListenAddress> {
    let mut matched = vec![false; trusted.len()];
    for socket in bound.iter_mut() {
        let Some(local) = socket.listener.local_address() else {
            continue;
        };
        for (entry, seen) in trusted.iter().zip(matched.iter_mut()) {
            if *entry == local {
                socket.trusted = true;
                *seen = true;
            }
        }
    }
    trusted
        .iter()
        .zip(matched)
        .filter_map(|(entry, seen)| (!seen).then_some(entry))
        .collect()
}

/// Whether `fd` is a socket in the listening state.
fn is_listening(fd: &impl AsFd) -> bool {
    getsockopt(fd, sockopt::AcceptConn).unwrap_or(false)
}

/// Descriptors kept for everything but client connections: the listeners,
/// back-end connections (at most 64 in flight and 16 idle), SQLite, log
/// files, `ejabberdctl` pipes and metrics clients.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// Makes sure the process may open a descriptor for every connection it
/// will accept: `max_connections` on each of `listeners` sockets, plus
/// [`RESERVED_DESCRIPTORS`]. Raises the soft `RLIMIT_NOFILE` as far as
/// needed (up to the hard limit); when even the hard limit is too low,
/// says why, so that start-up stops instead of failing logins later with
/// "Too many open files". Returns the soft limit now in force.
pub fn fit_descriptor_limit(listeners: usize, max_connections: usize) -> Result<u64, String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let needed = (listeners as u64)
        .saturating_mul(max_connections as u64)
        .saturating_add(RESERVED_DESCRIPTORS);
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| format!("cannot read the descriptor limit (RLIMIT_NOFILE): {e}"))?;
    if needed <= soft {
        return Ok(soft);
    }
    if needed > hard {
        return Err(format!(
            "max-connections {max_connections} on {listeners} socket(s) needs {needed} file \
             descriptors, but the hard limit (RLIMIT_NOFILE) is {hard}: lower max-connections, \
             or raise the limit (LimitNOFILE= in the systemd unit, ulimit -Hn)"
        ));
    }
    setrlimit(Resource::RLIMIT_NOFILE, needed, hard).map_err(|e| {
        format!("cannot raise the descriptor limit (RLIMIT_NOFILE) from {soft} to {needed}: {e}")
    })?;
    info!("descriptor limit raised from {soft} to {needed} (hard limit {hard})");
    Ok(needed)
}

/// Binds one `--listen` socket. A stale Unix socket file is replaced; any
/// other file at that path is an error.
pub fn bind(spec: &ListenSpec, options: &SocketOptions) -> io::Result<Bound> {
    match &spec.address {
        ListenAddress::Tcp(addr) => {
            let listener = std::net::TcpListener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("listen on {addr}: {e}")))?;
            let local = listener.local_addr()?;
            if !local.ip().is_loopback() {
                warn!("{} listens on {local}, reachable from other hosts: anyone who can connect can test passwords", spec.protocol.name());
            }
            Ok(Bound {
                protocol: spec.protocol,
                listener: Listener::Tcp(listener),
                label: local.to_string(),
                requests: spec.requests,
                trusted: false,
            })
        }
        ListenAddress::Unix(path) => {
            check_directory(path)?;
            remove_stale_socket(path)?;
            let listener = bind_with_mode(path, options.mode).map_err(|e| {
                io::Error::new(e.kind(), format!("listen on {}: {e}", path.display()))
            })?;
            set_owner(path, options).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("owner of Unix socket {}: {e}", path.display()),
                )
            })?;
            info!("Unix socket {} mode {:04o}", path.display(), options.mode);
            Ok(Bound {
                protocol: spec.protocol,
                listener: Listener::Unix(listener),
                label: format!("unix:{}", path.display()),
                requests: spec.requests,
                trusted: false,
            })
        }
    }
}

/// Refuses a socket path with a directory on the way to it (the parent,
/// and every ancestor up to `/`, as given and with symlinks resolved) that
/// another user could change: one writable by all users without the
/// sticky bit, or one owned by neither root nor the user we run as. Its
/// owner, or anyone who may write to it, could swap the directory below
/// for one of their own, put their socket where ours should be (and read
/// the passwords sent to it) or plant a symlink for us to follow.
fn check_directory(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let resolved = std::fs::canonicalize(dir).map_err(|e| {
        io::Error::new(e.kind(), format!("socket directory {}: {e}", dir.display()))
    })?;
    let me = nix::unistd::geteuid().as_raw();
    for ancestor in dir.ancestors().chain(resolved.ancestors()) {
        if ancestor.as_os_str().is_empty() {
            continue;
        }
        let meta = std::fs::metadata(ancestor).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("socket directory {}: {e}", ancestor.display()),
            )
        })?;
        if let Some(why) = unsafe_directory(&meta, me) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "refusing Unix socket {}: the directory {} {why}",
                    path.display(),
                    ancestor.display(),
                ),
            ));
        }
    }
    Ok(())
}

/// Why a directory on the way to a socket is unsafe, if it is.
fn unsafe_directory(meta: &std::fs::Metadata, me: u32) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.permissions().mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Some(format!(
            "is writable by all users (mode {:04o}) without the sticky bit",
            mode & 0o7777
        ));
    }
    if meta.uid() != 0 && meta.uid() != me {
        return Some(format!(
            "belongs to uid {}, neither root nor the user xcauth runs as (uid {me})",
            meta.uid()
        ));
    }
    None
}

/// Binds a Unix socket that has `mode` from the moment it exists: the
/// process umask is set around bind(2), so there is no window in which
/// the socket is reachable with a wider mode, as there would be with a
/// chmod after it. (Start-up binds while the only other thread is the log
/// writer, whose files already exist.)
fn bind_with_mode(path: &Path, mode: u32) -> io::Result<std::os::unix::net::UnixListener> {
    use nix::sys::stat::{umask, Mode};
    let narrow = Mode::from_bits_truncate(!mode & 0o777);
    let previous = umask(narrow);
    let bound = std::os::unix::net::UnixListener::bind(path);
    umask(previous);
    bound
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; not replacing it",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_owner(path: &Path, options: &SocketOptions) -> io::Result<()> {
    use nix::fcntl::AtFlags;
    use nix::unistd::{fchownat, Gid, Group, Uid, User};
    let uid = options
        .owner
        .as_deref()
        .map(|name| {
            resolve_id(name, "socket-owner: no user", Uid::from_raw, |n| {
                Ok(User::from_name(n)?.map(|u| u.uid))
            })
        })
        .transpose()?;
    let gid = options
        .group
        .as_deref()
        .map(|name| {
            resolve_id(name, "socket-group: no group", Gid::from_raw, |n| {
                Ok(Group::from_name(n)?.map(|g| g.gid))
            })
        })
        .transpose()?;
    if uid.is_some() || gid.is_some() {
        // Never through a symlink: whatever is at the path now is changed,
        // not what it might point to.
        fchownat(None, path, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    }
    Ok(())
}

/// A user or group id given as a number, or looked up by `name`; a name
/// that does not exist is an error saying `missing` and the name.
fn resolve_id<T>(
    name: &str,
    missing: &str,
    from_raw: fn(u32) -> T,
    lookup: impl FnOnce(&str) -> nix::Result<Option<T>>,
) -> io::Result<T> {
    match name.parse::<u32>() {
        Ok(n) => Ok(from_raw(n)),
        Err(_) => lookup(name)?.ok_or_else(|| io::Error::other(format!("{missing} {name:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_and_files_are_stdio() {
        let (reader, _writer) = std::io::pipe().expect("pipe");
        assert!(matches!(classify(OwnedFd::from(reader)), Ok(Stdin::Stdio)));
        let file = tempfile::tempfile().expect("file");
        assert!(matches!(classify(OwnedFd::from(file)), Ok(Stdin::Stdio)));
    }

    #[test]
    fn sockets_are_told_apart() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = std::net::TcpStream::connect(addr).expect("connect");
        assert!(matches!(
            classify(OwnedFd::from(listener)),
            Ok(Stdin::Listening(_, AddressFamily::Inet))
        ));
        assert!(matches!(
            classify(OwnedFd::from(client)),
            Ok(Stdin::Connected(Connected::Tcp(_)))
        ));
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("s");
        let unix = std::os::unix::net::UnixListener::bind(&path).expect("bind unix");
        let unix_client = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        assert!(matches!(
            classify(OwnedFd::from(unix)),
            Ok(Stdin::Listening(_, AddressFamily::Unix))
        ));
        assert!(matches!(
            classify(OwnedFd::from(unix_client)),
            Ok(Stdin::Connected(Connected::Unix(_)))
        ));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        assert!(classify(OwnedFd::from(udp)).is_err());
    }

    #[test]
    fn systemd_variables_count_only_for_our_pid() {
        assert_eq!(systemd_count(None, None, 42), Ok(None));
        // A stray LISTEN_FDS without LISTEN_PID, e.g. inherited from a
        // socket-activated parent, is not ours.
        assert_eq!(systemd_count(None, Some("1"), 42), Ok(None));
        assert_eq!(systemd_count(Some(""), Some("1"), 42), Ok(None));
        assert_eq!(systemd_count(Some("41"), Some("1"), 42), Ok(None));
        assert_eq!(systemd_count(Some("x"), Some("1"), 42), Ok(None));
        assert_eq!(systemd_count(Some("42"), None, 42), Ok(None));
        assert_eq!(systemd_count(Some("42"), Some("0"), 42), Ok(None));
        assert_eq!(systemd_count(Some("42"), Some("3"), 42), Ok(Some(3)));
        assert!(systemd_count(Some("42"), Some("three"), 42).is_err());
        // Not ours: not even looked at.
        assert_eq!(systemd_count(Some("41"), Some("three"), 42), Ok(None));
    }

    #[test]
    fn owners_and_groups_by_number_or_name() {
        use nix::unistd::{Uid, User};
        let by_number = resolve_id("0", "no user", Uid::from_raw, |_| {
            panic!("a number is not looked up")
        });
        assert_eq!(by_number.expect("uid"), Uid::from_raw(0));
        let by_name = resolve_id("root", "no user", Uid::from_raw, |n| {
            Ok(User::from_name(n)?.map(|u| u.uid))
        });
        assert_eq!(by_name.expect("root exists"), Uid::from_raw(0));
        let missing = resolve_id(
            "no-such-user-xc",
            "socket-owner: no user",
            Uid::from_raw,
            |_| Ok(None),
        );
        let message = missing.expect_err("missing user").to_string();
        assert_eq!(message, "socket-owner: no user \"no-such-user-xc\"");
    }

    fn unix_spec(path: &Path) -> ListenSpec {
        ListenSpec {
            protocol: Protocol::Generic,
            address: ListenAddress::Unix(path.to_path_buf()),
            requests: RequestSet::ALL,
        }
    }

    fn dir_with_mode(mode: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).expect("chmod");
        dir
    }

    #[test]
    fn the_socket_has_its_mode_from_bind_on() {
        // 0666 is wider than the usual umask (022) allows: it can only come
        // from the umask set for bind, and the process umask is back after.
        for mode in [0o600, 0o660, 0o666] {
            let dir = tempfile::tempdir().expect("dir");
            let path = dir.path().join("s");
            let options = SocketOptions {
                mode,
                ..SocketOptions::default()
            };
            let before = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
            let bound = bind(&unix_spec(&path), &options).expect("bind");
            let after = nix::sys::stat::umask(before);
            assert_eq!(after.bits(), 0o022, "umask restored");
            let meta = std::fs::symlink_metadata(&path).expect("socket");
            assert!(meta.file_type().is_socket());
            assert_eq!(meta.permissions().mode() & 0o7777, mode);
            drop(bound);
        }
    }

    #[test]
    fn a_directory_anyone_may_write_without_sticky_bit_is_refused() {
        let open = dir_with_mode(0o777);
        let path = open.path().join("s");
        let error = bind(&unix_spec(&path), &SocketOptions::default())
            .expect_err("0777 directory refused")
            .to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("sticky"), "{error}");
        assert!(!path.exists(), "nothing was created");
        // Like /tmp: writable by all, but sticky.
        let sticky = dir_with_mode(0o1777);
        let path = sticky.path().join("s");
        bind(&unix_spec(&path), &SocketOptions::default()).expect("1777 directory accepted");
        // Group-writable or private directories are fine.
        let private = dir_with_mode(0o750);
        bind(
            &unix_spec(&private.path().join("s")),
            &SocketOptions::default(),
        )
        .expect("0750 directory accepted");
    }

    #[test]
    fn a_symlink_at_the_socket_path_is_not_followed() {
        let dir = tempfile::tempdir().expect("dir");
        let target = dir.path().join("target");
        std::fs::write(&target, b"precious").expect("target");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let path = dir.path().join("s");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        let options = SocketOptions {
            mode: 0o666,
            owner: Some(nix::unistd::getuid().to_string()),
            ..SocketOptions::default()
        };
        let error = bind(&unix_spec(&path), &options).expect_err("symlink refused");
        assert!(error.to_string().contains("not a socket"), "{error}");
        assert!(std::fs::symlink_metadata(&path)
            .expect("link")
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&target).expect("target"), b"precious");
        let mode = std::fs::metadata(&target)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "the target's mode is untouched");
    }

    #[test]
    fn owner_change_does_not_follow_a_symlink() {
        // A symlink swapped in after bind: the owner change applies to the
        // link itself (lchown), never to the file it points to.
        let dir = tempfile::tempdir().expect("dir");
        let target = dir.path().join("target");
        std::fs::write(&target, b"x").expect("target");
        let link = dir.path().join("s");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let me = nix::unistd::getuid();
        let group = nix::unistd::getgid();
        let options = SocketOptions {
            owner: Some(me.to_string()),
            group: Some(group.to_string()),
            ..SocketOptions::default()
        };
        set_owner(&link, &options).expect("lchown of our own link");
        if me.is_root() {
            // As root the change can be seen: the link gets the new owner,
            // the target keeps root's.
            use std::os::unix::fs::MetadataExt;
            let nobody = SocketOptions {
                owner: Some("65534".into()),
                ..SocketOptions::default()
            };
            set_owner(&link, &nobody).expect("lchown");
            assert_eq!(std::fs::symlink_metadata(&link).expect("link").uid(), 65534);
            assert_eq!(std::fs::metadata(&target).expect("target").uid(), 0);
        }
        // Not root in general: the only owner change we may make is to
        // ourselves; what matters is that it went to the link. Removing the
        // target makes a followed change fail.
        std::fs::remove_file(&target).expect("rm target");
        set_owner(&link, &options).expect("a dangling link is changed, not followed");
    }

    #[test]
    fn trusted_sockets_are_matched_by_their_bound_address() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("prosody.sock");
        let unix = bind(&unix_spec(&path), &SocketOptions::default()).expect("bind unix");
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let tcp_addr = tcp.local_addr().expect("addr");
        let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let bound = |listener| Bound {
            protocol: Protocol::Generic,
            listener,
            label: "test".into(),
            requests: RequestSet::ALL,
            trusted: false,
        };
        let mut sockets = vec![unix, bound(Listener::Tcp(tcp)), bound(Listener::Tcp(other))];
        let typo = ListenAddress::Unix(dir.path().join("prosody.sok"));
        let trusted = vec![
            // The same path, spelled with a doubled slash.
            ListenAddress::Unix(std::path::PathBuf::from(format!(
                "{}//prosody.sock",
                dir.path().display()
            ))),
            ListenAddress::Tcp(tcp_addr),
            typo.clone(),
        ];
        let unmatched = mark_trusted(&mut sockets, &trusted);
        assert_eq!(unmatched, vec![&typo]);
        let marks: Vec<bool> = sockets.iter().map(|s| s.trusted).collect();
        assert_eq!(marks, [true, true, false]);
    }

    #[test]
    fn stale_socket_is_replaced_but_files_are_not() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("mux");
        drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
        let spec = ListenSpec {
            protocol: Protocol::Saslauthd,
            address: ListenAddress::Unix(path.clone()),
            requests: RequestSet::ALL,
        };
        let options = SocketOptions::default();
        let bound = bind(&spec, &options).expect("rebind over stale socket");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        drop(bound);
        std::fs::remove_file(&path).expect("rm");
        std::fs::write(&path, b"data").expect("file");
        assert!(
            bind(&spec, &options).is_err(),
            "a regular file is not replaced"
        );
    }
}
