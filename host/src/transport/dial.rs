//! The local side of a byte-stream transport: dialling a daemon (TCP, TLS),
//! the client's handshake, then two tasks that move frames between the
//! stream and a pair of message channels ([`ClientLink`]).

use futures::{SinkExt, StreamExt};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::auth::Token;
use super::codec::OutFrames;
use super::{ForeignProtocol, HandshakeError, Timeout, TlsError, TransportError, WireCodec};
use crate::protocol::{
    AuthFailure, CAPABILITIES, ClientMessage, PROTOCOL_VERSION, Refusal, RequestedLimits,
    ServerMessage,
};

type Codec = WireCodec<ServerMessage, ClientMessage>;

/// What a link hands the local side: a message, or why it stopped.
pub type Inbound = Result<ServerMessage, TransportError>;

/// An open link to a session, past its handshake: what to send, and what
/// arrives. Dropping `outbound` ends the session.
#[derive(Debug)]
pub struct ClientLink {
    /// Messages for the host, in order.
    pub outbound: mpsc::UnboundedSender<ClientMessage>,
    /// The host's messages; the last is the error that ended the link.
    pub inbound: mpsc::UnboundedReceiver<Inbound>,
}

/// How the client's side of the handshake runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DialOptions {
    /// Largest frame accepted from the host.
    pub max_frame: usize,
    /// The limits to ask the host for.
    pub limits: RequestedLimits,
    /// How long connecting and the handshake may take together. Default:
    /// 20 s (a daemon answers at once; [`super::SpawnOptions`] allows 120 s).
    pub timeout: Duration,
    /// The token to prove, when the host asks.
    pub token: Option<Token>,
    /// Speak TLS, trusting the CA certificate(s) in this PEM file (`daemon:` only).
    pub tls_ca: Option<PathBuf>,
}

impl Default for DialOptions {
    fn default() -> Self {
        DialOptions {
            max_frame: super::DEFAULT_MAX_FRAME,
            limits: RequestedLimits::default(),
            timeout: Duration::from_secs(20),
            token: None,
            tls_ca: None,
        }
    }
}

/// `daemon:HOST:PORT`: dials TCP (and TLS with [`DialOptions::tls_ca`]),
/// then runs the handshake, all within [`DialOptions::timeout`].
pub async fn dial_tcp(address: &str, options: DialOptions) -> Result<ClientLink, TransportError> {
    let timeout = options.timeout;
    let started = tokio::time::Instant::now();
    let tls = match &options.tls_ca {
        Some(ca) => Some(super::tls::client_config(ca)?),
        None => None,
    };
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| Timeout::Connect {
            address: address.to_owned(),
            after: timeout,
        })?
        .map_err(|e| TransportError::Connect {
            address: address.to_owned(),
            source: e,
        })?;
    stream.set_nodelay(true)?;
    let Some(tls) = tls else {
        let (reader, writer) = stream.into_split();
        let left = timeout.saturating_sub(started.elapsed());
        return start_stream(reader, writer, &options, (), left)
            .await
            .map_err(|(error, ())| error);
    };
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| TlsError::ServerName(host.to_owned()))?;
    let connecting = tokio_rustls::TlsConnector::from(tls).connect(name, stream);
    let stream = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| Timeout::TlsHandshake {
            address: address.to_owned(),
            after: timeout,
        })?
        .map_err(|error| match error.kind() {
            // A plain daemon takes the ClientHello for an absurd frame
            // length and hangs up.
            std::io::ErrorKind::UnexpectedEof => TlsError::NotTls,
            _ => TlsError::Handshake(error),
        })?;
    let (reader, writer) = tokio::io::split(stream);
    let left = timeout.saturating_sub(started.elapsed());
    start_stream(reader, writer, &options, (), left)
        .await
        .map_err(|(error, ())| error)
}

/// Runs the handshake over `reader`/`writer` within `timeout` and starts the
/// link's two tasks. `keep_alive` (e.g. the child process) lives as long as
/// the reader task; a failed handshake gives it back with the error.
pub(crate) async fn start_stream<R, W, K>(
    reader: R,
    writer: W,
    options: &DialOptions,
    keep_alive: K,
    timeout: Duration,
) -> Result<ClientLink, (TransportError, K)>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    K: Send + 'static,
{
    let codec = Codec::new(options.max_frame);
    let mut frames_out = FramedWrite::new(writer, codec.clone());
    let handshake = handshake(reader, &mut frames_out, codec, options);
    let mut frames_in = match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(frames_in)) => frames_in,
        Ok(Err(error)) => return Err((error, keep_alive)),
        Err(_) => {
            let after = options.timeout;
            return Err((Timeout::Handshake { after }.into(), keep_alive));
        }
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ClientMessage>();
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    // The writer keeps the encoder and the stream of the handshake.
    let mut codec = frames_out.encoder().clone();
    let mut writer = frames_out.into_inner();
    tokio::spawn(async move {
        let mut out = OutFrames::default();
        while let Some(message) = out_rx.recv().await {
            // Encode what is queued, then write it in one go and flush once;
            // large payloads are written from where they lie, uncopied.
            let mut result = codec.encode_frames(&message, &mut out);
            drop(message);
            while result.is_ok() && out.len() < BATCH_BYTES {
                match out_rx.try_recv() {
                    Ok(message) => result = codec.encode_frames(&message, &mut out),
                    Err(_) => break,
                }
            }
            // A message that cannot be encoded (larger than a frame) ends
            // the connection, as a failed write does: its caller would
            // otherwise wait for a reply that never comes.
            let written = match result {
                Ok(()) => write_pieces(&mut writer, &out).await,
                Err(error) => Err(std::io::Error::other(error)),
            };
            out.clear();
            if let Err(error) = written {
                tracing::debug!(%error, "writing to the host failed");
                break;
            }
        }
        // Dropping the writer closes our side: the host sees EOF and ends.
    });
    tokio::spawn(async move {
        let _keep_alive = keep_alive;
        loop {
            match frames_in.next().await {
                Some(Ok(message)) => {
                    if in_tx.send(Ok(message)).is_err() {
                        break;
                    }
                }
                Some(Err(error)) => {
                    let _ = in_tx.send(Err(error));
                    break;
                }
                None => {
                    let _ = in_tx.send(Err(TransportError::PeerGone));
                    break;
                }
            }
        }
    });
    Ok(ClientLink {
        outbound: out_tx,
        inbound: in_rx,
    })
}

/// The first bytes of what the host sent, put back in front of the rest.
type Peeked<R> = tokio::io::Chain<std::io::Cursor<Vec<u8>>, R>;

/// The client's side of the handshake: `Hello`, the proof when the server
/// wants one, the limits asked for, then `Welcome` (or why not).
async fn handshake<R, W>(
    mut reader: R,
    frames_out: &mut FramedWrite<W, Codec>,
    codec: Codec,
    options: &DialOptions,
) -> Result<FramedRead<Peeked<R>, Codec>, TransportError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    frames_out
        .send(ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
        })
        .await?;
    // Before decoding frames, look at what answered: a TLS server or a web
    // server sends bytes that would read as an absurd frame length.
    let mut first = Vec::with_capacity(4);
    (&mut reader).take(4).read_to_end(&mut first).await?;
    if let Some(what) = foreign_protocol(&first) {
        return Err(HandshakeError::Foreign(what).into());
    }
    if let Ok(prefix) = <[u8; 4]>::try_from(&first[..]) {
        // The host's first frame is its `Hello`, well under this: a longer
        // claim is another protocol's bytes read as a length.
        if u32::from_be_bytes(prefix) as usize > MAX_HELLO {
            return Err(HandshakeError::Foreign(ForeignProtocol::Unknown).into());
        }
    }
    let mut frames_in = FramedRead::new(
        AsyncReadExt::chain(std::io::Cursor::new(first), reader),
        codec,
    );
    let challenge = match next(&mut frames_in).await? {
        ServerMessage::Hello {
            version, challenge, ..
        } if version == PROTOCOL_VERSION => challenge,
        ServerMessage::Hello { version, .. } => {
            return Err(TransportError::VersionMismatch {
                client: PROTOCOL_VERSION,
                server: version,
            });
        }
        ServerMessage::Refused(refusal) => return Err(refused(refusal)),
        other => return Err(HandshakeError::Unexpected(other.kind()).into()),
    };
    if let Some(challenge) = challenge {
        let token = options
            .token
            .as_ref()
            .ok_or(TransportError::AuthFailed(AuthFailure::TokenRequired))?;
        frames_out
            .send(ClientMessage::AuthProof {
                proof: token.prove(&challenge),
            })
            .await?;
    }
    frames_out
        .send(ClientMessage::Limits(options.limits))
        .await?;
    match next(&mut frames_in).await? {
        ServerMessage::Welcome => Ok(frames_in),
        ServerMessage::Refused(refusal) => Err(refused(refusal)),
        other => Err(HandshakeError::Unexpected(other.kind()).into()),
    }
}

/// Names the protocol the host speaks when its first bytes are not ours.
fn foreign_protocol(first: &[u8]) -> Option<ForeignProtocol> {
    match first {
        // A TLS record: handshake (0x16) or alert (0x15), version 3.x.
        [0x15 | 0x16, 0x03, ..] => Some(ForeignProtocol::Tls),
        [b'H', b'T', b'T', b'P'] => Some(ForeignProtocol::Http),
        [b'S', b'S', b'H', b'-'] => Some(ForeignProtocol::Ssh),
        _ => None,
    }
}

/// Most bytes a host's `Hello` frame may claim (it is under 1 KiB).
const MAX_HELLO: usize = 64 * 1024;

/// Queued messages are batched into one write up to about this many bytes.
const BATCH_BYTES: usize = 1 << 20;

async fn write_pieces<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &OutFrames,
) -> std::io::Result<()> {
    for piece in out.pieces() {
        writer.write_all(piece).await?;
    }
    writer.flush().await
}

/// A refusal as the error a caller matches on: authentication failures
/// and version mismatches have variants of their own.
fn refused(refusal: Refusal) -> TransportError {
    match refusal {
        Refusal::Auth(failure) => TransportError::AuthFailed(failure),
        Refusal::VersionMismatch { client, server } => {
            TransportError::VersionMismatch { client, server }
        }
        other => TransportError::Refused(other),
    }
}

async fn next<R: AsyncRead + Unpin>(
    frames: &mut FramedRead<R, Codec>,
) -> Result<ServerMessage, TransportError> {
    match frames.next().await {
        Some(result) => result,
        None => Err(TransportError::PeerGone),
    }
}
