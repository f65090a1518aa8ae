//! One upstream connection: a TCP socket, TLS on top for `https`, and the bytes read from it
//! but not yet used.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{Error, Origin};

/// What a read asks for at least: an answer's head, or a burst of events, fits in one read.
const READ_SIZE: usize = 8 * 1024;

pub(super) enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

pub(super) struct Conn {
    pub io: Io,
    /// Bytes read and not yet consumed (the rest of an answer, never another one's).
    pub buf: BytesMut,
}

impl Conn {
    /// Opens a connection to `origin` within `timeout` (the TLS handshake included).
    pub async fn open(origin: &Origin, tls: &Tls, timeout: Duration) -> Result<Conn, Error> {
        let open = async {
            let tcp = connect(origin).await?;
            let io = if origin.https {
                let config = tls.config()?;
                let name = ServerName::try_from(origin.host_name().to_owned())
                    .map_err(|_| Error::Connect("invalid host name for TLS".into()))?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| Error::Connect(format!("TLS handshake failed: {e}")))?;
                Io::Tls(Box::new(stream))
            } else {
                Io::Plain(tcp)
            };
            Ok(Conn {
                io,
                buf: BytesMut::new(),
            })
        };
        tokio::time::timeout(timeout, open)
            .await
            .map_err(|_| Error::Connect(format!("no connection within {timeout:?}")))?
    }

    /// Reads more bytes into `buf`; `Ok(0)` when the peer has closed. Cancel-safe.
    pub async fn read_more(&mut self) -> io::Result<usize> {
        use tokio::io::AsyncReadExt;
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 2 {
            self.buf.reserve(READ_SIZE);
        }
        self.io.read_buf(&mut self.buf).await
    }

    /// Whether an idle connection is still usable: nothing to read and not closed. An idle
    /// connection that has something to read was closed (a FIN, or TLS's close alert) or sent
    /// what nobody asked for; either way it is not reused.
    pub fn still_open(&self) -> bool {
        let tcp = match &self.io {
            Io::Plain(s) => s,
            Io::Tls(s) => s.get_ref().0,
        };
        let mut probe = [0u8; 1];
        matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

async fn connect(origin: &Origin) -> Result<TcpStream, Error> {
    let addrs: Vec<SocketAddr> = match origin.ip {
        Some(ip) => vec![SocketAddr::new(ip, origin.port)],
        None => tokio::net::lookup_host((origin.host_name(), origin.port))
            .await
            .map_err(|e| Error::Connect(format!("cannot resolve {}: {e}", origin.host)))?
            .collect(),
    };
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                s.set_nodelay(true)
                    .map_err(|e| Error::Connect(e.to_string()))?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Connect(match last {
        Some(e) => format!("cannot connect to {}: {e}", origin.host),
        None => format!("{} resolved to no address", origin.host),
    }))
}

/// The TLS client settings, built on first use: the platform's verifier (as reqwest has it),
/// HTTP/1.1 by ALPN.
pub(super) struct Tls {
    extra_roots: Vec<CertificateDer<'static>>,
    config: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl Tls {
    pub fn new(extra_roots: Vec<CertificateDer<'static>>) -> Self {
        Self {
            extra_roots,
            config: std::sync::OnceLock::new(),
        }
    }

    fn config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        self.config
            .get_or_init(|| self.build().map(Arc::new))
            .clone()
            .map_err(Error::Connect)
    }

    fn build(&self) -> Result<rustls::ClientConfig, String> {
        let provider = rustls::crypto::CryptoProvider::get_default().map_or_else(
            || Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            Arc::clone,
        );
        let verifier = if self.extra_roots.is_empty() {
            rustls_platform_verifier::Verifier::new(provider.clone())
        } else {
            rustls_platform_verifier::Verifier::new_with_extra_roots(
                self.extra_roots.iter().cloned(),
                provider.clone(),
            )
        }
        .map_err(|e| format!("cannot load the platform's certificates: {e}"))?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS settings: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
