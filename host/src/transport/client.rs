//! The local side of a byte-stream transport: handshake, then two tasks
//! that move frames between the stream and the connection's channels.

use futures::{SinkExt, StreamExt};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::auth::Token;
use super::codec::OutFrames;
use super::{TransportError, WireCodec};
use crate::client::{Connection, ConnectionConfig, Error};
use crate::protocol::{CAPABILITIES, ClientMessage, PROTOCOL_VERSION, ServerMessage};

type Codec = WireCodec<ServerMessage, ClientMessage>;

/// Runs the handshake over `reader`/`writer` and starts a connection on it.
/// `keep_alive` (e.g. the child process) lives as long as the reader task.
pub(crate) async fn start_stream<R, W, K>(
    reader: R,
    writer: W,
    config: ConnectionConfig,
    token: Option<Token>,
    keep_alive: K,
    handshake_timeout: Duration,
) -> Result<Connection, Error>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    K: Send + 'static,
{
    let codec = Codec::new(config.max_frame);
    let mut frames_out = FramedWrite::new(writer, codec.clone());
    let handshake = handshake(reader, &mut frames_out, codec, &config, token);
    let mut frames_in = match tokio::time::timeout(handshake_timeout, handshake).await {
        Ok(frames_in) => frames_in?,
        Err(_) => {
            return Err(TransportError::Timeout(format!(
                "the host did not complete the handshake within {} s \
                 (is it a pushy host or daemon?)",
                handshake_timeout.as_secs_f64()
            ))
            .into());
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
                    let _ = in_tx.send(Err(error.to_string()));
                    break;
                }
                None => {
                    let _ = in_tx.send(Err(TransportError::PeerGone.to_string()));
                    break;
                }
            }
        }
    });
    Ok(Connection::start(out_tx, in_rx, config))
}

/// The first bytes of what the host sent, put back in front of the rest.
type Peeked<R> = tokio::io::Chain<std::io::Cursor<Vec<u8>>, R>;

/// The client's side of the handshake: `Hello`, the proof when the server
/// wants one, the limits asked for, then `Welcome` (or why not).
async fn handshake<R, W>(
    mut reader: R,
    frames_out: &mut FramedWrite<W, Codec>,
    codec: Codec,
    config: &ConnectionConfig,
    token: Option<Token>,
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
        return Err(TransportError::Handshake(what.to_owned()));
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
        ServerMessage::Refused { reason } => return Err(refused(reason)),
        other => return Err(TransportError::Handshake(format!("unexpected {other:?}"))),
    };
    if let Some(challenge) = challenge {
        let token = token.ok_or_else(|| {
            TransportError::AuthFailed(
                "the server requires a token (--token-file or PUSHY_TOKEN_FILE)".into(),
            )
        })?;
        frames_out
            .send(ClientMessage::AuthProof {
                proof: token.prove(&challenge),
            })
            .await?;
    }
    frames_out
        .send(ClientMessage::Limits(config.limits))
        .await?;
    match next(&mut frames_in).await? {
        ServerMessage::Welcome => Ok(frames_in),
        ServerMessage::Refused { reason } => Err(refused(reason)),
        other => Err(TransportError::Handshake(format!("unexpected {other:?}"))),
    }
}

/// Names the protocol the host speaks when its first bytes are not ours.
fn foreign_protocol(first: &[u8]) -> Option<&'static str> {
    match first {
        // A TLS record: handshake (0x16) or alert (0x15), version 3.x.
        [0x15 | 0x16, 0x03, ..] => {
            Some("the server speaks TLS: connect with --tls-ca CA.pem (ConnectionConfig::tls_ca)")
        }
        [b'H', b'T', b'T', b'P'] => Some("the server speaks HTTP, not the pushy protocol"),
        [b'S', b'S', b'H', b'-'] => Some("the server is an SSH server: use an ssh: target"),
        _ => None,
    }
}

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

fn refused(reason: String) -> TransportError {
    match reason.strip_prefix("authentication failed: ") {
        Some(why) => TransportError::AuthFailed(why.to_owned()),
        None => TransportError::Refused(reason),
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
