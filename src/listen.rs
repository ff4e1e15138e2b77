//! Where connections come from (SPEC §3): systemd socket activation, a
//! socket inherited on standard input (inetd "wait" and "nowait"), and our
//! own `--listen` sockets. Everything here is told apart by asking the
//! kernel about the descriptor, never by guessing from the environment.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{
    getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage,
};
use tracing::{info, warn};

use crate::config::{ListenAddress, ListenSpec, SocketOptions};
use crate::proto::Protocol;

/// A listening socket, ready for the reactor.
#[derive(Debug)]
pub enum Listener {
    /// TCP, IPv4 or IPv6.
    Tcp(tokio::net::TcpListener),
    /// A Unix stream socket.
    Unix(tokio::net::UnixListener),
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

/// Turns an inherited listening descriptor into a reactor listener.
pub fn adopt_listening(fd: OwnedFd, family: AddressFamily) -> io::Result<Listener> {
    if family == AddressFamily::Unix {
        let std = std::os::unix::net::UnixListener::from(fd);
        std.set_nonblocking(true)?;
        Ok(Listener::Unix(tokio::net::UnixListener::from_std(std)?))
    } else {
        let std = std::net::TcpListener::from(fd);
        std.set_nonblocking(true)?;
        Ok(Listener::Tcp(tokio::net::TcpListener::from_std(std)?))
    }
}

/// Sockets passed by systemd (`LISTEN_PID`, `LISTEN_FDS`,
/// `LISTEN_FDNAMES`). A descriptor named `ejabberd`, `prosody`, `generic`,
/// `saslauthd` or `postfix` speaks that protocol; others speak `fallback`
/// (`-t`). Empty when this process was not socket-activated.
pub fn systemd_listeners(fallback: Protocol) -> io::Result<Vec<Bound>> {
    let mut fds = listenfd::ListenFd::from_env();
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut bound = Vec::new();
    for idx in 0..fds.len() {
        let name = names.get(idx).cloned().unwrap_or_default();
        let protocol = Protocol::from_name(&name).unwrap_or(fallback);
        // listenfd checks family and type but not that the socket listens:
        // a unit with Accept=yes hands over a connection instead.
        let listener = match fds.take_tcp_listener(idx) {
            Ok(Some(l)) if is_listening(&l) => {
                l.set_nonblocking(true)?;
                Listener::Tcp(tokio::net::TcpListener::from_std(l)?)
            }
            _ => match fds.take_unix_listener(idx) {
                Ok(Some(l)) if is_listening(&l) => {
                    l.set_nonblocking(true)?;
                    Listener::Unix(tokio::net::UnixListener::from_std(l)?)
                }
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
        });
    }
    Ok(bound)
}

/// Whether `fd` is a socket in the listening state.
fn is_listening(fd: &impl AsFd) -> bool {
    getsockopt(fd, sockopt::AcceptConn).unwrap_or(false)
}

/// Binds one `--listen` socket. A stale Unix socket file is replaced; any
/// other file at that path is an error.
pub fn bind(spec: &ListenSpec, options: &SocketOptions) -> io::Result<Bound> {
    match &spec.address {
        ListenAddress::Tcp(addr) => {
            let std = std::net::TcpListener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("listen on {addr}: {e}")))?;
            std.set_nonblocking(true)?;
            let local = std.local_addr()?;
            if !local.ip().is_loopback() {
                warn!("{} listens on {local}, reachable from other hosts: anyone who can connect can test passwords", spec.protocol.name());
            }
            Ok(Bound {
                protocol: spec.protocol,
                listener: Listener::Tcp(tokio::net::TcpListener::from_std(std)?),
                label: local.to_string(),
            })
        }
        ListenAddress::Unix(path) => {
            remove_stale_socket(path)?;
            let std = std::os::unix::net::UnixListener::bind(path).map_err(|e| {
                io::Error::new(e.kind(), format!("listen on {}: {e}", path.display()))
            })?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(options.mode))?;
            set_owner(path, options)?;
            std.set_nonblocking(true)?;
            info!("Unix socket {} mode {:04o}", path.display(), options.mode);
            Ok(Bound {
                protocol: spec.protocol,
                listener: Listener::Unix(tokio::net::UnixListener::from_std(std)?),
                label: format!("unix:{}", path.display()),
            })
        }
    }
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
    use nix::unistd::{chown, Gid, Group, Uid, User};
    let uid = match &options.owner {
        None => None,
        Some(name) => Some(match name.parse::<u32>() {
            Ok(n) => Uid::from_raw(n),
            Err(_) => {
                User::from_name(name)?
                    .ok_or_else(|| io::Error::other(format!("socket-owner: no user {name:?}")))?
                    .uid
            }
        }),
    };
    let gid = match &options.group {
        None => None,
        Some(name) => Some(match name.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => {
                Group::from_name(name)?
                    .ok_or_else(|| io::Error::other(format!("socket-group: no group {name:?}")))?
                    .gid
            }
        }),
    };
    if uid.is_some() || gid.is_some() {
        chown(path, uid, gid)?;
    }
    Ok(())
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
    fn stale_socket_is_replaced_but_files_are_not() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("mux");
        drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
        let spec = ListenSpec {
            protocol: Protocol::Saslauthd,
            address: ListenAddress::Unix(path.clone()),
        };
        let options = SocketOptions::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let _guard = rt.enter();
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
