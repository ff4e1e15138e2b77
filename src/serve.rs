//! Transports: the per-stream loop that reads bytes, decodes requests, has
//! them answered (concurrently, answered in order) and writes the replies;
//! standard input/output; and accept loops for listening sockets with a
//! connection limit and graceful shutdown.

mod origin;
pub use origin::Origin;

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::RequestSet;
use crate::listen::{Bound, Listener};
use crate::proto::{Codec, CodecOptions, Decoded, Protocol, Reply, Request};
use crate::verify::Verifier;

/// Requests of one stream worked on at the same time; past this the stream
/// is not read until answers have gone out (back-pressure on the peer).
pub const MAX_IN_FLIGHT: usize = 256;

/// A request started but not finished must be complete within this time,
/// so a peer that sends half a frame and goes silent is dropped.
pub const PARTIAL_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes one stream may hold before it stops reading and starting
/// requests until answers have drained to the peer: requests read but not
/// yet started, answers finished but not yet written. A `roster` answer can
/// be large; with [`MAX_ROSTERS_IN_FLIGHT`] this bounds a stream's memory
/// whatever its peer pipelines (above every codec's largest frame, so a
/// whole request always fits).
pub const STREAM_BYTE_BUDGET: usize = 1024 * 1024;

/// `roster` requests of one stream worked on at the same time. Their
/// answers' sizes are known only once they are made, so the byte budget
/// alone would let [`MAX_IN_FLIGHT`] of them be made at once.
pub const MAX_ROSTERS_IN_FLIGHT: usize = 4;

/// A peer that has not taken any of our answer for this long is closed
/// (`write-timeout`).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 16 * 1024;

/// What a finished request hands back: the reply, the bytes it holds
/// (counted in the stream's budget until written) and whether it was a
/// roster request.
struct Answer {
    reply: Reply,
    bytes: usize,
    roster: bool,
}

type Pending = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// Bytes a reply holds until it is encoded and written.
fn reply_bytes(reply: &Reply) -> usize {
    // The enum itself, plus its text.
    std::mem::size_of::<Reply>()
        + match reply {
            Reply::Roster(text) | Reply::Invalid(text) => text.len(),
            _ => 0,
        }
}

/// Limits for one stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamLimits {
    /// Close after this long without any request (sockets only; a server
    /// that spawned us on stdin may be quiet for days).
    pub idle: Option<Duration>,
    /// Close when a partial request is not completed within this time.
    pub partial: Option<Duration>,
    /// Close when the peer takes none of our answer for this long.
    pub write: Option<Duration>,
}

impl StreamLimits {
    /// The limits used for socket connections.
    pub fn socket(idle: Duration, write: Duration) -> Self {
        StreamLimits {
            idle: Some(idle),
            partial: Some(PARTIAL_REQUEST_TIMEOUT),
            write: Some(write),
        }
    }

    /// The limits of standard input and output: no silence limit (a
    /// server may be quiet for days), but a write timeout.
    pub fn stdio(write: Duration) -> Self {
        StreamLimits {
            write: Some(write),
            ..StreamLimits::default()
        }
    }
}

/// What one stream holds, for its byte budget.
#[derive(Default)]
struct Budget {
    /// Bytes of answers finished but not yet encoded (set by the request
    /// futures as they finish).
    finished: Arc<AtomicUsize>,
    /// Roster requests started and not yet answered.
    rosters: usize,
    /// Over budget when last looked (logged once per crossing).
    over: bool,
}

impl Budget {
    /// Whether a new request may start, given what is buffered.
    fn has_room(&self, input: &BytesMut, output: &BytesMut) -> bool {
        input.len() + output.len() + self.finished.load(Ordering::Relaxed) < STREAM_BYTE_BUDGET
    }
}

/// Serves one stream until end of input, `quit`/`exit`, ejabberd's
/// length-0 frame, a limit, `shutdown` or an I/O error. Answers go out in
/// request order; after `shutdown` no new request is read, but those
/// already read are answered.
pub async fn serve_stream<R, W>(
    mut reader: R,
    mut writer: W,
    mut codec: Box<dyn Codec>,
    verifier: Arc<Verifier>,
    limits: StreamLimits,
    served: RequestSet,
    shutdown: CancellationToken,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut output = BytesMut::with_capacity(READ_CHUNK);
    let mut pending: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut budget = Budget::default();
    // A request decoded but not started: a roster request while
    // MAX_ROSTERS_IN_FLIGHT are being made.
    let mut waiting: Option<Request> = None;
    let mut reading = true;
    let mut last_progress = Instant::now();
    let starter = Starter {
        verifier: &verifier,
        served,
    };
    loop {
        // Turn every whole request already read into work. Stopping at a
        // limit may leave whole requests in `input`: they must be decoded
        // before waiting for more bytes, which may never come.
        let mut buffered = false;
        while reading {
            if pending.len() >= MAX_IN_FLIGHT || !budget.has_room(&input, &output) {
                buffered = true;
                break;
            }
            let request = match waiting.take() {
                Some(request) => request,
                None => match codec.decode(&mut input) {
                    Decoded::NeedMore => break,
                    Decoded::Request(request) => request,
                    Decoded::End => {
                        reading = false;
                        break;
                    }
                },
            };
            if matches!(request, Request::Roster { .. }) && budget.rosters >= MAX_ROSTERS_IN_FLIGHT
            {
                waiting = Some(request);
                buffered = true;
                break;
            }
            if !starter.start(&mut pending, &mut budget, request) {
                reading = false;
            }
        }
        // Everything already answered goes out in one write, up to the
        // budget's worth at a time.
        while output.len() < STREAM_BYTE_BUDGET {
            let Some(Some(answer)) = pending.next().now_or_never() else {
                break;
            };
            take_answer(answer, &*codec, &mut output, &mut budget);
        }
        if !output.is_empty() {
            write_answers(&mut writer, &mut output, limits.write).await?;
            // Silence is counted from our last answer too: a request that
            // took longer than the idle limit must not close the stream
            // the moment it is answered.
            last_progress = Instant::now();
        }
        if !reading && pending.is_empty() {
            return Ok(());
        }
        let within_budget = budget.has_room(&input, &output);
        if within_budget {
            budget.over = false;
        } else if !budget.over {
            budget.over = true;
            debug!(
                "stream over its byte budget of {STREAM_BYTE_BUDGET} bytes: \
                 not reading until the peer takes answers"
            );
        }
        let room = pending.len() < MAX_IN_FLIGHT
            && within_budget
            && (waiting.is_none() || budget.rosters < MAX_ROSTERS_IN_FLIGHT);
        if buffered && room {
            continue;
        }
        let can_read = reading && room && waiting.is_none();
        // Which silence limit applies now: a half-read request, or an idle
        // stream with nothing in flight.
        let limit = if !input.is_empty() {
            limits.partial
        } else if pending.is_empty() {
            limits.idle
        } else {
            None
        };
        let deadline = limit.map(|l| last_progress + l);
        tokio::select! {
            read = reader.read_buf(&mut input), if can_read => {
                last_progress = Instant::now();
                if read? == 0 {
                    reading = false;
                    while let Decoded::Request(request) = codec.decode_eof(&mut input) {
                        if !starter.start(&mut pending, &mut budget, request) {
                            break;
                        }
                    }
                }
                if input.capacity() - input.len() < READ_CHUNK / 4 {
                    input.reserve(READ_CHUNK);
                }
            }
            Some(answer) = pending.next(), if !pending.is_empty() => {
                take_answer(answer, &*codec, &mut output, &mut budget);
            }
            _ = sleep_until(deadline), if reading && deadline.is_some() => {
                debug!(
                    "closing a stream silent for {:?} ({})",
                    limit.unwrap_or_default(),
                    if input.is_empty() { "idle" } else { "partial request" }
                );
                reading = false;
                waiting = None;
                input.clear();
            }
            _ = shutdown.cancelled(), if reading => {
                reading = false;
                waiting = None;
            }
        }
    }
}

/// Encodes a finished answer; its bytes now count as `output`.
fn take_answer(answer: Answer, codec: &dyn Codec, output: &mut BytesMut, budget: &mut Budget) {
    budget.finished.fetch_sub(answer.bytes, Ordering::Relaxed);
    if answer.roster {
        budget.rosters -= 1;
    }
    codec.encode(&answer.reply, output);
}

/// Writes all of `output` (then empties it), failing with `TimedOut` when
/// the peer takes nothing for `timeout`: a peer that stops reading must not
/// hold this stream, and what it buffered, for ever.
async fn write_answers<W: AsyncWrite + Unpin>(
    writer: &mut W,
    output: &mut BytesMut,
    timeout: Option<Duration>,
) -> io::Result<()> {
    let mut written = 0;
    let mut said = false;
    while written < output.len() {
        let n = match writer.write(&output[written..]).now_or_never() {
            Some(n) => n?,
            None => {
                // The peer's buffer is full: said once per batch.
                if !said {
                    said = true;
                    debug!(
                        "the peer is not taking answers: waiting with {} bytes to write",
                        output.len() - written
                    );
                }
                match timeout {
                    Some(t) => {
                        match tokio::time::timeout(t, writer.write(&output[written..])).await {
                            Ok(n) => n?,
                            Err(_) => {
                                info!(
                                    "closing a stream whose peer has read no answer for {t:?} \
                                     (write-timeout)"
                                );
                                return Err(io::Error::new(
                                    io::ErrorKind::TimedOut,
                                    format!("the peer read no answer for {t:?}"),
                                ));
                            }
                        }
                    }
                    None => writer.write(&output[written..]).await?,
                }
            }
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        written += n;
    }
    match timeout {
        Some(t) => tokio::time::timeout(t, writer.flush())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "flush timed out"))??,
        None => writer.flush().await?,
    }
    output.clear();
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Starts requests of one stream.
struct Starter<'a> {
    verifier: &'a Arc<Verifier>,
    /// Which requests this stream answers; others get the failure answer.
    served: RequestSet,
}

impl Starter<'_> {
    /// Queues the answer to `request`; false when the request ends the
    /// stream.
    fn start(
        &self,
        pending: &mut FuturesOrdered<Pending>,
        budget: &mut Budget,
        request: Request,
    ) -> bool {
        if request == Request::Quit {
            debug!("stream closed by quit/exit");
            return false;
        }
        let roster = matches!(request, Request::Roster { .. });
        if let Some(kind) = self.served.refuses(&request) {
            info!("refused request: {kind}: not served on this socket");
            let reply = Reply::Invalid(format!("{kind}: not served on this socket"));
            let bytes = reply_bytes(&reply);
            budget.finished.fetch_add(bytes, Ordering::Relaxed);
            pending.push_back(Box::pin(std::future::ready(Answer {
                reply,
                bytes,
                roster: false,
            })));
            return true;
        }
        if roster {
            budget.rosters += 1;
        }
        let finished = Arc::clone(&budget.finished);
        let work = Arc::clone(self.verifier).handle(request);
        pending.push_back(Box::pin(async move {
            let reply = work.await;
            let bytes = reply_bytes(&reply);
            finished.fetch_add(bytes, Ordering::Relaxed);
            Answer {
                reply,
                bytes,
                roster,
            }
        }));
        true
    }
}

/// Serves standard input and output. Pipes are driven by the reactor
/// directly; anything else (a terminal, a file) through tokio's blocking
/// stdio.
pub async fn serve_stdio(
    codec: Box<dyn Codec>,
    verifier: Arc<Verifier>,
    limits: StreamLimits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let stdin = std::io::stdin().as_fd().try_clone_to_owned()?;
    let stdout = std::io::stdout().as_fd().try_clone_to_owned()?;
    let raw = std::fs::File::from(stdin.try_clone()?);
    // Set by every answer written: the reader spins only once the request
    // it delivered last has its answer (a request still waiting for the
    // back end would otherwise wait for the spin too: the reactor is
    // single-threaded).
    let answered = Arc::new(AtomicBool::new(true));
    let reader: Box<dyn AsyncRead + Unpin + Send> =
        match tokio::net::unix::pipe::Receiver::from_owned_fd(stdin) {
            Ok(pipe) => Box::new(SpinningPipe {
                raw,
                pipe,
                armed: false,
                answered: Arc::clone(&answered),
            }),
            Err(_) => Box::new(tokio::io::stdin()),
        };
    let writer: Box<dyn AsyncWrite + Unpin + Send> =
        match tokio::net::unix::pipe::Sender::from_owned_fd(stdout) {
            Ok(pipe) => Box::new(NoteWrites {
                inner: pipe,
                answered,
            }),
            Err(_) => Box::new(tokio::io::stdout()),
        };
    serve_stream(
        reader,
        writer,
        codec,
        verifier,
        limits,
        RequestSet::ALL,
        shutdown,
    )
    .await
}

/// How long standard input is polled without sleeping after a request was
/// read, waiting for the next one. ejabberd and Prosody send a request and
/// wait for its answer, so the next request tends to come within tens of
/// microseconds; catching it awake saves the reader's wake-up, which on a
/// virtual machine costs about as much again (see BENCHMARKS.md). The price
/// is at most this much CPU per request.
pub const STDIN_SPIN: Duration = Duration::from_micros(100);

/// Standard input as a non-blocking pipe that, right after delivering a
/// request, polls for the next one for [`STDIN_SPIN`] before handing over to
/// the reactor.
struct SpinningPipe {
    /// The same pipe (a duplicate descriptor) for plain `read(2)` calls.
    raw: std::fs::File,
    pipe: tokio::net::unix::pipe::Receiver,
    /// Set when bytes were delivered; the next empty poll spins once.
    armed: bool,
    /// False from a delivery until the next answer is written.
    answered: Arc<AtomicBool>,
}

/// Standard output, noting each write for [`SpinningPipe`].
struct NoteWrites<W> {
    inner: W,
    answered: Arc<AtomicBool>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for NoteWrites<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.answered.store(true, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl AsyncRead for SpinningPipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use std::io::Read;
        use std::task::Poll;
        let deadline = std::time::Instant::now() + STDIN_SPIN;
        let spin =
            std::mem::replace(&mut self.armed, false) && self.answered.load(Ordering::Relaxed);
        loop {
            match (&self.raw).read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    self.armed = n > 0;
                    if n > 0 {
                        self.answered.store(false, Ordering::Relaxed);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if !spin || std::time::Instant::now() >= deadline {
                break;
            }
            std::hint::spin_loop();
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.pipe).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.armed = true;
            self.answered.store(false, Ordering::Relaxed);
        }
        result
    }
}

/// Settings shared by every accept loop of a process.
#[derive(Clone)]
pub struct ListenContext {
    /// Answers requests.
    pub verifier: Arc<Verifier>,
    /// Codec settings.
    pub codec: CodecOptions,
    /// Limits applied to each connection.
    pub limits: StreamLimits,
    /// Connections served at once, over all listeners.
    pub connections: Arc<Semaphore>,
    /// Stops accepting and reading.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    pub tasks: TaskTracker,
}

/// Listening sockets handed to the reactor of the running runtime, ready
/// for [`serve_listeners`].
/// Each with its protocol, label, requests served and whether it is
/// trusted.
pub struct Registered(Vec<(Accepting, Protocol, String, RequestSet, bool)>);

/// Hands `listeners` to the reactor; call it inside the runtime.
pub fn register(listeners: Vec<Bound>) -> io::Result<Registered> {
    listeners
        .into_iter()
        .map(|bound| {
            Ok((
                Accepting::register(bound.listener)?,
                bound.protocol,
                bound.label,
                bound.requests,
                bound.trusted,
            ))
        })
        .collect::<io::Result<Vec<_>>>()
        .map(Registered)
}

/// Accepts on every listener until `ctx.shutdown`, serving each connection
/// in its own task; then waits up to `drain` for in-flight requests.
pub async fn serve_listeners(listeners: Registered, ctx: ListenContext, drain: Duration) {
    let mut loops = Vec::new();
    for (listener, protocol, label, served, trusted) in listeners.0 {
        let trust = if trusted {
            "; client addresses believed"
        } else {
            ""
        };
        if served == RequestSet::ALL {
            info!("listening on {label} ({}{trust})", protocol.name());
        } else {
            info!(
                "listening on {label} ({}; serving {served} only{trust})",
                protocol.name()
            );
        }
        loops.push(tokio::spawn(accept_loop(
            listener,
            protocol,
            label,
            served,
            trusted,
            ctx.clone(),
        )));
    }
    ctx.shutdown.cancelled().await;
    for l in &loops {
        l.abort();
    }
    ctx.tasks.close();
    if tokio::time::timeout(drain, ctx.tasks.wait()).await.is_err() {
        warn!(
            "{} connections still busy after {drain:?}; exiting anyway",
            ctx.tasks.len()
        );
    }
}

/// A listener registered with the reactor.
/// A listener registered with the runtime (also the metrics listener's).
pub(crate) enum Accepting {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Accepting {
    pub(crate) fn register(listener: Listener) -> io::Result<Accepting> {
        Ok(match listener {
            Listener::Tcp(l) => {
                l.set_nonblocking(true)?;
                Accepting::Tcp(tokio::net::TcpListener::from_std(l)?)
            }
            Listener::Unix(l) => {
                l.set_nonblocking(true)?;
                Accepting::Unix(tokio::net::UnixListener::from_std(l)?)
            }
        })
    }
}

async fn accept_loop(
    listener: Accepting,
    protocol: Protocol,
    label: String,
    served: RequestSet,
    trusted: bool,
    ctx: ListenContext,
) {
    loop {
        // Take a connection slot first: past the limit, clients wait in the
        // kernel's backlog instead of costing us memory.
        let permit = tokio::select! {
            p = Arc::clone(&ctx.connections).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = ctx.shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            a = accept(&listener) => a,
            _ = ctx.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((reader, writer, peer, peer_ip)) => {
                debug!("connection on {label} from {peer}");
                let codec = Origin::new(trusted, peer_ip).wrap(protocol.codec(&ctx.codec));
                let verifier = Arc::clone(&ctx.verifier);
                let (limits, shutdown) = (ctx.limits, ctx.shutdown.clone());
                let serving = async move {
                    if let Err(e) =
                        serve_stream(reader, writer, codec, verifier, limits, served, shutdown)
                            .await
                    {
                        debug!("connection from {peer} ended: {e}");
                    }
                    drop(permit);
                };
                ctx.tasks
                    .spawn(crate::metrics::connection(protocol, serving));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!("accept on {label} failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

type BoxedRead = Box<dyn AsyncRead + Unpin + Send>;
type BoxedWrite = Box<dyn AsyncWrite + Unpin + Send>;

/// A connection's halves, its peer for the log, and the peer's IP (none
/// for a Unix peer).
type Accepted = (BoxedRead, BoxedWrite, String, Option<IpAddr>);

async fn accept(listener: &Accepting) -> io::Result<Accepted> {
    match listener {
        Accepting::Tcp(l) => {
            let (stream, addr) = l.accept().await?;
            stream.set_nodelay(true)?;
            let (r, w) = stream.into_split();
            Ok((Box::new(r), Box::new(w), addr.to_string(), Some(addr.ip())))
        }
        Accepting::Unix(l) => {
            let (stream, _) = l.accept().await?;
            let peer = match stream.peer_cred() {
                Ok(cred) => format!(
                    "uid {} pid {}",
                    cred.uid(),
                    cred.pid().map_or_else(|| "?".to_owned(), |p| p.to_string())
                ),
                Err(_) => "unknown Unix peer".to_owned(),
            };
            let (r, w) = stream.into_split();
            Ok((Box::new(r), Box::new(w), peer, None))
        }
    }
}

/// Serves a connected socket inherited on standard input (inetd "nowait"),
/// `trusted` or not.
pub async fn serve_connected(
    connected: crate::listen::Connected,
    trusted: bool,
    codec: Box<dyn Codec>,
    verifier: Arc<Verifier>,
    limits: StreamLimits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    match connected {
        crate::listen::Connected::Tcp(s) => {
            let codec = Origin::new(trusted, s.peer_addr().ok().map(|a| a.ip())).wrap(codec);
            s.set_nonblocking(true)?;
            let stream = tokio::net::TcpStream::from_std(s)?;
            let (r, w) = stream.into_split();
            serve_stream(r, w, codec, verifier, limits, RequestSet::ALL, shutdown).await
        }
        crate::listen::Connected::Unix(s) => {
            let codec = Origin::new(trusted, None).wrap(codec);
            s.set_nonblocking(true)?;
            let stream = tokio::net::UnixStream::from_std(s)?;
            let (r, w) = stream.into_split();
            serve_stream(r, w, codec, verifier, limits, RequestSet::ALL, shutdown).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::Scripted;
    use crate::clock::FixedClock;
    use crate::domains::{DomainSettings, Fixed};
    use crate::proto::Protocol;
    use crate::token::TokenKey;

    /// Far more pipelined requests than the in-flight limit, all already
    /// buffered when the peer stops writing: every one is answered.
    #[tokio::test]
    async fn requests_beyond_the_in_flight_limit_are_all_answered() {
        let verifier = Arc::new(Verifier::new(
            Arc::new(FixedClock::new(1000)),
            Arc::new(Fixed(DomainSettings {
                backend: Arc::new(Scripted::down()),
                token_key: Some(Arc::new(TokenKey::new(b"s"))),
            })),
        ));
        let n = MAX_IN_FLIGHT * 3 + 7;
        let mut input = Vec::new();
        for i in 0..n {
            let token = crate::token::make(b"s", &format!("u{i}"), "d", 2000);
            let text = format!("auth:u{i}:d:{token}");
            input.extend_from_slice(&(text.len() as u16).to_be_bytes());
            input.extend_from_slice(text.as_bytes());
        }
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&input).await.expect("write");
        let (reader, writer) = tokio::io::split(server);
        let serving = tokio::spawn(serve_stream(
            reader,
            writer,
            Protocol::Ejabberd.codec(&CodecOptions::default()),
            verifier,
            StreamLimits::default(),
            RequestSet::ALL,
            CancellationToken::new(),
        ));
        let mut answers = vec![0u8; 4 * n];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut answers))
            .await
            .expect("answers within 10 s (none may be left unread in the buffer)")
            .expect("all answers");
        assert!(answers.chunks(4).all(|a| a == [0, 2, 0, 1]));
        drop(client);
        serving.await.expect("task").expect("served");
    }

    fn token_verifier() -> Arc<Verifier> {
        Arc::new(Verifier::new(
            Arc::new(FixedClock::new(1000)),
            Arc::new(Fixed(DomainSettings {
                backend: Arc::new(Scripted::down()),
                token_key: Some(Arc::new(TokenKey::new(b"s"))),
            })),
        ))
    }

    /// A peer that writes requests but never reads the answers: once the
    /// pipe is full, the stream ends with `TimedOut` after the write
    /// timeout instead of waiting for ever.
    #[tokio::test]
    async fn a_peer_that_never_reads_is_closed_after_the_write_timeout() {
        let (mut client, server) = tokio::io::duplex(64);
        let (reader, writer) = tokio::io::split(server);
        let limits = StreamLimits {
            write: Some(Duration::from_millis(200)),
            ..StreamLimits::default()
        };
        let serving = tokio::spawn(serve_stream(
            reader,
            writer,
            Protocol::Generic.codec(&CodecOptions::default()),
            token_verifier(),
            limits,
            RequestSet::ALL,
            CancellationToken::new(),
        ));
        let requests = "isuser:u:d\n".repeat(200);
        // The server stops reading too once it cannot write, so this write
        // may not finish: it runs beside the wait for the result.
        let writing = tokio::spawn(async move {
            let _ = client.write_all(requests.as_bytes()).await;
            client
        });
        let result = tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("closed within 10 s")
            .expect("task");
        let error = result.expect_err("a write timeout");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        drop(writing);
    }

    /// A peer that reads, however little at a time, is not closed: the
    /// timeout counts from its last read, not from the first answer.
    #[tokio::test]
    async fn a_slow_reader_within_the_write_timeout_gets_every_answer() {
        let (mut client, server) = tokio::io::duplex(64);
        let (reader, writer) = tokio::io::split(server);
        let limits = StreamLimits {
            write: Some(Duration::from_secs(5)),
            ..StreamLimits::default()
        };
        let serving = tokio::spawn(serve_stream(
            reader,
            writer,
            Protocol::Generic.codec(&CodecOptions::default()),
            token_verifier(),
            limits,
            RequestSet::ALL,
            CancellationToken::new(),
        ));
        let n = 300;
        let (mut read_half, mut write_half) = tokio::io::split(client);
        let writing = tokio::spawn(async move {
            write_half
                .write_all("isuser:u:d\n".repeat(n).as_bytes())
                .await
                .expect("write");
            write_half
        });
        let mut answers = vec![0u8; 2 * n];
        read_half.read_exact(&mut answers).await.expect("answers");
        // Down back end: isuser is "0" for every request.
        assert!(answers.chunks(2).all(|a| a == b"0\n"));
        let write_half = writing.await.expect("writer");
        client = read_half.unsplit(write_half);
        drop(client);
        serving.await.expect("task").expect("served");
    }
}
