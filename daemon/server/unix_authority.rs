//! Lets stock gRPC clients use the Unix socket. python grpcio (>= 1.57) and grpc-java send
//! the socket path, percent-encoded, as the HTTP/2 `:authority`; h2, under tonic, refuses
//! such a value and resets the stream. This wraps each Unix connection and rewrites the
//! headers the client sends: every header block is decoded (with the client's HPACK dynamic
//! table), an `:authority` that is not a valid authority becomes `localhost`, and the block
//! is encoded again for the server, split to the HTTP/2 frame size. Nothing else in the
//! byte stream changes, and TCP connections are not wrapped.
use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::{Connected, UdsConnectInfo};

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame a server accepts unless it says otherwise (RFC 9113, 4.2); berthd
/// does not raise it.
const MAX_FRAME: usize = 16_384;
/// A header block this large is not a gRPC request.
const MAX_BLOCK: usize = 1 << 20;

/// A header block being collected from HEADERS and CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

pub struct AuthorityFix<S> {
    inner: S,
    /// Bytes from the client not yet understood (an incomplete frame).
    unparsed: Vec<u8>,
    /// Bytes ready for the server.
    ready: Vec<u8>,
    preface_done: bool,
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            unparsed: Vec::new(),
            ready: Vec::new(),
            preface_done: false,
            block: None,
            decoder: loona_hpack::Decoder::new(),
            encoder: loona_hpack::Encoder::new(),
        }
    }

    /// Moves every complete unit of `unparsed` to `ready`, rewriting header blocks.
    fn process(&mut self) -> io::Result<()> {
        if !self.preface_done {
            if self.unparsed.len() < PREFACE_LEN {
                return Ok(());
            }
            self.ready.extend(self.unparsed.drain(..PREFACE_LEN));
            self.preface_done = true;
        }
        while self.unparsed.len() >= FRAME_HEADER_LEN {
            let length =
                u32::from_be_bytes([0, self.unparsed[0], self.unparsed[1], self.unparsed[2]])
                    as usize;
            if self.unparsed.len() < FRAME_HEADER_LEN + length {
                return Ok(());
            }
            let frame: Vec<u8> = self.unparsed.drain(..FRAME_HEADER_LEN + length).collect();
            let (kind, flags) = (frame[3], frame[4]);
            let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
            let payload = &frame[FRAME_HEADER_LEN..];
            match kind {
                HEADERS => {
                    let mut body = payload;
                    let mut padding = 0;
                    if flags & PADDED != 0 {
                        padding = *body
                            .first()
                            .ok_or_else(|| malformed("empty padded HEADERS"))?
                            as usize;
                        body = &body[1..];
                    }
                    let priority = if flags & PRIORITY != 0 {
                        let bytes: [u8; 5] = body
                            .get(..5)
                            .and_then(|b| b.try_into().ok())
                            .ok_or_else(|| malformed("short priority"))?;
                        body = &body[5..];
                        Some(bytes)
                    } else {
                        None
                    };
                    let fragment = body
                        .get(..body.len().saturating_sub(padding))
                        .ok_or_else(|| malformed("padding too long"))?;
                    self.block = Some(Block {
                        stream,
                        end_stream: flags & END_STREAM != 0,
                        priority,
                        fragment: fragment.to_vec(),
                    });
                    if flags & END_HEADERS != 0 {
                        self.finish_block()?;
                    }
                }
                CONTINUATION => {
                    let block = self
                        .block
                        .as_mut()
                        .ok_or_else(|| malformed("CONTINUATION without HEADERS"))?;
                    block.fragment.extend_from_slice(payload);
                    if block.fragment.len() > MAX_BLOCK {
                        return Err(malformed("header block too large"));
                    }
                    if flags & END_HEADERS != 0 {
                        self.finish_block()?;
                    }
                }
                _ => self.ready.extend_from_slice(&frame),
            }
        }
        Ok(())
    }

    fn finish_block(&mut self) -> io::Result<()> {
        let block = self.block.take().expect("a block is being collected");
        let mut headers = self
            .decoder
            .decode(&block.fragment)
            .map_err(|e| malformed(&format!("HPACK: {e:?}")))?;
        for (name, value) in headers.iter_mut() {
            let valid = tonic::codegen::http::uri::Authority::try_from(value.as_slice()).is_ok();
            if name.as_slice() == b":authority" && !valid {
                *value = b"localhost".to_vec();
            }
        }
        let encoded = self.encoder.encode(
            headers
                .iter()
                .map(|(name, value)| (name.as_slice(), value.as_slice())),
        );
        // HEADERS first (with the priority, if any), then CONTINUATION frames, each within
        // the frame size; END_HEADERS on the last.
        let mut rest: &[u8] = &encoded;
        let mut first = true;
        loop {
            let room = MAX_FRAME
                - if first && block.priority.is_some() {
                    5
                } else {
                    0
                };
            let (piece, after) = rest.split_at(rest.len().min(room));
            let mut flags = if after.is_empty() { END_HEADERS } else { 0 };
            let kind = if first { HEADERS } else { CONTINUATION };
            let mut payload = Vec::with_capacity(piece.len() + 5);
            if first {
                if block.end_stream {
                    flags |= END_STREAM;
                }
                if let Some(priority) = block.priority {
                    flags |= PRIORITY;
                    payload.extend_from_slice(&priority);
                }
            }
            payload.extend_from_slice(piece);
            let length = (payload.len() as u32).to_be_bytes();
            self.ready
                .extend_from_slice(&[length[1], length[2], length[3], kind, flags]);
            self.ready.extend_from_slice(&block.stream.to_be_bytes());
            self.ready.extend_from_slice(&payload);
            rest = after;
            first = false;
            if rest.is_empty() {
                return Ok(());
            }
        }
    }
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("HTTP/2 from the client: {what}"),
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.drain(..n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut raw = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut raw) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if raw.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    this.unparsed.extend_from_slice(raw.filled());
                    this.process()?;
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected for AuthorityFix<tokio::net::UnixStream> {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let length = (payload.len() as u32).to_be_bytes();
        let mut frame = vec![length[1], length[2], length[3], kind, flags];
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    /// Splits what the server would read back into frames.
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let length = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
            out.push((bytes[3], bytes[4], bytes[9..9 + length].to_vec()));
            bytes = &bytes[9 + length..];
        }
        out
    }

    async fn through_fix(client_bytes: Vec<u8>) -> Vec<u8> {
        let mut fixed = AuthorityFix::new(client_bytes.as_slice());
        let mut out = Vec::new();
        fixed.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn an_invalid_authority_becomes_localhost_and_the_rest_is_untouched() {
        let mut client = loona_hpack::Encoder::new();
        let socket_path = b"%2Frun%2Fberth%2Fberth.sock%20x" as &[u8];
        let block = client.encode([
            (b":method" as &[u8], b"POST" as &[u8]),
            (b":authority", socket_path),
            (b"te", b"trailers"),
        ]);
        // A padded HEADERS frame whose block continues in a CONTINUATION frame, then DATA.
        let (head, tail) = block.split_at(5);
        let mut padded = vec![3u8];
        padded.extend_from_slice(head);
        padded.extend_from_slice(&[0, 0, 0]);
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(HEADERS, PADDED, 1, &padded));
        bytes.extend(frame(CONTINUATION, END_HEADERS, 1, tail));
        bytes.extend(frame(0x0, END_STREAM, 1, b"grpc body"));

        let out = through_fix(bytes).await;
        assert_eq!(&out[..PREFACE_LEN], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let frames = frames(&out[PREFACE_LEN..]);
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].0, frames[0].1), (HEADERS, END_HEADERS));
        let headers = loona_hpack::Decoder::new().decode(&frames[0].2).unwrap();
        assert_eq!(
            headers,
            [
                (b":method".to_vec(), b"POST".to_vec()),
                (b":authority".to_vec(), b"localhost".to_vec()),
                (b"te".to_vec(), b"trailers".to_vec())
            ]
        );
        assert_eq!(frames[1], (0x0, END_STREAM, b"grpc body".to_vec()));
    }

    #[tokio::test]
    async fn a_valid_authority_stays_and_a_large_block_is_split_to_the_frame_size() {
        let mut client = loona_hpack::Encoder::new();
        let big = vec![b'v'; 40_000];
        let block = client.encode([
            (b":authority" as &[u8], b"example:80" as &[u8]),
            (b"x-big", big.as_slice()),
        ]);
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM | PRIORITY,
            3,
            &[[0u8, 0, 0, 0, 16].as_slice(), &block].concat(),
        ));
        let out = through_fix(bytes).await;
        let frames = frames(&out[PREFACE_LEN..]);
        assert!(frames.len() >= 3, "{} frames", frames.len());
        assert!(frames
            .iter()
            .all(|(_, _, payload)| payload.len() <= MAX_FRAME));
        assert_eq!(frames[0].1, END_STREAM | PRIORITY);
        assert!(frames[1..].iter().all(|(kind, _, _)| *kind == CONTINUATION));
        assert_eq!(frames.last().unwrap().1, END_HEADERS);
        let mut joined = frames[0].2[5..].to_vec();
        for (_, _, payload) in &frames[1..] {
            joined.extend_from_slice(payload);
        }
        let headers = loona_hpack::Decoder::new().decode(&joined).unwrap();
        assert_eq!(headers[0], (b":authority".to_vec(), b"example:80".to_vec()));
        assert_eq!(headers[1].1.len(), 40_000);
    }
}
