//! Transports: the per-stream loop that reads bytes, decodes requests, has
//! them answered (concurrently, answered in order) and writes the replies;
//! and standard input/output as the first stream kind.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;

use bytes::BytesMut;
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::proto::{Codec, Decoded, Reply, Request};
use crate::verify::Verifier;

/// Requests of one stream worked on at the same time; past this the stream
/// is not read until answers have gone out (back-pressure on the peer).
pub const MAX_IN_FLIGHT: usize = 256;

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 16 * 1024;

type Pending = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Serves one stream until end of input, `quit`/`exit`, ejabberd's
/// length-0 frame or an I/O error. Answers go out in request order.
pub async fn serve_stream<R, W>(
    mut reader: R,
    mut writer: W,
    mut codec: Box<dyn Codec>,
    verifier: Arc<Verifier>,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut output = BytesMut::with_capacity(READ_CHUNK);
    let mut pending: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut reading = true;
    loop {
        // Turn every whole request already read into work.
        while reading && pending.len() < MAX_IN_FLIGHT {
            match codec.decode(&mut input) {
                Decoded::NeedMore => break,
                Decoded::Request(request) => {
                    if !start(&mut pending, request, &verifier) {
                        reading = false;
                    }
                }
                Decoded::End => reading = false,
            }
        }
        // Everything already answered goes out in one write.
        while let Some(Some(reply)) = pending.next().now_or_never() {
            codec.encode(&reply, &mut output);
        }
        if !output.is_empty() {
            writer.write_all(&output).await?;
            writer.flush().await?;
            output.clear();
        }
        if !reading && pending.is_empty() {
            return Ok(());
        }
        let can_read = reading && pending.len() < MAX_IN_FLIGHT;
        tokio::select! {
            read = reader.read_buf(&mut input), if can_read => {
                if read? == 0 {
                    reading = false;
                    while let Decoded::Request(request) = codec.decode_eof(&mut input) {
                        if !start(&mut pending, request, &verifier) {
                            break;
                        }
                    }
                }
                if input.capacity() - input.len() < READ_CHUNK / 4 {
                    input.reserve(READ_CHUNK);
                }
            }
            Some(reply) = pending.next(), if !pending.is_empty() => {
                codec.encode(&reply, &mut output);
            }
        }
    }
}

/// Queues the answer to `request`; false when the request ends the stream.
fn start(
    pending: &mut FuturesOrdered<Pending>,
    request: Request,
    verifier: &Arc<Verifier>,
) -> bool {
    if request == Request::Quit {
        debug!("stream closed by quit/exit");
        return false;
    }
    pending.push_back(Box::pin(Arc::clone(verifier).handle(request)));
    true
}

/// Serves standard input and output. Pipes are driven by the reactor
/// directly; anything else (a terminal, a file) through tokio's blocking
/// stdio.
pub async fn serve_stdio(codec: Box<dyn Codec>, verifier: Arc<Verifier>) -> io::Result<()> {
    let stdin = std::io::stdin().as_fd().try_clone_to_owned()?;
    let stdout = std::io::stdout().as_fd().try_clone_to_owned()?;
    let reader: Box<dyn AsyncRead + Unpin + Send> =
        match tokio::net::unix::pipe::Receiver::from_owned_fd(stdin) {
            Ok(pipe) => Box::new(pipe),
            Err(_) => Box::new(tokio::io::stdin()),
        };
    let writer: Box<dyn AsyncWrite + Unpin + Send> =
        match tokio::net::unix::pipe::Sender::from_owned_fd(stdout) {
            Ok(pipe) => Box::new(pipe),
            Err(_) => Box::new(tokio::io::stdout()),
        };
    serve_stream(reader, writer, codec, verifier).await
}
