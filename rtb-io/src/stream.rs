//! Owns the byte stream under an HTTP/1.1 connection, client or server side: plain TCP, or
//! TLS over TCP (monoio-rustls, owned buffers like every other IO here). One enum rather than a
//! generic parameter, so pools, drains and the server keep one connection type; the plain
//! path pays one branch per read or write.
//!
//! Cancellation: dropping a TLS read loses the ciphertext already taken off the socket with
//! the cancelled op, exactly as a plain read loses its bytes; the callers close such a
//! connection (see `client::drain`), so a stream out of step is never reused.

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
    TlsClient(Box<ClientTlsStream<TcpStream>>, SocketAddr),
    /// TLS from a client, after a completed handshake, and the peer's address.
    TlsServer(Box<ServerTlsStream<TcpStream>>, SocketAddr),
}

impl NetStream {
    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Plain(s) => s.peer_addr(),
            Self::TlsClient(_, peer) | Self::TlsServer(_, peer) => Ok(*peer),
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
            Self::TlsClient(s, _) => s.read(buf).await,
            Self::TlsServer(s, _) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.readv(buf).await,
            Self::TlsClient(s, _) => s.readv(buf).await,
            Self::TlsServer(s, _) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for NetStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.write(buf).await,
            Self::TlsClient(s, _) => s.write(buf).await,
            Self::TlsServer(s, _) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            Self::Plain(s) => s.writev(buf).await,
            Self::TlsClient(s, _) => s.writev(buf).await,
            Self::TlsServer(s, _) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.flush().await,
            Self::TlsClient(s, _) => s.flush().await,
            Self::TlsServer(s, _) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(s) => s.shutdown().await,
            Self::TlsClient(s, _) => s.shutdown().await,
            Self::TlsServer(s, _) => s.shutdown().await,
        }
    }
}
