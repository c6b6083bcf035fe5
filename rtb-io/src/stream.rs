//! Owns the byte stream under an HTTP/1.1 connection, client or server side: plain TCP, or
//! TLS over TCP (monoio-rustls, owned buffers like every other IO here). One enum rather than a
//! generic parameter, so pools, drains and the server keep one connection type; the plain
//! path pays one branch per read or write.
//!
//! Cancellation: dropping a TLS read or write mid-way loses the TLS layer's own buffer with the
//! cancelled op (monoio-io-wrapper then panics on the next call: "buffer mut expected"). So a
//! TLS stream remembers an interrupted read or write ([`Interrupted`]) and fails every later
//! one with an error instead; the callers close such a connection (a timed-out call's TLS
//! connection is never drained, see `client::drain`).

use std::{io, net::SocketAddr};

use monoio::{
    buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut},
    io::{AsyncReadRent, AsyncWriteRent},
    net::TcpStream,
    BufResult,
};
use monoio_rustls::{ClientTlsStream, ServerTlsStream};

/// A connection's stream: plain or TLS (client or server side).
#[derive(Debug)]
pub enum NetStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS to a server (a DSP), after a completed handshake, and the peer's address
    /// (monoio-rustls does not lend the socket back).
    TlsClient(Box<ClientTlsStream<TcpStream>>, SocketAddr, Interrupted),
    /// TLS from a client, after a completed handshake, and the peer's address.
    TlsServer(Box<ServerTlsStream<TcpStream>>, SocketAddr, Interrupted),
}

/// Whether a read or a write on a TLS stream was dropped before it completed (set while one
/// runs, cleared when it completes): the stream is then out of step for good.
#[derive(Debug, Default, Clone, Copy)]
pub struct Interrupted {
    read: bool,
    write: bool,
}

fn out_of_step() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "TLS stream out of step after an interrupted read or write",
    )
}

/// Runs one TLS read (`read == true`) or write, refusing it when an earlier one was dropped.
macro_rules! guarded {
    ($flags:expr, $field:ident, $buf:ident, $op:expr) => {{
        if $flags.read || $flags.write {
            return (Err(out_of_step()), $buf);
        }
        $flags.$field = true;
        let result = $op.await;
        $flags.$field = false;
        result
    }};
}

impl NetStream {
    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Plain(s) => s.peer_addr(),
            Self::TlsClient(_, peer, _) | Self::TlsServer(_, peer, _) => Ok(*peer),
        }
    }

    /// Whether the stream is TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self, Self::Plain(_))
    }
}

impl AsyncReadRent for NetStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.read(buf).await,
            Self::TlsClient(s, _, f) => guarded!(f, read, buf, s.read(buf)),
            Self::TlsServer(s, _, f) => guarded!(f, read, buf, s.read(buf)),
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.readv(buf).await,
            Self::TlsClient(s, _, f) => guarded!(f, read, buf, s.readv(buf)),
            Self::TlsServer(s, _, f) => guarded!(f, read, buf, s.readv(buf)),
        }
    }
}

impl AsyncWriteRent for NetStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.write(buf).await,
            Self::TlsClient(s, _, f) => guarded!(f, write, buf, s.write(buf)),
            Self::TlsServer(s, _, f) => guarded!(f, write, buf, s.write(buf)),
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.writev(buf).await,
            Self::TlsClient(s, _, f) => guarded!(f, write, buf, s.writev(buf)),
            Self::TlsServer(s, _, f) => guarded!(f, write, buf, s.writev(buf)),
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush().await,
            Self::TlsClient(s, _, _) => s.flush().await,
            Self::TlsServer(s, _, _) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.shutdown().await,
            Self::TlsClient(s, _, _) => s.shutdown().await,
            Self::TlsServer(s, _, _) => s.shutdown().await,
        }
    }
}
